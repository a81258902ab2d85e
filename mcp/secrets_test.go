package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

// memSecrets is an mcp.SecretStore in memory.
type memSecrets struct {
	mu     sync.Mutex
	values map[string]string
	users  map[string][]string
}

func (m *memSecrets) SetSecret(_ context.Context, name string, value []byte, dryRun bool) (*api.SetSecretResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	action := api.SecretCreate
	if _, ok := m.values[name]; ok {
		action = api.SecretReplace
	}
	if !dryRun {
		m.values[name] = string(value)
	}
	return &api.SetSecretResult{Name: name, Action: action, Version: 1, DryRun: dryRun, Message: "secret " + name + ": " + action}, nil
}

func (m *memSecrets) ListSecrets(context.Context) (*api.SecretList, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &api.SecretList{}
	for name := range m.values {
		out.Secrets = append(out.Secrets, api.SecretInfo{Name: name, Version: 1, UsedBy: m.users[name]})
	}
	return out, nil
}

func (m *memSecrets) DeleteSecret(_ context.Context, name string, dryRun bool) (*api.DeleteSecretResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.values[name]; !ok {
		return nil, fmt.Errorf("secret %q: %w", name, errdefs.ErrNotFound)
	}
	if u := m.users[name]; len(u) > 0 {
		return nil, errdefs.WithHint(fmt.Errorf("secret %q is used by service(s) %v: %w", name, u, errdefs.ErrConflict), "remove it from their specs")
	}
	if !dryRun {
		delete(m.values, name)
	}
	return &api.DeleteSecretResult{Name: name, Deleted: !dryRun, DryRun: dryRun, Message: "deleted"}, nil
}

// The value goes in through set_secret and never comes back out: not in a
// result, not in the audit record; bad names and values are refused at the
// edge; a referenced secret cannot be deleted.
func TestSecretTools(t *testing.T) {
	const value = "pa55-w0rd-never-seen"
	c := mcptest.New()
	rec := &recorder{}
	store := &memSecrets{values: map[string]string{}, users: map[string][]string{"used": {"web"}}}
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Token: testToken, Audit: rec, Secrets: store})
	if err != nil {
		t.Fatal(err)
	}
	ct, st := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "secrets", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	callRaw := func(tool string, args map[string]any) *sdk.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		return res
	}
	seen := func(res *sdk.CallToolResult) string {
		b, _ := json.Marshal(res)
		return string(b)
	}

	res := callRaw(api.ToolSetSecret, map[string]any{"name": "db-password", "value": value, "dry_run": true})
	if res.IsError || !strings.Contains(seen(res), `"action":"create"`) || store.values["db-password"] != "" {
		t.Fatalf("dry run: %s", seen(res))
	}
	res = callRaw(api.ToolSetSecret, map[string]any{"name": "db-password", "value": value})
	if res.IsError || store.values["db-password"] != value {
		t.Fatalf("set: %s", seen(res))
	}
	res = callRaw(api.ToolSetSecret, map[string]any{"name": "db-password", "value": value, "dry_run": true})
	if !strings.Contains(seen(res), `"action":"replace"`) {
		t.Errorf("dry run of a replace: %s", seen(res))
	}
	for _, bad := range []map[string]any{
		{"name": "../etc", "value": "x"},
		{"name": "--all", "value": "x"},
		{"name": "Db", "value": "x"},
		{"name": "db", "value": ""},
		{"name": "db", "value": "abc"}, // too short to keep out of output
		{"name": "db", "value": "a\x00b"},
		{"name": "db", "value": strings.Repeat("v", 64<<10+1)},
	} {
		if res := callRaw(api.ToolSetSecret, bad); !res.IsError {
			t.Errorf("set_secret %v was accepted", bad["name"])
		}
	}
	store.values["used"] = "another-value"
	res = callRaw(api.ToolListSecrets, map[string]any{})
	if res.IsError || !strings.Contains(seen(res), "db-password") || !strings.Contains(seen(res), `"used_by":["web"]`) {
		t.Errorf("list: %s", seen(res))
	}
	res = callRaw(api.ToolDeleteSecret, map[string]any{"name": "used"})
	if !res.IsError || !strings.Contains(seen(res), "web") {
		t.Errorf("delete of a referenced secret: %s", seen(res))
	}
	res = callRaw(api.ToolDeleteSecret, map[string]any{"name": "db-password", "dry_run": true})
	if res.IsError || store.values["db-password"] == "" {
		t.Errorf("delete dry run: %s", seen(res))
	}
	res = callRaw(api.ToolDeleteSecret, map[string]any{"name": "db-password"})
	if res.IsError || store.values["db-password"] != "" {
		t.Errorf("delete: %s", seen(res))
	}

	recs := rec.all()
	if len(recs) < 10 {
		t.Fatalf("%d audit records", len(recs))
	}
	for _, r := range recs {
		if strings.Contains(string(r.Arguments), value) {
			t.Errorf("audit record of %s holds the value: %s", r.Tool, r.Arguments)
		}
		if r.Tool == api.ToolSetSecret && !strings.Contains(string(r.Arguments), `"value":"[redacted]"`) && strings.Contains(string(r.Arguments), `"value"`) {
			t.Errorf("set_secret record: %s", r.Arguments)
		}
	}

	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		switch tool.Name {
		case api.ToolListSecrets:
			if !tool.Annotations.ReadOnlyHint {
				t.Error("list_secrets is not read-only")
			}
		case api.ToolSetSecret, api.ToolDeleteSecret:
			if tool.Annotations.ReadOnlyHint || tool.Annotations.DestructiveHint == nil || !*tool.Annotations.DestructiveHint {
				t.Errorf("%s annotations = %+v", tool.Name, tool.Annotations)
			}
		}
	}
}
