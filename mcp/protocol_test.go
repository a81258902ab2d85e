package mcp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// These pin protocol behaviour the official MCP conformance suite checks
// (scripts/conformance.sh), so a regression shows up in go test too.

// rawPost sends one JSON-RPC body with the test token and the given extra
// headers; host, when set, replaces the Host header.
func rawPost(t *testing.T, e *env, host, body string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// jsonRPCResult extracts the result of a JSON or single-event SSE response.
func jsonRPCResult(t *testing.T, body string) map[string]any {
	t.Helper()
	if i := strings.Index(body, "data: "); i >= 0 {
		body = strings.TrimSpace(strings.SplitN(body[i+len("data: "):], "\n", 2)[0])
	}
	var msg struct {
		Result map[string]any `json:"result"`
		Error  any            `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil || msg.Result == nil {
		t.Fatalf("not a JSON-RPC result (%v): %s", err, body)
	}
	return msg.Result
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// DNS rebinding: a page on evil.example whose name now resolves to
// 127.0.0.1 sends Host and Origin both evil.example. Origin equals Host, so
// only the Host check (the SDK's localhost protection on a loopback
// listener) stops it.
func TestRebindingHostIsRefused(t *testing.T) {
	e := newEnv(t)
	body := strings.Replace(initialize, "%q", `"2025-11-25"`, 1)
	for _, c := range []struct {
		host, origin string
		want         int
	}{
		{"evil.example", "http://evil.example", http.StatusForbidden},
		{"evil.example:8080", "", http.StatusForbidden},
		{"localhost", "http://localhost", http.StatusOK},
		{"", "", http.StatusOK}, // 127.0.0.1:port
	} {
		h := map[string]string{}
		if c.origin != "" {
			h["Origin"] = c.origin
		}
		if code, resp := rawPost(t, e, c.host, body, h); code != c.want {
			t.Errorf("Host %q Origin %q: status %d, want %d: %s", c.host, c.origin, code, c.want, resp)
		}
	}
}

// The server speaks the two newest revisions: 2025-11-25 through the
// initialize handshake, and 2026-07-28 (stateless) through server/discover.
func TestNegotiatesBothNewestRevisions(t *testing.T) {
	e := newEnv(t)
	for _, asked := range []string{"2025-11-25", "2025-06-18"} {
		code, resp := rawPost(t, e, "", strings.Replace(initialize, "%q", `"`+asked+`"`, 1), nil)
		if code != http.StatusOK {
			t.Fatalf("initialize %s: status %d: %s", asked, code, resp)
		}
		if got := jsonRPCResult(t, resp)["protocolVersion"]; got != asked {
			t.Errorf("initialize %s: server answered %v, want the version asked for", asked, got)
		}
	}
	// An unknown version gets the server's own choice, not an error.
	code, resp := rawPost(t, e, "", strings.Replace(initialize, "%q", `"2099-01-01"`, 1), nil)
	if code != http.StatusOK {
		t.Fatalf("initialize 2099-01-01: status %d: %s", code, resp)
	}
	if got, _ := jsonRPCResult(t, resp)["protocolVersion"].(string); got != "2025-11-25" && got != "2026-07-28" {
		t.Errorf("initialize with an unknown version: server chose %q, want one of the two newest", got)
	}

	discover := `{"jsonrpc":"2.0","id":2,"method":"server/discover","params":{"_meta":{` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},` +
		`"io.modelcontextprotocol/clientCapabilities":{}}}}`
	code, resp = rawPost(t, e, "", discover, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"})
	if code != http.StatusOK {
		t.Fatalf("server/discover: status %d: %s", code, resp)
	}
	res := jsonRPCResult(t, resp)
	var versions []string
	for _, v := range res["supportedVersions"].([]any) {
		versions = append(versions, v.(string))
	}
	for _, want := range []string{"2026-07-28", "2025-11-25"} {
		if !slices.Contains(versions, want) {
			t.Errorf("server/discover supportedVersions %v lacks %s", versions, want)
		}
	}
	caps, _ := res["capabilities"].(map[string]any)
	if _, ok := caps["tools"]; !ok {
		t.Errorf("server/discover capabilities %v lack tools", caps)
	}
}
