package mcp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Bridge connects a stdio MCP client (newline-delimited JSON-RPC on in and
// out) to Gantry's streamable HTTP endpoint, adding the bearer token to
// every request, and pumps messages both ways until in reaches EOF, the
// endpoint fails for good, or ctx is done. A call that cannot be delivered
// gets a JSON-RPC error reply naming the endpoint, so the client never
// waits forever. If in is an io.Closer, Bridge closes it when it returns.
func Bridge(parent context.Context, endpoint, token string, in io.Reader, out io.Writer) error {
	return BridgeTLS(parent, endpoint, token, nil, in, out)
}

// BridgeTLS is Bridge with the TLS configuration used for an https
// endpoint, e.g. one trusting the private CA that signed gantry's
// certificate (gantry mcp --ca-file). Nil means the system's defaults.
func BridgeTLS(parent context.Context, endpoint, token string, tlsConf *tls.Config, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	base := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConf != nil {
		base.TLSClientConfig = tlsConf.Clone()
	}
	rt := &bearerTransport{token: token, base: base}
	defer rt.base.CloseIdleConnections()
	connect := func(ctx context.Context) (sdk.Connection, error) {
		return (&sdk.StreamableClientTransport{
			Endpoint:   endpoint,
			HTTPClient: &http.Client{Transport: rt},
			// The bridge opens the session's GET stream itself (listen):
			// the SDK opens it only for a ClientSession it manages.
			DisableStandaloneSSE: true,
			MaxRetries:           -1,
		}).Connect(ctx)
	}
	remote, err := connect(ctx)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", endpoint, err)
	}
	rc, ok := in.(io.ReadCloser)
	if !ok {
		rc = io.NopCloser(in)
	}
	local := newStdio(rc, out)

	var (
		wg       sync.WaitGroup
		upErr    error
		downErr  error
		stopOnce sync.Once
	)
	b := &bridge{endpoint: endpoint, local: local, remote: remote, connect: connect, renewed: make(chan struct{}), wg: &wg,
		rt: rt, pending: map[jsonrpc.ID]bool{}, settled: make(chan struct{}, 1)}
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			local.close()
			r, _ := b.current()
			_ = r.Close()
		})
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer stop()
		upErr = b.up(ctx, &wg)
	}()
	go func() {
		defer wg.Done()
		defer stop()
		downErr = b.down(ctx, &wg)
	}()
	wg.Wait()
	if r, _ := b.current(); r != remote {
		_ = r.Close() // a renewal that raced with the stop
	}
	switch {
	case upErr != nil:
		return upErr
	case downErr != nil:
		return downErr
	case b.fatal.Load() != nil:
		return *b.fatal.Load()
	}
	return parent.Err()
}

type bridge struct {
	endpoint string
	local    *stdio // stdio side
	rt       *bearerTransport
	wg       *sync.WaitGroup // the bridge's goroutines

	// The HTTP side: replaced when the server loses the session (renew).
	connect func(context.Context) (sdk.Connection, error)
	renewMu sync.Mutex // one renewal at a time
	rmu     sync.Mutex
	remote  sdk.Connection
	renewed chan struct{}    // closed when remote is replaced
	initReq *jsonrpc.Request // the client's initialize, repeated by renew
	reinits sync.Map         // jsonrpc.ID -> chan *jsonrpc.Response
	reinitN atomic.Int64
	// fatal is an endpoint error no retry will fix, seen while sending.
	fatal   atomic.Pointer[error]
	mu      sync.Mutex
	pending map[jsonrpc.ID]bool // calls sent and not yet answered
	settled chan struct{}       // signalled when a pending call is answered
	// initIDs holds the IDs of initialize calls in flight, so the negotiated
	// protocol version can be learned from their responses.
	initIDs sync.Map
}

