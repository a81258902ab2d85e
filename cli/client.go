package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// token returns the bearer token: from --token-file when given, else
// GANTRY_TOKEN, else the default token file.
func (a *app) token() (string, error) {
	if !a.g.tokenFileSet {
		if t, ok := a.lookupEnv("GANTRY_TOKEN"); ok && strings.TrimSpace(t) != "" {
			return strings.TrimSpace(t), nil
		}
	}
	data, err := readTokenFile(a.g.tokenFile)
	if err != nil {
		return "", tokenFileError(err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("no token: %s is empty: run gantry dev first, or set GANTRY_TOKEN", a.g.tokenFile)
	}
	return t, nil
}

// tokenFileError says why the token file could not be read and what to do:
// a file that exists but is not readable is root's (gantry dev writes it
// 0600), which "run gantry dev first" would not fix.
func tokenFileError(err error) error {
	reason := err.Error()
	var pe *os.PathError
	if errors.As(err, &pe) {
		reason = fmt.Sprintf("cannot read %s: %v", pe.Path, pe.Err)
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("no token: %s: the admin token is readable by root only: run the command as root (sudo), or set GANTRY_TOKEN to a token made with: sudo gantry token create --name NAME --scope operate", reason)
	}
	return fmt.Errorf("no token: run gantry dev first, or set GANTRY_TOKEN (%s)", reason)
}

// maxTokenFile bounds the token file; gantry's tokens are 64 characters.
const maxTokenFile = 4 << 10

// readTokenFile reads at most maxTokenFile bytes, opening non-blocking so
// --token-file on a FIFO without a writer cannot hang and a device such as
// /dev/zero cannot eat memory.
func readTokenFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, err // a *os.PathError
	}
	if len(data) > maxTokenFile {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes: not a token file", maxTokenFile)}
	}
	return data, nil
}

// endpoint checks and returns the --addr URL.
func (a *app) endpoint() (string, error) {
	u, err := url.Parse(a.g.addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("", "--addr %q: expected an http or https URL such as %s", a.g.addr, defaultAddr)
	}
	return a.g.addr, nil
}

// client is an MCP client session with the gantry server.
type client struct {
	addr    string
	session *sdk.ClientSession
	rt      *authTransport
	// approval is --approval: sent as approval_id with every call.
	approval string

	progressSeq atomic.Int64
	progress    sync.Map // progress token (string) -> func(*sdk.ProgressNotificationParams)
}

// connect opens a session with the server.
func (a *app) connect(ctx context.Context) (*client, error) {
	addr, err := a.endpoint()
	if err != nil {
		return nil, err
	}
	token, err := a.token()
	if err != nil {
		return nil, err
	}
	tlsConf, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := &client{addr: addr, rt: &authTransport{token: token, consistent: a.g.consistent, base: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		TLSClientConfig:     tlsConf,
	}}}
	c.approval = a.g.approval
	mc := sdk.NewClient(&sdk.Implementation{Name: "gantry-cli", Version: buildVersion()}, &sdk.ClientOptions{
		Capabilities:                &sdk.ClientCapabilities{},
		ProgressNotificationHandler: c.onProgress,
	})
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	session, err := mc.Connect(cctx, &sdk.StreamableClientTransport{
		Endpoint:             addr,
		HTTPClient:           &http.Client{Transport: c.rt},
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		c.rt.base.CloseIdleConnections()
		return nil, c.explain(ctx, err)
	}
	c.session = session
	return c, nil
}

func (c *client) Close() {
	if c.session != nil {
		_ = c.session.Close()
	}
	c.rt.base.CloseIdleConnections()
}

// toolError is a tool's own error result: its text says what is wrong and
// how to fix it.
type toolError struct{ text string }

func (e *toolError) Error() string { return e.text }

// call calls a tool and decodes its structured result into out.
func (c *client) call(ctx context.Context, tool string, args, out any) error {
	return c.callWithProgress(ctx, tool, args, out, nil)
}

