package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
	"github.com/gantry-dev/gantry/state"
)

const bootstrapToken = "bootstrap-admin-token-0123456789abcdef0123456789"

// authEnv is the real MCP server over HTTP with real token and audit
// storage (a state store on disk); the service tools talk to the mcptest
// double, since these tests are about who may call them.
type authEnv struct {
	dir   string
	store *state.Store
	url   string
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: dir, NodeID: "auth-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	aw := NewAuditWriter(st, log, 0)
	t.Cleanup(startAuditWriter(context.Background(), aw))
	au := NewAuth(st, bootstrapToken, aw)
	c := mcptest.New()
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Auth: au, Audit: aw, Access: au, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &authEnv{dir: dir, store: st, url: ts.URL}
}

type bearerRT struct {
	token string
	base  http.RoundTripper
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func (e *authEnv) connect(t *testing.T, token string) (*sdk.ClientSession, error) {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	cl := sdk.NewClient(&sdk.Implementation{Name: "auth-test", Version: "1"}, nil)
	cs, err := cl.Connect(context.Background(), &sdk.StreamableClientTransport{
		Endpoint: e.url, HTTPClient: &http.Client{Transport: bearerRT{token, base}}}, nil)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

func (e *authEnv) mustConnect(t *testing.T, token string) *sdk.ClientSession {
	t.Helper()
	cs, err := e.connect(t, token)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return cs
}

func callTool(t *testing.T, cs *sdk.ClientSession, tool string, args any) *sdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", tool, err)
	}
	return res
}

