package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

// recorder is an mcp.Auditor that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	recs []mcp.AuditRecord
}

func (r *recorder) Record(_ context.Context, rec mcp.AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recorder) all() []mcp.AuditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mcp.AuditRecord(nil), r.recs...)
}

// Every call is audited, including those the SDK refuses before a handler
// runs (bad arguments, unknown tools); in-process calls are made by the
// trusted in-process principal.
func TestEveryCallIsAudited(t *testing.T) {
	c := mcptest.New()
	rec := &recorder{}
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Token: testToken, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	ct, st := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "audit", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	if res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolListNodes, Arguments: struct{}{}}); err != nil || res.IsError {
		t.Fatalf("in-process list_nodes: %v %+v", err, res)
	}
	if res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolScaleService, Arguments: map[string]any{"name": 5}}); err == nil && !res.IsError {
		t.Fatal("scale_service with a numeric name succeeded")
	}
	_, _ = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "no_such_tool\x1b[2J", Arguments: map[string]any{"password": "pw-value"}})

	recs := rec.all()
	if len(recs) != 3 {
		t.Fatalf("recorded %d calls, want 3: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Principal != "in-process" || !r.Allowed || r.Time.IsZero() || r.Latency <= 0 {
			t.Errorf("record = %+v", r)
		}
	}
	if recs[0].Tool != api.ToolListNodes || recs[0].Result != "ok" {
		t.Errorf("list_nodes record = %+v", recs[0])
	}
	if recs[1].Tool != api.ToolScaleService || recs[1].Result != "invalid argument" {
		t.Errorf("bad arguments record = %+v", recs[1])
	}
	if strings.ContainsRune(recs[2].Tool, 0x1b) || !strings.Contains(recs[2].Tool, "no_such_tool") || recs[2].Result == "ok" {
		t.Errorf("unknown tool record = %+v", recs[2])
	}
	var args map[string]any
	if err := json.Unmarshal(recs[2].Arguments, &args); err != nil || args["password"] != "[redacted]" {
		t.Errorf("unknown tool arguments = %s", recs[2].Arguments)
	}
}