// callWithProgress is call with a progress token whose notifications go to
// onProgress.
func (c *client) callWithProgress(ctx context.Context, tool string, args, out any, onProgress func(*sdk.ProgressNotificationParams)) error {
	params := &sdk.CallToolParams{Name: tool, Arguments: withApproval(args, c.approval)}
	if onProgress != nil {
		token := fmt.Sprintf("gantry-cli-%d", c.progressSeq.Add(1))
		c.progress.Store(token, onProgress)
		defer c.progress.Delete(token)
		params.SetProgressToken(token)
	}
	res, err := c.session.CallTool(ctx, params)
	if err != nil {
		return c.explain(ctx, err)
	}
	if res.IsError {
		var parts []string
		for _, ct := range res.Content {
			if t, ok := ct.(*sdk.TextContent); ok {
				parts = append(parts, t.Text)
			}
		}
		if len(parts) == 0 {
			parts = []string{tool + " failed without a message"}
		}
		return &toolError{text: withCLINames(strings.Join(parts, "\n"))}
	}
	if out == nil {
		return nil
	}
	if res.StructuredContent == nil {
		return fmt.Errorf("%s returned no structured result: is the server at %s a gantry server of the same version?", tool, c.addr)
	}
	data, err := json.Marshal(res.StructuredContent)
	if err == nil {
		err = json.Unmarshal(data, out)
	}
	if err != nil {
		return fmt.Errorf("decoding the result of %s: %w", tool, err)
	}
	return nil
}

func (c *client) onProgress(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
	if req == nil || req.Params == nil {
		return
	}
	token, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	if fn, ok := c.progress.Load(token); ok {
		fn.(func(*sdk.ProgressNotificationParams))(req.Params)
	}
}

// clusterReach completes the "cannot reach" hint for cluster users: a
// server's MCP endpoint listens on its own loopback by default.
const clusterReach = "a cluster server listens on its own machine's 127.0.0.1:7433: run gantry there, or give --addr its --listen URL"

// explain turns transport failures into messages that say what to do.
func (c *client) explain(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch c.rt.status.Load() {
	case http.StatusUnauthorized:
		if isJWT(c.rt.token) {
			return explainOAuthRejection(c.addr, c.rt.reason())
		}
		return fmt.Errorf("the gantry server at %s rejected the token (unknown or revoked): use that server's admin token or a token from `gantry token create` (GANTRY_TOKEN, or --token-file; default %s)", c.addr, defaultTokenFile)
	case http.StatusForbidden:
		return fmt.Errorf("the gantry server at %s refused the request (403 Forbidden): %v", c.addr, err)
	case http.StatusNotFound:
		return fmt.Errorf("%s has no MCP endpoint (404 Not Found): check --addr or GANTRY_ADDR (default %s)", c.addr, defaultAddr)
	case http.StatusServiceUnavailable:
		why := "it gave no reason; retry in a few seconds"
		if p := c.rt.lastUnavailable.Load(); p != nil && *p != "" {
			why = *p
		}
		return fmt.Errorf("the gantry server at %s cannot answer now (503 Service Unavailable): %s", c.addr, why)
	}
	if derr := c.rt.dialErr(); derr != nil {
		if cerr := certError(derr); cerr != nil {
			return explainCert(c.addr, cerr)
		}
		if errors.Is(derr, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach gantry at %s: is `gantry dev` running? (start it with: gantry dev; %s)", c.addr, clusterReach)
		}
		return fmt.Errorf("cannot reach gantry at %s (%v): is `gantry dev` running? (start it with: gantry dev; %s)", c.addr, derr, clusterReach)
	}
	return fmt.Errorf("talking to gantry at %s: %w", c.addr, err)
}

// authTransport adds the bearer token and remembers the last HTTP status
// and network error, which the MCP client does not surface in a typed way.
type authTransport struct {
	token string
	// consistent asks a cluster server for linearizable reads: the
	// header is the one cluster.ConsistencyHeader names (the CLI does not
	// import server packages); gantry dev, a single voter, ignores it.
	consistent bool
	base       *http.Transport
	status     atomic.Int32
	mu         sync.Mutex
	netErr     error
	// lastReason is the error_description of the last 401 (oauth.go).
	lastReason atomic.Pointer[string]
	// lastUnavailable is the start of the last 503's body: the server's
	// reason (a cluster server with no leader for a --consistent read),
	// which the MCP client drops.
	lastUnavailable atomic.Pointer[string]
}

func (t *authTransport) reason() string {
	if p := t.lastReason.Load(); p != nil {
		return *p
	}
	return ""
}

func (t *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	if t.consistent {
		r.Header.Set("Gantry-Consistency", "linearizable")
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			t.mu.Lock()
			t.netErr = op
			t.mu.Unlock()
		} else if certError(err) != nil {
			t.mu.Lock()
			t.netErr = err
			t.mu.Unlock()
		}
		return nil, err
	}
	t.status.Store(int32(resp.StatusCode))
	if resp.StatusCode == http.StatusUnauthorized {
		d := bearerErrorDescription(resp.Header.Get("WWW-Authenticate"))
		t.lastReason.Store(&d)
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		msg := strings.TrimSpace(string(head))
		t.lastUnavailable.Store(&msg)
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	}
	return resp, nil
}

func (t *authTransport) dialErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.netErr
}

// progressParams is a progress notification from the server.
type progressParams = sdk.ProgressNotificationParams