// up copies messages from the stdio client to the endpoint. Calls are sent
// concurrently (a long tool call must not hold up the next request);
// notifications and responses are sent in order.
func (b *bridge) up(ctx context.Context, wg *sync.WaitGroup) error {
	for {
		msg, err := b.local.read(ctx)
		var bad *badLine
		if errors.As(err, &bad) {
			// A line that is not a JSON-RPC message gets an error reply
			// (parse error, or invalid request); the bridge carries on.
			_ = b.local.reply(bad)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The client sent everything: deliver the answers it awaits
				// (as in "gantry mcp < requests.jsonl") before closing.
				b.drain(ctx, drainTimeout)
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("reading from the stdio client: %w", err)
		}
		req, isReq := msg.(*jsonrpc.Request)
		if isReq && req.IsCall() {
			b.track(req.ID, true)
		}
		if !isReq || !req.IsCall() || req.Method == "initialize" {
			if isReq && req.Method == "initialize" {
				b.initIDs.Store(req.ID, true)
				b.rmu.Lock()
				b.initReq = req
				b.rmu.Unlock()
			}
			b.send(ctx, msg)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.send(ctx, msg)
		}()
	}
}

// send writes msg to the endpoint; when a call cannot be delivered, the
// client gets an error response for it.
func (b *bridge) send(ctx context.Context, msg jsonrpc.Message) {
	remote, _ := b.current()
	err := remote.Write(ctx, msg)
	if err != nil && errors.Is(err, sdk.ErrSessionMissing) {
		// The server lost the session (it restarted, or closed it):
		// start a new one for the client and deliver msg there.
		if rerr := b.renew(ctx, remote); rerr != nil {
			err = fmt.Errorf("%w; starting a new session failed: %v", err, rerr)
		} else {
			remote, _ = b.current()
			err = remote.Write(ctx, msg)
		}
	}
	if err == nil {
		return
	}
	req, ok := msg.(*jsonrpc.Request)
	if !ok || !req.IsCall() {
		return
	}
	text := fmt.Sprintf("gantry bridge: cannot deliver %q to %s: %v", req.Method, b.endpoint, err)
	if errors.Is(err, syscall.ECONNREFUSED) {
		text += ": is gantry dev running there? Start it with: gantry dev, or set GANTRY_ADDR to its endpoint"
	}
	if rerr := b.remoteError(); rerr != nil {
		text = "gantry bridge: " + rerr.Error()
		b.fatal.CompareAndSwap(nil, &rerr)
	}
	b.track(req.ID, false)
	// Reply even when the bridge is stopping: the client is still reading.
	_ = b.local.write(&jsonrpc.Response{ID: req.ID, Error: &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: text}})
}

// drainTimeout bounds how long the bridge waits, after the client closed
// its input, for answers to calls in flight.
const drainTimeout = 10 * time.Second

// track records that call id is in flight (or answered).
func (b *bridge) track(id jsonrpc.ID, inFlight bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if inFlight {
		b.pending[id] = true
		return
	}
	delete(b.pending, id)
	select {
	case b.settled <- struct{}{}:
	default:
	}
}

// drain waits until no call is in flight, ctx is done or timeout passes.
func (b *bridge) drain(ctx context.Context, timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-b.settled:
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		}
	}
}

// remoteError explains an HTTP status that no retry will fix.
func (b *bridge) remoteError() error {
	switch b.rt.lastStatus.Load() {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s rejected the token (401 Unauthorized): set GANTRY_TOKEN to the server's admin token (the file admin.token in its data directory)", b.endpoint)
	case http.StatusForbidden:
		return fmt.Errorf("%s refused the request (403 Forbidden): the Origin or Host header is not allowed", b.endpoint)
	}
	return nil
}

