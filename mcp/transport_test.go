package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

const legacyVersion = "2025-11-25"

// twoPrincipals authenticates alice's and bob's tokens.
type twoPrincipals struct{}

func (twoPrincipals) Authenticate(_ context.Context, token string) (mcp.Principal, error) {
	switch token {
	case "alice-token", testToken:
		return mcp.Principal{Name: "alice", Scopes: []mcp.Scope{mcp.ScopeAdmin}}, nil
	case "bob-token":
		return mcp.Principal{Name: "bob", Scopes: []mcp.Scope{mcp.ScopeAdmin}}, nil
	}
	return mcp.Principal{}, errors.New("unknown token")
}

// slowImages blocks PullImage until its context ends, and reports that.
type slowImages struct {
	*mcptest.Cluster
	started   chan struct{}
	cancelled chan struct{}
}

func (s *slowImages) PullImage(ctx context.Context, _ string, _ func(done, total int64)) (*api.Image, error) {
	close(s.started)
	select {
	case <-ctx.Done():
		close(s.cancelled)
		return nil, ctx.Err()
	case <-time.After(10 * time.Second): // never hang the test
		return nil, errors.New("not cancelled")
	}
}

// newSessionEnv serves a server configured by edit, with alice's and
// bob's tokens.
func newSessionEnv(t *testing.T, edit func(*mcp.Config)) (*env, *mcp.Server, *testSource) {
	t.Helper()
	e := &env{cluster: mcptest.New(), logs: &syncBuffer{}}
	src := newTestSource()
	cfg := mcp.Config{Services: e.cluster, Images: e.cluster, Resources: src, Auth: twoPrincipals{},
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := mcp.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	e.http = httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.WatchResources(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		e.http.Close()
		srv.CloseSessions()
	})
	return e, srv, src
}

// connectAs opens a go-sdk client session with token at protocol version.
func (e *env) connectAs(t *testing.T, token, version string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	client := sdk.NewClient(&sdk.Implementation{Name: "session-client", Version: "1"}, opts)
	cs, err := client.Connect(context.Background(), &sdk.StreamableClientTransport{
		Endpoint: e.http.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{token, base}},
	}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// post sends one JSON-RPC message and returns the response.
func (e *env) post(t *testing.T, token, sid, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", legacyVersion)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func (e *env) initialize(t *testing.T, token string) string {
	t.Helper()
	resp, body := e.post(t, token, "", initBody)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("initialize: %d, session %q: %s", resp.StatusCode, sid, body)
	}
	if resp, body := e.post(t, token, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return sid
}

func wantJSONError(t *testing.T, resp *http.Response, body string, code int, says string) {
	t.Helper()
	var e struct{ Error, Message string }
	if resp.StatusCode != code || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Message, says) {
		t.Errorf("got %d %s; want %d with a JSON message saying %q", resp.StatusCode, body, code, says)
	}
}

