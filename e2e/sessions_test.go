package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// legacy is the newest revision with sessions.
const legacy = "2025-11-25"

// connectLegacy opens a 2025-11-25 session with the given client options.
func (d *dev) connectLegacy(token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	d.t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-session", Version: "1"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}}, &mcp.ClientSessionOptions{ProtocolVersion: legacy})
	if err != nil {
		d.t.Fatalf("connect at %s: %v\n%s", legacy, err, d.log())
	}
	d.t.Cleanup(func() { cs.Close() })
	if cs.ID() == "" || cs.InitializeResult().ProtocolVersion != legacy {
		d.t.Fatalf("no %s session: id %q, version %s", legacy, cs.ID(), cs.InitializeResult().ProtocolVersion)
	}
	return cs
}

func callTool(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return res
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// With --confirm-destructive, remove_service asks a 2025-11-25 HTTP
// client through elicitation: decline keeps the service, accept removes
// it; a client that cannot be asked gets today's behaviour (the call runs).
func TestElicitationConfirmsRemoval(t *testing.T) {
	ref := webImage(t)
	d := startDev(t, "--confirm-destructive")
	for _, name := range []string{"conf-a", "conf-b"} {
		d.deploy(fmt.Sprintf("name: %s\nimage: %s\ncommand: [sleep, '3600']\n", name, ref))
	}
	var mu sync.Mutex
	answer, asked := "decline", 0
	cs := d.connectLegacy(d.token, &mcp.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			mu.Lock()
			defer mu.Unlock()
			asked++
			if !strings.Contains(req.Params.Message, `"conf-a"`) {
				t.Errorf("asked %q", req.Params.Message)
			}
			return &mcp.ElicitResult{Action: answer}, nil
		}})

	res := callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "conf-a"})
	if !res.IsError || !strings.Contains(resultText(res), "declined by the user") {
		t.Fatalf("declined removal = %s", resultText(res))
	}
	time.Sleep(500 * time.Millisecond) // a removal would have begun by now
	if s := d.service("conf-a"); s.Name != "conf-a" || s.Desired != 1 {
		t.Fatalf("declined removal removed conf-a: %+v", s)
	}
	mu.Lock()
	answer = "accept"
	mu.Unlock()
	if res := callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "conf-a"}); res.IsError {
		t.Fatalf("accepted removal: %s", resultText(res))
	}
	// Removal stops the instances first; the service then disappears.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.callErr(api.ToolGetService, map[string]any{"name": "conf-a"}, nil)
		if err != nil && strings.Contains(err.Error(), "not found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("conf-a still there 30s after the accepted removal: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	if asked != 2 {
		t.Errorf("asked %d times, want 2", asked)
	}
	mu.Unlock()

	// No elicitation capability: not asked, the call runs.
	plain := d.connectLegacy(d.token, nil)
	if res := callTool(t, plain, api.ToolRemoveService, map[string]any{"name": "conf-b"}); res.IsError {
		t.Fatalf("removal by a client without elicitation: %s", resultText(res))
	}
}