// down copies messages from the endpoint to the stdio client.
func (b *bridge) down(ctx context.Context, wg *sync.WaitGroup) error {
	for {
		remote, renewed := b.current()
		msg, err := remote.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if cur, _ := b.current(); cur != remote {
				continue // renewed: read the new session
			}
			if errors.Is(err, sdk.ErrSessionMissing) {
				// The call that met the 404 is renewing the session.
				select {
				case <-renewed:
					continue
				case <-ctx.Done():
					return nil
				case <-time.After(renewTimeout + time.Second):
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if rerr := b.remoteError(); rerr != nil {
				return rerr
			}
			return fmt.Errorf("reading from %s: %w", b.endpoint, err)
		}
		resp, isResp := msg.(*jsonrpc.Response)
		if isResp {
			if ch, ok := b.reinits.LoadAndDelete(resp.ID); ok {
				ch.(chan *jsonrpc.Response) <- resp // the bridge's own initialize
				continue
			}
			if _, isInit := b.initIDs.LoadAndDelete(resp.ID); isInit && resp.Error == nil {
				var res struct {
					ProtocolVersion string `json:"protocolVersion"`
				}
				if json.Unmarshal(resp.Result, &res) == nil && res.ProtocolVersion != "" {
					b.rt.version.Store(&res.ProtocolVersion)
					b.startListening(ctx, wg, res.ProtocolVersion)
				}
			}
		}
		err = b.local.write(msg)
		if isResp {
			b.track(resp.ID, false)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("writing to the stdio client: %w", err)
		}
	}
}

// bearerTransport adds the bearer token, and the negotiated protocol
// version header that a real client session would add, to every request.
type bearerTransport struct {
	token      string
	base       *http.Transport
	version    atomic.Pointer[string]
	lastStatus atomic.Int32
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	if v := t.version.Load(); v != nil && r.Header.Get("Mcp-Protocol-Version") == "" {
		r.Header.Set("Mcp-Protocol-Version", *v)
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		t.lastStatus.Store(int32(resp.StatusCode))
	}
	return resp, err
}

// renewTimeout bounds starting a new session after the server lost one.
const renewTimeout = 10 * time.Second

// current returns the HTTP connection in use, and a channel closed when
// it is replaced.
func (b *bridge) current() (sdk.Connection, chan struct{}) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	return b.remote, b.renewed
}

// renew replaces the connection old, whose session the server no longer
// knows, with a new session: it repeats the client's initialize (the
// answer stays with the bridge) and notifications/initialized, so the
// client carries on as if nothing happened; its subscriptions are lost.
func (b *bridge) renew(ctx context.Context, old sdk.Connection) error {
	b.renewMu.Lock()
	defer b.renewMu.Unlock()
	b.rmu.Lock()
	cur, init := b.remote, b.initReq
	b.rmu.Unlock()
	if cur != old {
		return nil // another call renewed it already
	}
	if init == nil {
		return errors.New("the client has not initialized yet")
	}
	nr, err := b.connect(ctx)
	if err != nil {
		return err
	}
	id, err := jsonrpc.MakeID(fmt.Sprintf("gantry-bridge-initialize-%d", b.reinitN.Add(1)))
	if err != nil {
		return err
	}
	answer := make(chan *jsonrpc.Response, 1)
	b.reinits.Store(id, answer)
	defer b.reinits.Delete(id)
	b.rmu.Lock()
	b.remote = nr
	close(b.renewed)
	b.renewed = make(chan struct{})
	b.rmu.Unlock()
	_ = old.Close()

	ctx2, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	if err := nr.Write(ctx2, &jsonrpc.Request{ID: id, Method: "initialize", Params: init.Params}); err != nil {
		return err
	}
	var resp *jsonrpc.Response
	select {
	case resp = <-answer:
	case <-ctx2.Done():
		return fmt.Errorf("no answer to initialize: %w", ctx2.Err())
	}
	if resp.Error != nil {
		return resp.Error
	}
	if err := nr.Write(ctx2, &jsonrpc.Request{Method: "notifications/initialized"}); err != nil {
		return err
	}
	if v := b.rt.version.Load(); v != nil {
		b.startListening(ctx, b.wg, *v)
	}
	return nil
}
