package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// maxStdioLine bounds one message from the stdio client, like the server's
// limit on a request body.
const maxStdioLine = maxPeekBytes

// stdio is the bridge's client side: newline-delimited JSON-RPC. Unlike the
// SDK's IOTransport it survives a line that is not JSON-RPC, answering it
// with an error instead of ending the stream.
type stdio struct {
	in     io.ReadCloser
	lines  chan lineOrErr
	closed chan struct{}
	once   sync.Once

	mu  sync.Mutex // serializes writes
	out io.Writer
}

type lineOrErr struct {
	line []byte
	err  error
}

// newStdio starts the reader of in. The reader ends at EOF or a read
// error, or when close closes in.
func newStdio(in io.ReadCloser, out io.Writer) *stdio {
	s := &stdio{in: in, out: out, lines: make(chan lineOrErr), closed: make(chan struct{})}
	go s.readLines()
	return s
}

func (s *stdio) readLines() {
	r := bufio.NewReaderSize(s.in, 64<<10)
	for {
		line, err := readLine(r)
		if len(bytes.TrimSpace(line)) == 0 && err == nil {
			continue
		}
		select {
		case s.lines <- lineOrErr{line, err}:
		case <-s.closed:
			return
		}
		var tooLong *badLine
		if err != nil && !errors.As(err, &tooLong) {
			return
		}
	}
}

// readLine reads one line; a line over maxStdioLine is skipped up to its
// newline and reported as a badLine.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxStdioLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, &badLine{code: jsonrpc.CodeInvalidRequest,
				msg: fmt.Sprintf("message longer than %d bytes: send smaller messages", maxStdioLine)}
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(bytes.TrimSpace(buf)) > 0:
			return buf, nil // a last line without newline; EOF comes next
		default:
			return nil, err
		}
	}
}

// read returns the next message; a line that is not one is a *badLine.
func (s *stdio) read(ctx context.Context) (jsonrpc.Message, error) {
	var l lineOrErr
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, io.EOF
	case l = <-s.lines:
	}
	if l.err != nil {
		return nil, l.err
	}
	line := bytes.TrimSpace(l.line)
	msg, err := jsonrpc.DecodeMessage(line)
	if err == nil {
		return msg, nil
	}
	if !json.Valid(line) {
		return nil, &badLine{code: jsonrpc.CodeParseError, msg: "parse error: the line is not valid JSON; send one JSON-RPC message per line"}
	}
	bad := &badLine{code: jsonrpc.CodeInvalidRequest, msg: "invalid request: " + err.Error()}
	if line[0] == '[' {
		bad.msg = "invalid request: gantry mcp does not accept JSON-RPC batches; send one message per line"
	}
	// Echo a usable id, so that the client can match the error.
	var withID struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &withID) == nil && len(withID.ID) > 0 {
		var id any
		if json.Unmarshal(withID.ID, &id) == nil {
			if jid, err := jsonrpc.MakeID(id); err == nil {
				bad.id = jid
			}
		}
	}
	return nil, bad
}

// write sends one message to the client.
func (s *stdio) write(msg jsonrpc.Message) error {
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("encoding a message for the stdio client: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.out.Write(append(data, '\n'))
	return err
}

// close stops the reader and closes in.
func (s *stdio) close() {
	s.once.Do(func() {
		close(s.closed)
		_ = s.in.Close()
	})
}

// badLine is a line from the client that is not a JSON-RPC message.
type badLine struct {
	code int64
	msg  string
	id   jsonrpc.ID // zero: null
}

func (b *badLine) Error() string { return b.msg }

// reply answers the line with an error response; without a usable id, its
// id is null, as JSON-RPC 2.0 requires (the SDK's encoder would omit it).
func (s *stdio) reply(b *badLine) error {
	jerr := &jsonrpc.Error{Code: b.code, Message: "gantry bridge: " + b.msg}
	if b.id.IsValid() {
		return s.write(&jsonrpc.Response{ID: b.id, Error: jerr})
	}
	data, err := json.Marshal(struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      any            `json:"id"`
		Error   *jsonrpc.Error `json:"error"`
	}{"2.0", nil, jerr})
	if err != nil {
		return fmt.Errorf("encoding an error for the stdio client: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.out.Write(append(data, '\n'))
	return err
}

// startListening opens, for a session of a revision before 2026-07-28, the
// standalone SSE stream on which the server sends what is not part of a
// call's response: resource updates, list changes. It runs until ctx ends
// or the session is gone.
func (b *bridge) startListening(ctx context.Context, wg *sync.WaitGroup, version string) {
	remote, _ := b.current()
	sid := remote.SessionID()
	if version >= statelessVersion || sid == "" {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.listen(ctx, sid)
	}()
}

func (b *bridge) listen(ctx context.Context, sid string) {
	client := &http.Client{Transport: b.rt}
	delay := 500 * time.Millisecond
	lastID := ""
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.endpoint, nil)
		if err != nil {
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := client.Do(req)
		if err == nil {
			switch {
			case resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
				delay = 500 * time.Millisecond
				lastID = b.relayEvents(resp.Body, lastID)
			case resp.StatusCode == http.StatusMethodNotAllowed, resp.StatusCode == http.StatusNotFound,
				resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
				// No stream here, or the session is gone: the client learns
				// of the latter from its next call.
				_ = resp.Body.Close()
				return
			}
			_ = resp.Body.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// relayEvents copies the messages of an SSE stream to the client until it
// ends; it returns the last event ID seen.
func (b *bridge) relayEvents(body io.Reader, lastID string) string {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxStdioLine)
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 {
				if msg, err := jsonrpc.DecodeMessage(data); err == nil {
					_ = b.local.write(msg)
				}
			}
			data = data[:0]
		case strings.HasPrefix(line, "data:"):
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
		case strings.HasPrefix(line, "id:"):
			lastID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		}
	}
	return lastID
}