// A 2025-11-25 subscriber hears of a scale within seconds on its session;
// after unsubscribing it hears nothing. The default (2026-07-28) client
// and the CLI stay stateless.
func TestSessionResourceUpdates(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	if v := d.session.InitializeResult().ProtocolVersion; v != "2026-07-28" || d.session.ID() != "" {
		t.Errorf("default client: version %s, session %q; want stateless 2026-07-28", v, d.session.ID())
	}
	d.deploy(fmt.Sprintf("name: subs\nimage: %s\ncommand: [sleep, '3600']\n", ref))
	updates := make(chan string, 64)
	cs := d.connectLegacy(d.token, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			select {
			case updates <- req.Params.URI:
			default:
			}
		}})
	ctx := context.Background()
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "gantry://services/subs"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.call(api.ToolScaleService, map[string]any{"name": "subs", "replicas": 2}, nil)
	select {
	case uri := <-updates:
		if uri != "gantry://services/subs" {
			t.Errorf("update for %s", uri)
		}
		t.Logf("update %v after the scale", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatalf("no notifications/resources/updated within 3s of the scale\n%s", d.log())
	}
	d.waitFor("subs", 60*time.Second, "2 running", running(2))
	if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "gantry://services/subs"}); err != nil {
		t.Fatal(err)
	}
	for len(updates) > 0 {
		<-updates
	}
	d.call(api.ToolScaleService, map[string]any{"name": "subs", "replicas": 1}, nil)
	select {
	case uri := <-updates:
		t.Errorf("update for %s after unsubscribing", uri)
	case <-time.After(2 * time.Second):
	}
	if out, err := d.cli("status", "subs"); err != nil || !strings.Contains(out, "subs") {
		t.Errorf("CLI (stateless): %v\n%s", err, out)
	}
}

// A session cannot be used with another principal's token.
func TestSessionBoundToPrincipal(t *testing.T) {
	d := startDev(t)
	var tok api.CreatedToken
	d.call(api.ToolCreateToken, map[string]any{"name": "other", "scope": "read"}, &tok)
	cs := d.connectLegacy(d.token, nil)

	req, _ := http.NewRequest(http.MethodPost, "http://"+d.addr+"/mcp",
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", cs.ID())
	req.Header.Set("Mcp-Protocol-Version", legacy)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var msg struct{ Error, Message string }
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal(body, &msg) != nil || !strings.Contains(msg.Message, "another token") {
		t.Errorf("other principal's request on the session: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(d.log(), "another principal's MCP session") {
		t.Errorf("the refusal is not logged:\n%s", d.log())
	}
	// The owner carries on.
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Errorf("owner after the refusal: %v", err)
	}
}

// `gantry mcp` answers a line that is not JSON with a parse error and
// keeps bridging, and survives a restart of gantry dev (a new session).
func TestStdioBridgeSurvivesBadJSON(t *testing.T) {
	d := startDev(t)
	cmd := exec.Command(gantryBin, "mcp")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	lines.Buffer(make([]byte, 1<<20), 8<<20)
	// next sends a line and returns the first reply that is not a
	// notification.
	next := func(send string) map[string]any {
		t.Helper()
		if _, err := io.WriteString(in, send+"\n"); err != nil {
			t.Fatal(err)
		}
		for lines.Scan() {
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("stdout line %q: %v", lines.Text(), err)
			}
			if _, isNote := m["method"]; !isNote {
				return m
			}
		}
		t.Fatalf("gantry mcp stopped after %s: %v", send, lines.Err())
		return nil
	}
	m := next("this is { not json")
	if e, _ := m["error"].(map[string]any); e == nil || e["code"] != float64(-32700) || m["id"] != nil {
		t.Fatalf("reply to a bad line = %v, want a -32700 error with id null", m)
	}
	if _, has := m["id"]; !has {
		t.Errorf("the parse error has no id member: %v", m)
	}
	m = next(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-stdio","version":"1"}}}`)
	if r, _ := m["result"].(map[string]any); r == nil || r["protocolVersion"] != legacy {
		t.Fatalf("initialize after the bad line = %v", m)
	}
	if _, err := io.WriteString(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	m = next(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_nodes","arguments":{}}}`)
	if r, _ := m["result"].(map[string]any); r == nil || r["isError"] == true {
		t.Fatalf("list_nodes over the bridge = %v", m)
	}
	// gantry dev restarts: its sessions are gone; the bridge starts a new
	// one and the client carries on.
	d.kill9()
	d.start()
	m = next(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_nodes","arguments":{}}}`)
	if r, _ := m["result"].(map[string]any); r == nil || r["isError"] == true || m["id"] != float64(3) {
		t.Fatalf("list_nodes after gantry dev restarted = %v", m)
	}
	_ = in.Close()
}
