package cluster

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/policy"
	"github.com/gantry-dev/gantry/state"
)

const testPolicy = `
principals:
  - name: intern
    deny: [remove_service]
rules:
  - name: huge-scale
    when: tool == "scale_service" && args.replicas > 10
    effect: deny
    message: more than 10 replicas needs the platform team
  - name: prod-approval
    when: labels.tier == "prod" && !read_only && principal != "admin"
    effect: needs-approval
`

// policyEnv is the real MCP server over HTTP on the real cluster.Backend
// and state store (no worker: these tests are about what may change).
type policyEnv struct {
	authEnv
	be    *Backend
	audit *AuditWriter
	log   *slog.Logger
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: dir, NodeID: "policy-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	aw := NewAuditWriter(st, log, 0)
	t.Cleanup(startAuditWriter(context.Background(), aw))
	e := &policyEnv{authEnv: authEnv{dir: dir, store: st}, be: &Backend{Store: st}, audit: aw, log: log}
	e.url = e.serve(t, testPolicy, "", time.Hour)
	return e
}

// serve starts another server on the same state with its own policy.
func (e *policyEnv) serve(t *testing.T, file string, mode policy.Mode, ttl time.Duration) string {
	t.Helper()
	pol, err := policy.Load([]byte(file), mode, "test-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	au := NewAuth(e.store, bootstrapToken, e.audit)
	srv, err := mcp.NewServer(mcp.Config{Services: e.be, Images: e.be, Plans: e.be, Auth: au, Audit: e.audit, Access: au,
		Logger: e.log, Policy: pol, Oversight: e.be, ApprovalTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func (e *policyEnv) deploy(t *testing.T, cs *sdk.ClientSession, name, tier string) {
	t.Helper()
	y := "name: " + name + "\nimage: 127.0.0.1:5000/demo/web:1\nreplicas: 1\n"
	if tier != "" {
		y += "labels: {tier: " + tier + "}\n"
	}
	decodeResult[api.DeployResult](t, callTool(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: y}))
}

func (e *policyEnv) replicas(t *testing.T, name string) int {
	t.Helper()
	svc, err := e.store.Service(name)
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.Replicas
}

func TestPolicyApprovalFlow(t *testing.T) {
	e := newPolicyEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	e.deploy(t, admin, "shop", "prod")
	e.deploy(t, admin, "web", "")
	token := func(name, scope string) *sdk.ClientSession {
		tok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: name, Scope: scope}))
		return e.mustConnect(t, tok.Token)
	}
	ops, boss, intern := token("ops", "operate"), token("boss", "admin"), token("intern", "operate")

	// Denials name the rule and who can change it.
	wantRefused(t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "web", "replicas": 11}),
		"huge-scale", "platform team", "gantry dev --policy")
	wantRefused(t, callTool(t, intern, api.ToolRemoveService, map[string]any{"name": "web"}), "principal/intern/deny")
	if n := e.replicas(t, "web"); n != 1 {
		t.Fatalf("web has %d replicas after refused calls", n)
	}
	decodeResult[api.ScaleResult](t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "web", "replicas": 2}))
	// Go decodes JSON keys case-insensitively: a differently spelled key
	// must not carry a value past a rule that reads the lower-case one.
	bypass := callTool(t, ops, api.ToolScaleService, map[string]any{"name": "web", "replicas": 2, "Replicas": 50})
	if n := e.replicas(t, "web"); n != 2 || !bypass.IsError {
		t.Fatalf("Replicas=50 alongside replicas=2: %d replicas, %s", n, resultText(bypass))
	}

	// A change to a prod service is held.
	call := map[string]any{"name": "shop", "replicas": 3}
	res := callTool(t, ops, api.ToolScaleService, call)
	if !res.IsError {
		t.Fatalf("held call reported success: %s", resultText(res))
	}
	pend := decodeStructured[api.PendingApproval](t, res)
	if pend.Status != "pending_approval" || !strings.HasPrefix(pend.ApprovalID, "apr-") || pend.Rule != "prod-approval" ||
		!strings.Contains(pend.HowTo, "gantry approve "+pend.ApprovalID) {
		t.Fatalf("pending = %+v", pend)
	}
	if text := resultText(res); strings.Count(text, "prod-approval") != 1 || !strings.Contains(text, "gantry token create --scope admin") {
		t.Errorf("held call's text names the rule more than once or not how to get a second admin token: %s", text)
	}
	if n := e.replicas(t, "shop"); n != 1 {
		t.Fatalf("held call ran: %d replicas", n)
	}
	list := decodeResult[api.ApprovalList](t, callTool(t, ops, api.ToolListApprovals, map[string]any{}))
	if len(list.Approvals) != 1 || list.Approvals[0].ID != pend.ApprovalID || list.Approvals[0].Principal == "" || list.Approvals[0].Arguments["replicas"] != 3.0 {
		t.Fatalf("list = %+v", list)
	}
	retry := map[string]any{"name": "shop", "replicas": 3, "approval_id": pend.ApprovalID}
	wantRefused(t, callTool(t, ops, api.ToolScaleService, retry), "still pending")
	// ops may not decide at all (scope), boss may not decide its own call.
	wantRefused(t, callTool(t, ops, api.ToolApprove, api.DecideApprovalInput{ID: pend.ApprovalID}), "admin scope")
	own := decodeStructured[api.PendingApproval](t, callTool(t, boss, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 5}))
	wantRefused(t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: own.ApprovalID}), "cannot decide")
	ap := decodeResult[api.Approval](t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: pend.ApprovalID, Reason: "sale day"}))
	if ap.State != api.ApprovalApproved || !strings.HasPrefix(ap.DecidedBy, "boss/") {
		t.Fatalf("approved = %+v", ap)
	}
	// Only the exact call may use it: not other arguments, not another principal.
	wantRefused(t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 4, "approval_id": pend.ApprovalID}), "different call")
	wantRefused(t, callTool(t, intern, api.ToolScaleService, retry), "different call")
	decodeResult[api.ScaleResult](t, callTool(t, ops, api.ToolScaleService, retry))
	if n := e.replicas(t, "shop"); n != 3 {
		t.Fatalf("approved call: %d replicas, want 3", n)
	}
	wantRefused(t, callTool(t, ops, api.ToolScaleService, retry), "is used")

	// Rejected approvals cannot be used.
	decodeResult[api.Approval](t, callTool(t, ops, api.ToolListApprovals, map[string]any{"state": "all"}))
	rej := decodeResult[api.Approval](t, callTool(t, admin, api.ToolReject, api.DecideApprovalInput{ID: own.ApprovalID}))
	if rej.State != api.ApprovalRejected {
		t.Fatalf("rejected = %+v", rej)
	}

	// Plans cannot go around the rules.
	wantRefused(t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "web", "replicas": 12, "dry_run": true}), "huge-scale")
	plan := decodeResult[api.ScaleResult](t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 4, "dry_run": true})).Plan
	if plan == nil || e.replicas(t, "shop") != 3 {
		t.Fatalf("dry run: plan %+v", plan)
	}
	held := decodeStructured[api.PendingApproval](t, callTool(t, ops, api.ToolApplyPlan, map[string]any{"plan_id": plan.ID}))
	if held.Rule != "prod-approval" || held.Tool != api.ToolApplyPlan {
		t.Fatalf("apply_plan of a prod change: %+v", held)
	}

	// Expired approvals are refused.
	short := e.serve(t, testPolicy, "", 200*time.Millisecond)
	opsTok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "late", Scope: "operate"}))
	late := (&authEnv{url: short}).mustConnect(t, opsTok.Token)
	exp := decodeStructured[api.PendingApproval](t, callTool(t, late, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 2}))
	time.Sleep(300 * time.Millisecond)
	wantRefused(t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: exp.ApprovalID}), "expired")

	// The audit log carries decisions and rules.
	if err := e.audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, en := range e.store.Audit(state.AuditFilter{}) {
		switch {
		case en.Rule == "huge-scale" && en.Decision == state.AuditDenied && en.Tool == api.ToolScaleService:
			found["deny"] = true
		case en.Rule == "principal/intern/deny" && en.Decision == state.AuditDenied:
			found["denylist"] = true
		case en.Rule == "prod-approval" && en.Decision == state.AuditPending && en.Result == "queued":
			found["pending"] = true
		case en.Rule == "prod-approval" && en.Decision == state.AuditAllowed && en.Result == "ok" && en.Reason == "approved: "+pend.ApprovalID:
			found["approved"] = true
		}
	}
	for _, k := range []string{"deny", "denylist", "pending", "approved"} {
		if !found[k] {
			t.Errorf("no audit entry for %s; have %d entries", k, len(e.store.Audit(state.AuditFilter{})))
		}
	}
	if v := e.store.VerifyAudit(); !v.OK {
		t.Errorf("audit chain: %+v", v)
	}
}