func resultText(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func decodeResult[T any](t *testing.T, res *sdk.CallToolResult) T {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %s", resultText(res))
	}
	var out T
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantRefused(t *testing.T, res *sdk.CallToolResult, subs ...string) {
	t.Helper()
	if !res.IsError {
		t.Fatalf("call succeeded, want it refused: %s", resultText(res))
	}
	for _, s := range subs {
		if !strings.Contains(resultText(res), s) {
			t.Errorf("refusal %q does not say %q", resultText(res), s)
		}
	}
}

const specYAML = `name: web
image: 127.0.0.1:5000/demo/web:1
replicas: 1
env:
  DB_PASSWORD: hunter2-yaml
`

func TestScopes(t *testing.T) {
	e := newAuthEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	mk := func(name, scope string) api.CreatedToken {
		tok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: name, Scope: scope}))
		if !strings.HasPrefix(tok.Token, "gty_"+tok.ID+"_") || tok.Scope != scope {
			t.Fatalf("created token = %+v", tok)
		}
		return tok
	}
	readTok, opTok := mk("reader", "read"), mk("ci", "operate")

	reader := e.mustConnect(t, readTok.Token)
	if res := callTool(t, reader, api.ToolListServices, struct{}{}); res.IsError {
		t.Errorf("read token cannot list services: %s", resultText(res))
	}
	wantRefused(t, callTool(t, reader, api.ToolDeploy, api.DeployInput{SpecYAML: specYAML}),
		"deploy needs the operate scope", "reader/"+readTok.ID, "gantry token create")
	wantRefused(t, callTool(t, reader, api.ToolScaleService, api.ScaleInput{Name: "web", Replicas: 2}), "operate scope")
	wantRefused(t, callTool(t, reader, api.ToolListTokens, struct{}{}), "admin scope")

	op := e.mustConnect(t, opTok.Token)
	if res := callTool(t, op, api.ToolDeploy, api.DeployInput{SpecYAML: specYAML}); res.IsError {
		t.Errorf("operate token cannot deploy: %s", resultText(res))
	}
	if res := callTool(t, op, api.ToolGetService, api.NameInput{Name: "web"}); res.IsError {
		t.Errorf("operate token cannot read: %s", resultText(res))
	}
	wantRefused(t, callTool(t, op, api.ToolCreateToken, api.CreateTokenInput{Name: "x", Scope: "admin"}),
		"create_token needs the admin scope", "has only operate")
	wantRefused(t, callTool(t, op, api.ToolAuditLog, api.AuditLogInput{}), "admin scope")

	// Bad input to the admin tools says how to fix it.
	wantRefused(t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "x", Scope: "root"}), "use read, operate or admin")
	wantRefused(t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "--help", Scope: "read"}), "invalid token name")
	wantRefused(t, callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: "../etc"}), "invalid token ID")
	wantRefused(t, callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: "0123456789ab"}), "not found", "list_tokens")

	// Listing never shows secrets or hashes.
	list := callTool(t, admin, api.ToolListTokens, struct{}{})
	raw, _ := json.Marshal(list)
	for _, tok := range []api.CreatedToken{readTok, opTok} {
		_, secret, _ := strings.Cut(strings.TrimPrefix(tok.Token, "gty_"), "_")
		stored, err := e.store.Token(tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(stored.Hash)) {
			t.Errorf("list_tokens shows the secret or hash of %s: %s", tok.ID, raw)
		}
	}
	if toks := decodeResult[api.TokenList](t, list); len(toks.Tokens) != 2 || toks.Tokens[0].CreatedBy != "admin" {
		t.Errorf("tokens = %+v", toks)
	}

	// Revoked: refused at the door with 401 and a message saying so.
	rv := decodeResult[api.RevokeTokenResult](t, callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: readTok.ID}))
	if rv.AlreadyRevoked || rv.Name != "reader" {
		t.Errorf("revoke = %+v", rv)
	}
	if rv := decodeResult[api.RevokeTokenResult](t, callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: readTok.ID})); !rv.AlreadyRevoked {
		t.Errorf("second revoke = %+v", rv)
	}
	if res, err := reader.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolListServices, Arguments: struct{}{}}); err == nil && !res.IsError {
		t.Error("a revoked token can still call tools")
	}
	status, body := postInit(t, e.url, readTok.Token)
	if status != http.StatusUnauthorized || !strings.Contains(body, "revoked") || strings.Contains(body, readTok.Token) {
		t.Errorf("revoked token: %d %s", status, body)
	}
	// A token with a valid ID but the wrong secret, and a malformed one.
	for _, bad := range []string{"gty_" + opTok.ID + "_" + strings.Repeat("0", 64), "gty_", "gty_x", opTok.Token + "x"} {
		if status, _ := postInit(t, e.url, bad); status != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", bad, status)
		}
	}

	// The raft log holds hashes only.
	data, err := os.ReadFile(filepath.Join(e.dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []api.CreatedToken{readTok, opTok} {
		_, secret, _ := strings.Cut(strings.TrimPrefix(tok.Token, "gty_"), "_")
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("raft.db contains the secret of token %s", tok.ID)
		}
	}
}