// A 2025-11-25 client gets a session; a 2026-07-28 client stays stateless.
func TestSessionsOnlyForLegacyRevisions(t *testing.T) {
	e, srv, _ := newSessionEnv(t, nil)
	legacy := e.connectAs(t, "alice-token", legacyVersion, nil)
	if legacy.ID() == "" || legacy.InitializeResult().ProtocolVersion != legacyVersion {
		t.Fatalf("2025-11-25 session: id %q, version %s", legacy.ID(), legacy.InitializeResult().ProtocolVersion)
	}
	modern := e.connectAs(t, "alice-token", "", nil)
	if modern.ID() != "" || modern.InitializeResult().ProtocolVersion != "2026-07-28" {
		t.Fatalf("2026-07-28 client: id %q, version %s", modern.ID(), modern.InitializeResult().ProtocolVersion)
	}
	for _, cs := range []*sdk.ClientSession{legacy, modern} {
		if _, err := cs.ListTools(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.OpenSessions(); n != 1 {
		t.Errorf("open sessions = %d, want 1", n)
	}
	legacy.Close()
	waitFor(t, func() bool { return srv.OpenSessions() == 0 })
}

// A session is bound to the principal that created it.
func TestSessionOfAnotherPrincipalIsRefused(t *testing.T) {
	e, _, _ := newSessionEnv(t, nil)
	sid := e.initialize(t, "alice-token")
	resp, body := e.post(t, "bob-token", sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	wantJSONError(t, resp, body, http.StatusForbidden, "another token")
	if !strings.Contains(e.logs.String(), "another principal's MCP session") || !strings.Contains(e.logs.String(), "principal=bob") {
		t.Errorf("the refusal is not logged:\n%s", e.logs.String())
	}
	if resp, body := e.post(t, "alice-token", sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, "list_services") {
		t.Errorf("owner's request: %d %s", resp.StatusCode, body)
	}
	resp, body = e.post(t, "alice-token", "no-such-session", `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	wantJSONError(t, resp, body, http.StatusNotFound, "send initialize again")
}

func TestIdleSessionsExpire(t *testing.T) {
	e, srv, _ := newSessionEnv(t, func(c *mcp.Config) { c.SessionIdleTimeout = 200 * time.Millisecond })
	sid := e.initialize(t, "alice-token")
	if srv.OpenSessions() != 1 {
		t.Fatalf("open sessions = %d", srv.OpenSessions())
	}
	waitFor(t, func() bool { return srv.OpenSessions() == 0 })
	resp, body := e.post(t, "alice-token", sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	wantJSONError(t, resp, body, http.StatusNotFound, "idle for more than 200ms")
}

// A client that listens on its GET stream is not idle.
func TestListeningSessionDoesNotExpire(t *testing.T) {
	e, srv, _ := newSessionEnv(t, func(c *mcp.Config) { c.SessionIdleTimeout = 200 * time.Millisecond })
	cs := e.connectAs(t, "alice-token", legacyVersion, nil) // opens the GET stream
	time.Sleep(700 * time.Millisecond)
	if _, err := cs.ListTools(context.Background(), nil); err != nil || srv.OpenSessions() != 1 {
		t.Fatalf("listening session after 3 idle periods: %v, %d open", err, srv.OpenSessions())
	}
	cs.Close()
	waitFor(t, func() bool { return srv.OpenSessions() == 0 })
}

func TestOpenSessionsAreCapped(t *testing.T) {
	e, srv, _ := newSessionEnv(t, func(c *mcp.Config) { c.MaxSessions = 2 })
	first := e.initialize(t, "alice-token")
	e.initialize(t, "bob-token")
	resp, body := e.post(t, "alice-token", "", initBody)
	wantJSONError(t, resp, body, http.StatusServiceUnavailable, "already has 2 open MCP sessions")
	if resp.Header.Get("Mcp-Session-Id") != "" || srv.OpenSessions() != 2 {
		t.Errorf("refused initialize opened a session")
	}
	// Stateless requests need no session and still work.
	if resp, body := e.post(t, "alice-token", "", `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`); resp.StatusCode != http.StatusOK || !strings.Contains(body, "list_services") {
		t.Errorf("sessionless request at the cap: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.http.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Mcp-Session-Id", first)
	dresp, err := http.DefaultClient.Do(req)
	if err != nil || dresp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", err, dresp)
	}
	dresp.Body.Close()
	waitFor(t, func() bool { return srv.OpenSessions() == 1 })
	e.initialize(t, "alice-token")
}

// One token that keeps opening sessions (a careless agent re-initializing
// on every call, or a hostile one) only ever replaces its own idle ones:
// other principals can still open theirs. When all of its sessions are
// busy, its new one is refused, naming the limit.
func TestSessionsArePerPrincipal(t *testing.T) {
	e, srv, _ := newSessionEnv(t, func(c *mcp.Config) { c.MaxSessionsPerPrincipal = 2 })
	first := e.initialize(t, "alice-token")
	second := e.initialize(t, "alice-token")
	for range 5 {
		e.initialize(t, "alice-token")
	}
	waitFor(t, func() bool { return srv.OpenSessions() == 2 })
	for _, sid := range []string{first, second} {
		resp, body := e.post(t, "alice-token", sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		wantJSONError(t, resp, body, http.StatusNotFound, "send initialize again")
	}
	e.initialize(t, "bob-token")
	if n := srv.OpenSessions(); n != 3 {
		t.Errorf("%d sessions open, want alice's 2 and bob's", n)
	}

	// Sessions listening on their GET stream are busy: not replaced.
	e2, srv2, _ := newSessionEnv(t, func(c *mcp.Config) { c.MaxSessionsPerPrincipal = 2 })
	a := e2.connectAs(t, "alice-token", legacyVersion, nil)
	b := e2.connectAs(t, "alice-token", legacyVersion, nil)
	time.Sleep(100 * time.Millisecond) // let the GET streams open
	resp, body := e2.post(t, "alice-token", "", initBody)
	wantJSONError(t, resp, body, http.StatusServiceUnavailable, "limit per principal")
	for _, cs := range []*sdk.ClientSession{a, b} {
		if _, err := cs.ListTools(context.Background(), nil); err != nil {
			t.Errorf("a busy session was closed to make room: %v", err)
		}
	}
	e2.initialize(t, "bob-token")
	if n := srv2.OpenSessions(); n != 3 {
		t.Errorf("%d sessions open, want alice's 2 and bob's", n)
	}
}

// Serve closes the sessions when it shuts down, though their clients keep
// a GET stream open.
func TestServeClosesSessions(t *testing.T) {
	e, srv, _ := newSessionEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mcp.Serve(ctx, ln, srv.Handler()) }()
	e2 := &env{http: &httptest.Server{URL: "http://" + ln.Addr().String()}}
	cs := e2.connectAs(t, "alice-token", legacyVersion, nil)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the GET stream open
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Serve did not return within 8s of the shutdown")
	}
	// Without closing the sessions, Shutdown waits out its whole 5s grace
	// for the open GET stream; the bound stays below that, with room for a
	// loaded 2-core machine under -race (2.15s was seen).
	if took := time.Since(start); took > 4*time.Second || srv.OpenSessions() != 0 {
		t.Errorf("shutdown took %v with %d sessions open", took, srv.OpenSessions())
	}
	_ = e
}

// Cancelling a call reaches the tool's context: on a 2025-11-25 session
// by notifications/cancelled, on 2026-07-28 by the dropped request.
func TestCancellationReachesTool(t *testing.T) {
	for _, version := range []string{legacyVersion, "2026-07-28"} {
		t.Run(version, func(t *testing.T) { testCancellation(t, version) })
	}
}

func testCancellation(t *testing.T, version string) {
	slow := &slowImages{Cluster: mcptest.New(), started: make(chan struct{}), cancelled: make(chan struct{})}
	e, _, _ := newSessionEnv(t, func(c *mcp.Config) { c.Images = slow })
	cs := e.connectAs(t, "alice-token", version, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: api.ToolPullImage, Arguments: api.PullImageInput{Ref: "127.0.0.1:5000/demo/web:1"}})
		errc <- err
	}()
	select {
	case <-slow.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the tool did not start")
	}
	cancel()
	select {
	case <-slow.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the tool's context was not cancelled within 5s of the client's cancel")
	}
	if err := <-errc; err == nil {
		t.Error("the cancelled call returned no error")
	}
}

// With ConfirmDestructive, a session whose client can elicit is asked.
func TestElicitationOnSession(t *testing.T) {
	e, _, _ := newSessionEnv(t, func(c *mcp.Config) { c.ConfirmDestructive = true })
	var mu sync.Mutex
	answer, asked := "decline", []string{}
	cs := e.connectAs(t, "alice-token", legacyVersion, &sdk.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, req.Params.Message)
			return &sdk.ElicitResult{Action: answer}, nil
		}})
	call(t, cs, api.ToolDeploy, map[string]any{"spec_yaml": "name: web\nimage: nginx:1.27\nreplicas: 1\n"})
	wantToolError(t, call(t, cs, api.ToolRemoveService, api.NameInput{Name: "web"}), "declined by the user")
	if _, err := e.cluster.GetService(context.Background(), "web"); err != nil {
		t.Fatalf("declined removal removed the service: %v", err)
	}
	mu.Lock()
	answer = "accept"
	mu.Unlock()
	if res := call(t, cs, api.ToolRemoveService, api.NameInput{Name: "web"}); res.IsError {
		t.Fatalf("accepted removal: %s", text(res))
	}
	if _, err := e.cluster.GetService(context.Background(), "web"); err == nil {
		t.Error("accepted removal left the service")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || !strings.Contains(asked[0], `remove service "web"`) {
		t.Errorf("asked %q", asked)
	}
}

// A client that declares elicitation but never answers does not hold a
// destructive call (and its session) open for good: no answer within the
// bound refuses the call, and nothing is removed.
func TestUnansweredConfirmationRefuses(t *testing.T) {
	defer mcp.SetConfirmTimeout(300 * time.Millisecond)()
	e, _, _ := newSessionEnv(t, func(c *mcp.Config) { c.ConfirmDestructive = true })
	cs := e.connectAs(t, "alice-token", legacyVersion, &sdk.ClientOptions{
		ElicitationHandler: func(ctx context.Context, _ *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			select { // no answer in time
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			return nil, errors.New("no answer")
		}})
	call(t, cs, api.ToolDeploy, map[string]any{"spec_yaml": "name: web\nimage: nginx:1.27\nreplicas: 1\n"})
	start := time.Now()
	wantToolError(t, call(t, cs, api.ToolRemoveService, api.NameInput{Name: "web"}), "none came within 300ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the unanswered confirmation held the call %v", d)
	}
	if _, err := e.cluster.GetService(context.Background(), "web"); err != nil {
		t.Fatalf("an unconfirmed removal removed the service: %v", err)
	}
}

// Through gantry mcp, a stdio client gets the session's server-to-client
// traffic: elicitation requests (its answers go back) and resource updates
// sent on the session's GET stream.
func TestBridgeCarriesSessionTraffic(t *testing.T) {
	e, _, src := newSessionEnv(t, func(c *mcp.Config) { c.ConfirmDestructive = true })
	updates := make(chan string, 16)
	var asked sync.WaitGroup
	asked.Add(1)
	cs, stop := bridged(t, e.http.URL+"/mcp", "alice-token", &sdk.ClientOptions{
		ElicitationHandler: func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			asked.Done()
			return &sdk.ElicitResult{Action: "accept"}, nil
		},
		ResourceUpdatedHandler: func(_ context.Context, req *sdk.ResourceUpdatedNotificationRequest) {
			select {
			case updates <- req.Params.URI:
			default:
			}
		}}, legacyVersion)
	ctx := context.Background()
	call(t, cs, api.ToolDeploy, map[string]any{"spec_yaml": "name: web\nimage: nginx:1.27\nreplicas: 1\n"})
	if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "gantry://services/web"}); err != nil {
		t.Fatal(err)
	}
	call(t, cs, api.ToolScaleService, map[string]any{"name": "web", "replicas": 3})
	src.fire()
	select {
	case uri := <-updates:
		if uri != "gantry://services/web" {
			t.Errorf("update for %s", uri)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notifications/resources/updated through the bridge within 5s")
	}
	if err := cs.Unsubscribe(ctx, &sdk.UnsubscribeParams{URI: "gantry://services/web"}); err != nil {
		t.Fatal(err)
	}
	call(t, cs, api.ToolScaleService, map[string]any{"name": "web", "replicas": 4})
	src.fire()
	select {
	case uri := <-updates:
		t.Errorf("update for %s after unsubscribing", uri)
	case <-time.After(700 * time.Millisecond):
	}
	if res := call(t, cs, api.ToolRemoveService, api.NameInput{Name: "web"}); res.IsError {
		t.Fatalf("remove through the bridge: %s", text(res))
	}
	asked.Wait()
	if _, err := e.cluster.GetService(ctx, "web"); err == nil {
		t.Error("the confirmed removal left the service")
	}
	if err := stop(); err != nil {
		t.Errorf("Bridge = %v", err)
	}
}

// A line that is not JSON-RPC gets an error reply; the bridge keeps going.
func TestBridgeAnswersBadLines(t *testing.T) {
	e, _, _ := newSessionEnv(t, nil)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- mcp.Bridge(context.Background(), e.http.URL+"/mcp", "alice-token", inR, outW)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	next := func(send string) map[string]any {
		t.Helper()
		go func() { _, _ = io.WriteString(inW, send+"\n") }()
		if !lines.Scan() {
			t.Fatalf("no reply to %s: %v", send, lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("reply %s: %v", lines.Text(), err)
		}
		return m
	}
	for _, c := range []struct {
		send string
		code float64
		id   any
	}{
		{"this is not json", -32700, nil},
		{`{"jsonrpc":"2.0","id":3,"method":`, -32700, nil},
		{`{"hello":"world"}`, -32600, nil},
		{`[{"jsonrpc":"2.0","id":4,"method":"ping"}]`, -32600, nil},
	} {
		m := next(c.send)
		id, hasID := m["id"]
		errObj, _ := m["error"].(map[string]any)
		if !hasID || id != c.id || errObj == nil || errObj["code"] != c.code {
			t.Errorf("reply to %s = %v, want error %v with id %v", c.send, m, c.code, c.id)
		}
	}
	// Still bridging.
	if m := next(`{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}`); m["id"] != float64(9) || m["result"] == nil {
		t.Errorf("tools/list after bad lines = %v", m)
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Bridge = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Bridge did not return")
	}
	outR.Close()
}

// When the server loses the session (closed, expired, or the server
// restarted), gantry mcp starts a new one by repeating the client's
// initialize, and the client carries on.
func TestBridgeRenewsLostSession(t *testing.T) {
	e, srv, _ := newSessionEnv(t, nil)
	var mu sync.Mutex
	var sids []string
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(w, r)
		if sid := w.Header().Get("Mcp-Session-Id"); sid != "" && r.Header.Get("Mcp-Session-Id") == "" {
			mu.Lock()
			sids = append(sids, sid)
			mu.Unlock()
		}
	}))
	defer rec.Close()
	cs, stop := bridged(t, rec.URL, "alice-token", nil, legacyVersion)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(sids) != 1 {
		t.Fatalf("sessions opened: %q", sids)
	}
	first := sids[0]
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodDelete, e.http.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Mcp-Session-Id", first)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	resp.Body.Close()
	waitFor(t, func() bool { return srv.OpenSessions() == 0 })

	res := call(t, cs, api.ToolListServices, map[string]any{})
	if res.IsError {
		t.Fatalf("call after the session was lost: %s", text(res))
	}
	mu.Lock()
	if len(sids) != 2 || sids[1] == first {
		t.Errorf("sessions opened: %q, want a second one", sids)
	}
	mu.Unlock()
	if srv.OpenSessions() != 1 {
		t.Errorf("open sessions = %d", srv.OpenSessions())
	}
	if err := stop(); err != nil {
		t.Errorf("Bridge = %v", err)
	}
}