func decodeStructured[T any](t *testing.T, res *sdk.CallToolResult) T {
	t.Helper()
	res.IsError = false
	return decodeResult[T](t, res)
}

func TestPolicyModes(t *testing.T) {
	e := newPolicyEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	e.deploy(t, admin, "web", "")
	ro := (&authEnv{url: e.serve(t, "", policy.ModeReadOnly, time.Hour)}).mustConnect(t, bootstrapToken)
	wantRefused(t, callTool(t, ro, api.ToolDeploy, api.DeployInput{SpecYAML: "name: web2\nimage: x:1\n"}), "mode/read-only", "--mode")
	decodeResult[api.ServiceList](t, callTool(t, ro, api.ToolListServices, map[string]any{}))
	nd := (&authEnv{url: e.serve(t, "", policy.ModeNoDestructive, time.Hour)}).mustConnect(t, bootstrapToken)
	wantRefused(t, callTool(t, nd, api.ToolRemoveService, map[string]any{"name": "web"}), "mode/no-destructive")
	if _, err := e.store.Service("web"); err != nil {
		t.Fatalf("web removed in no-destructive mode: %v", err)
	}
	decodeResult[api.ServiceList](t, callTool(t, nd, api.ToolListServices, map[string]any{}))
	decodeResult[api.CreatedToken](t, callTool(t, nd, api.ToolCreateToken, api.CreateTokenInput{Name: "nd", Scope: "read"}))
}