func postInit(t *testing.T, url, token string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuditRecordsEveryCallRedacted(t *testing.T) {
	e := newAuthEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	tok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "bot", Scope: "read"}))
	bot := e.mustConnect(t, tok.Token)
	callTool(t, bot, api.ToolListServices, struct{}{})
	callTool(t, bot, api.ToolDeploy, api.DeployInput{SpecYAML: specYAML}) // refused
	callTool(t, admin, api.ToolDeploy, api.DeployInput{Spec: map[string]any{
		"name": "api", "image": "127.0.0.1:5000/demo/web:1", "replicas": 1,
		"env": map[string]any{"API_TOKEN": "hunter2-json", "MODE": "plain-value-hidden-too"},
	}})
	callTool(t, admin, api.ToolGetService, api.NameInput{Name: "nope"}) // fails: not found

	log := decodeResult[api.AuditLog](t, callTool(t, admin, api.ToolAuditLog, api.AuditLogInput{Limit: 10}))
	if len(log.Entries) != 5 {
		t.Fatalf("audit has %d entries, want 5 (create_token, list, refused deploy, deploy, get): %+v", len(log.Entries), log.Entries)
	}
	raw, _ := json.Marshal(log)
	for _, secret := range []string{"hunter2", "plain-value-hidden-too", tok.Token} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("audit log contains %q: %s", secret, raw)
		}
	}
	want := []struct{ tool, principal, decision, result string }{
		{api.ToolCreateToken, "admin", "allowed", "ok"},
		{api.ToolListServices, "bot/" + tok.ID, "allowed", "ok"},
		{api.ToolDeploy, "bot/" + tok.ID, "denied", "permission denied"},
		{api.ToolDeploy, "admin", "allowed", "ok"},
		{api.ToolGetService, "admin", "allowed", "not found"},
	}
	for i, w := range want {
		got := log.Entries[i]
		if got.Tool != w.tool || got.Principal != w.principal || got.Decision != w.decision || got.Result != w.result || got.Hash == "" {
			t.Errorf("entry %d = %+v, want %+v", i, got, w)
		}
	}
	if r := log.Entries[2].Reason; !strings.Contains(r, "needs scope operate") {
		t.Errorf("denied reason = %q", r)
	}
	// The env names stay, their values do not; the YAML spec was parsed to redact it.
	yamlSpec, _ := log.Entries[2].Arguments["spec_yaml"].(map[string]any)
	if env, _ := yamlSpec["env"].(map[string]any); env["DB_PASSWORD"] != "[redacted]" || yamlSpec["name"] != "web" {
		t.Errorf("redacted YAML spec = %#v", log.Entries[2].Arguments)
	}
	jsonSpec, _ := log.Entries[3].Arguments["spec"].(map[string]any)
	if env, _ := jsonSpec["env"].(map[string]any); env["MODE"] != "[redacted]" || jsonSpec["image"] != "127.0.0.1:5000/demo/web:1" {
		t.Errorf("redacted JSON spec = %#v", log.Entries[3].Arguments)
	}
	if f := decodeResult[api.AuditLog](t, callTool(t, admin, api.ToolAuditLog, api.AuditLogInput{Principal: "bot"})); len(f.Entries) != 2 {
		t.Errorf("principal filter: %d entries, want 2", len(f.Entries))
	}
	if f := decodeResult[api.AuditLog](t, callTool(t, admin, api.ToolAuditLog, api.AuditLogInput{Tool: api.ToolDeploy, Limit: 1})); len(f.Entries) != 1 || f.Entries[0].Principal != "admin" {
		t.Errorf("tool filter with limit 1: %+v", f.Entries)
	}
	wantRefused(t, callTool(t, admin, api.ToolAuditLog, api.AuditLogInput{Limit: 5000}), "between 1 and 1000")

	v := decodeResult[api.AuditVerification](t, callTool(t, admin, api.ToolVerifyAudit, struct{}{}))
	if !v.OK || v.Checked < 8 || v.FirstSeq != 1 {
		t.Errorf("verify = %+v", v)
	}
}

// syncAuditor writes each record through Raft before the call returns: the
// design AuditWriter avoids, kept here to measure what it saves.
type syncAuditor struct{ st *state.Store }

func (a syncAuditor) Record(ctx context.Context, r mcp.AuditRecord) {
	_, _ = a.st.Apply(ctx, state.AppendAudit{Entries: []state.AuditEntry{{Time: r.Time, Principal: r.Principal, Tool: r.Tool,
		Arguments: r.Arguments, Decision: state.AuditAllowed, Result: r.Result, LatencyUS: r.Latency.Microseconds()}}})
}