// A client that supports elicitation is asked before a destructive call;
// declining stops it.
func TestConfirmDestructiveByElicitation(t *testing.T) {
	e := newPolicyEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	e.deploy(t, admin, "web", "")
	e.deploy(t, admin, "api", "")
	pol, err := policy.Load([]byte("rules:\n  - {name: db-approval, when: 'service == \"db\"', effect: needs-approval}\n"), "", "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.deploy(t, admin, "db", "")
	srv, err := mcp.NewServer(mcp.Config{Services: e.be, Images: e.be, Token: bootstrapToken, Logger: e.log,
		Policy: pol, Oversight: e.be, ConfirmDestructive: true})
	if err != nil {
		t.Fatal(err)
	}
	answer := "decline"
	var asked []string
	// 2025-11-25: from 2026-07-28 on, a server cannot send requests while
	// serving one.
	cl := sdk.NewClient(&sdk.Implementation{Name: "elicit-test", Version: "1"}, &sdk.ClientOptions{
		ElicitationHandler: func(_ context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			asked = append(asked, req.Params.Message)
			return &sdk.ElicitResult{Action: answer}, nil
		}})
	ct, st := sdk.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := srv.MCPServer().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := cl.Connect(ctx, ct, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	wantRefused(t, callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "web"}), "declined by the user")
	wantRefused(t, callTool(t, cs, api.ToolScaleService, map[string]any{"name": "api", "replicas": 0}), "declined by the user")
	if _, err := e.store.Service("web"); err != nil || e.replicas(t, "api") != 1 {
		t.Fatalf("declined calls ran: %v", err)
	}
	// Scaling up and dry runs are not asked about.
	decodeResult[api.ScaleResult](t, callTool(t, cs, api.ToolScaleService, map[string]any{"name": "api", "replicas": 2}))
	if len(asked) != 2 || !strings.Contains(asked[0], `remove service "web"`) {
		t.Fatalf("asked %q", asked)
	}
	answer = "accept"
	decodeResult[api.RemoveResult](t, callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "web"}))
	// Clients without elicitation (here: HTTP) are not asked.
	decodeResult[api.ScaleResult](t, callTool(t, admin, api.ToolScaleService, map[string]any{"name": "api", "replicas": 1}))
	if len(asked) != 3 {
		t.Fatalf("asked %d times, want 3", len(asked))
	}
	// A call a human approved through policy is not asked about again.
	answer = "decline"
	pend := decodeStructured[api.PendingApproval](t, callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "db"}))
	decodeResult[api.Approval](t, callTool(t, admin, api.ToolApprove, api.DecideApprovalInput{ID: pend.ApprovalID}))
	decodeResult[api.RemoveResult](t, callTool(t, cs, api.ToolRemoveService, map[string]any{"name": "db", "approval_id": pend.ApprovalID}))
	if len(asked) != 3 {
		t.Fatalf("approved call was asked about: %q", asked)
	}
}