// BenchmarkReadToolAudit measures a read tool's latency over HTTP without
// audit, with the batching AuditWriter, and with a synchronous write per
// call (go test -run XXX -bench ReadToolAudit ./cluster/).
func BenchmarkReadToolAudit(b *testing.B) {
	for _, mode := range []string{"unaudited", "audited", "audited-sync"} {
		audited := mode != "unaudited"
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			st, err := state.Open(context.Background(), state.Config{DataDir: dir, NodeID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cfg := mcp.Config{Token: bootstrapToken}
			c := mcptest.New()
			cfg.Services, cfg.Images = c, c
			if audited {
				aw := NewAuditWriter(st, nil, 0)
				defer startAuditWriter(context.Background(), aw)()
				au := NewAuth(st, bootstrapToken, aw)
				cfg.Auth, cfg.Audit, cfg.Access = au, aw, au
				if mode == "audited-sync" {
					cfg.Audit = syncAuditor{st}
				}
			}
			srv, err := mcp.NewServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			cl := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := cl.Connect(context.Background(), &sdk.StreamableClientTransport{
				Endpoint: ts.URL, HTTPClient: &http.Client{Transport: bearerRT{bootstrapToken, http.DefaultTransport}}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			b.ResetTimer()
			for b.Loop() {
				res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolListServices, Arguments: struct{}{}})
				if err != nil || res.IsError {
					b.Fatal(err)
				}
			}
		})
	}
}

// Every tool needs the scope the issue assigns it: a read token is refused
// exactly the operate and admin tools, an operate token exactly the admin
// ones; the admin tools say so in their _meta.
func TestEveryToolNeedsItsScope(t *testing.T) {
	e := newAuthEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	want := map[string]string{
		api.ToolListServices: "read", api.ToolGetService: "read", api.ToolServiceLogs: "read", api.ToolListNodes: "read", api.ToolListImages: "read",
		api.ToolDeploy: "operate", api.ToolScaleService: "operate", api.ToolRemoveService: "operate", api.ToolPullImage: "operate", api.ToolImportImage: "operate",
		api.ToolCreateToken: "admin", api.ToolListTokens: "admin", api.ToolRevokeToken: "admin", api.ToolAuditLog: "admin", api.ToolVerifyAudit: "admin",
	}
	tools, err := admin.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if want[tool.Name] == "admin" && tool.Meta["gantry.dev/scope"] != "admin" {
			t.Errorf("%s does not declare scope admin in _meta: %v", tool.Name, tool.Meta)
		}
	}
	for _, scope := range []string{"read", "operate"} {
		tok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: scope + "-all", Scope: scope}))
		cs := e.mustConnect(t, tok.Token)
		for _, tool := range tools.Tools {
			need, ok := want[tool.Name]
			if !ok {
				continue // another area's tool
			}
			res := callTool(t, cs, tool.Name, map[string]any{})
			refused := res.IsError && strings.Contains(resultText(res), "needs the "+need+" scope")
			mayCall := need == "read" || (need == "operate" && scope == "operate")
			if refused == mayCall {
				t.Errorf("%s token calling %s (needs %s): refused=%v: %s", scope, tool.Name, need, refused, resultText(res))
			}
		}
	}
	for name := range want {
		if !slices.ContainsFunc(tools.Tools, func(tl *sdk.Tool) bool { return tl.Name == name }) {
			t.Errorf("tool %s is not served", name)
		}
	}
}

// Concurrent calls share Raft entries, and the chain stays whole.
func TestAuditUnderConcurrentCalls(t *testing.T) {
	e := newAuthEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	const workers, calls = 8, 25
	errc := make(chan error, workers)
	for range workers {
		go func() {
			for range calls {
				res, err := admin.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolListNodes, Arguments: struct{}{}})
				if err == nil && res.IsError {
					err = errors.New(resultText(res))
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	before := e.store.Index()
	v := decodeResult[api.AuditVerification](t, callTool(t, admin, api.ToolVerifyAudit, struct{}{}))
	if !v.OK || v.Checked != workers*calls {
		t.Errorf("verify = %+v, want %d entries intact", v, workers*calls)
	}
	t.Logf("%d calls audited in %d raft entries", workers*calls, before-1)
}
