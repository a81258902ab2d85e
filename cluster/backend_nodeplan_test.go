package cluster

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/policy"
	"github.com/gantry-dev/gantry/state"
)

func TestDrainDryRunThenApply(t *testing.T) {
	e := newPlanEnv(t)
	if _, err := e.store.Apply(context.Background(), state.PutNode{Node: state.Node{ID: "n2", Name: "n2", CPU: 4000, Memory: 8 << 30}}); err != nil {
		t.Fatal(err)
	}
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)
	onN1 := map[string]bool{}
	insts, _ := e.store.Instances(state.InstanceFilter{Node: "n1"})
	for _, in := range insts {
		onN1[in.ID] = true
	}
	if len(onN1) == 0 {
		t.Fatal("nothing placed on n1 to drain")
	}

	var nr api.NodeSchedulingResult
	text := e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "n1", DryRun: true}, &nr, false)
	p := nr.Plan
	if p == nil || p.Action != api.ActionDrain || p.Node != "n1" || p.ID == "" || len(p.Stop) != len(onN1) || len(p.Create) != len(onN1) {
		t.Fatalf("drain plan = %+v, want %d stops and as many creates", p, len(onN1))
	}
	for _, s := range p.Stop {
		if !onN1[s.ID] {
			t.Errorf("plan stops %s, which is not on n1", s.ID)
		}
	}
	for _, c := range p.Create {
		if c.Node != "n2" {
			t.Errorf("replacement placed on %q, want n2", c.Node)
		}
	}
	if !strings.Contains(text, "nothing changed") || !strings.Contains(text, p.ID) {
		t.Errorf("dry-run text %q", text)
	}
	if n, _ := e.store.Node("n1"); !state.Schedulable(n) {
		t.Fatal("a dry run marked the node")
	}
	insts, _ = e.store.Instances(state.InstanceFilter{Node: "n1"})
	for _, in := range insts {
		if in.Desired != state.DesiredRun {
			t.Fatalf("a dry run stopped %s", in.ID)
		}
	}

	var ar api.ApplyPlanResult
	e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: p.ID}, &ar, false)
	if ar.Action != api.ActionDrain || ar.Index == 0 {
		t.Fatalf("apply = %+v", ar)
	}
	if n, _ := e.store.Node("n1"); !state.Draining(n) {
		t.Fatal("apply_plan did not drain n1")
	}
	e.settle(t)
	insts, _ = e.store.Instances(state.InstanceFilter{Service: "web"})
	for _, in := range insts {
		if in.Desired == state.DesiredRun && in.Node != "n2" {
			t.Errorf("%s still runs on %s", in.ID, in.Node)
		}
	}
}

func TestNodePlanStaleAndPending(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)

	// One node: a drain leaves the replacements pending.
	var nr api.NodeSchedulingResult
	e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "n1", DryRun: true}, &nr, false)
	if nr.Plan == nil || len(nr.Plan.Stop) != 3 || len(nr.Plan.Create) != 0 || !strings.Contains(nr.Plan.Pending, "n1: draining, takes no new instances") {
		t.Fatalf("single-node drain plan = %+v, want 3 stops and pending", nr.Plan)
	}
	if !strings.Contains(nr.Plan.Summary, "would stay pending") {
		t.Errorf("summary %q does not say they would stay pending", nr.Plan.Summary)
	}
	// The node changes after the plan: apply_plan refuses it.
	e.call(t, api.ToolSetNodeEligibility, api.NodeEligibilityInput{Node: "n1", Eligible: false}, nil, false)
	msg := e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: nr.Plan.ID}, nil, true)
	if !strings.Contains(msg, "stale") || !strings.Contains(msg, "node n1 changed") {
		t.Fatalf("stale plan error = %q", msg)
	}
	if n, _ := e.store.Node("n1"); state.Draining(n) {
		t.Fatal("a stale plan was applied")
	}

	// Ineligible now: scale up leaves a replica pending; the eligibility
	// dry run says where it would go once the node is eligible again.
	e.call(t, api.ToolScaleService, api.ScaleInput{Name: "web", Replicas: 4}, nil, false)
	e.settle(t)
	e.call(t, api.ToolSetNodeEligibility, api.NodeEligibilityInput{Node: "n1", Eligible: true, DryRun: true}, &nr, false)
	if nr.Plan == nil || nr.Plan.Action != api.ActionSetEligibility || len(nr.Plan.Create) != 1 || nr.Plan.Create[0].Node != "n1" || len(nr.Plan.Stop) != 0 {
		t.Fatalf("eligibility plan = %+v, want the pending replica placed on n1", nr.Plan)
	}
	if n, _ := e.store.Node("n1"); state.Schedulable(n) {
		t.Fatal("a dry run changed the node's eligibility")
	}
	e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: nr.Plan.ID}, nil, false)
	if n, _ := e.store.Node("n1"); !state.Schedulable(n) {
		t.Fatal("apply_plan did not make n1 eligible")
	}
	e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "nope", DryRun: true}, nil, true)
}

// A fixed host port fits once per node: the deploy plan shows the second
// replica pending with the port and node named.
func TestDeployPlanFixedHostPortPending(t *testing.T) {
	e := newPlanEnv(t)
	const spec = "name: hp\nimage: busybox:1\nreplicas: 2\ncommand: [sleep, '1000']\nports:\n  - name: http\n    port: 80\n    host_port: 18081\n"
	var dr api.DeployResult
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": spec, "dry_run": true}, &dr, false)
	if dr.Plan == nil || len(dr.Plan.Create) != 1 || !strings.Contains(dr.Plan.Pending, "n1: host port 18081/tcp") {
		t.Fatalf("plan = %+v, want 1 create and 1 pending on host port 18081/tcp of n1", dr.Plan)
	}
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": spec}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "hp"})
	if len(insts) != 1 {
		t.Fatalf("%d instances placed, want 1", len(insts))
	}
	var ex api.Explanation
	text := e.call(t, api.ToolExplain, api.ExplainInput{ID: "hp"}, &ex, false)
	if !strings.Contains(text, "host port 18081/tcp") {
		t.Errorf("explain does not name the port:\n%s", text)
	}
}

// apply_plan is judged as the change its plan makes: a principal denied
// drain_node cannot apply a drain plan someone else made.
func TestNodePlanPolicyAppliesToApplyPlan(t *testing.T) {
	e := newPolicyEnv(t)
	if _, err := e.store.Apply(context.Background(), state.PutNode{Node: state.Node{ID: "n1", Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load([]byte("principals:\n  - name: intern\n    deny: [drain_node]\n"), "", "test-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	au := NewAuth(e.store, bootstrapToken, e.audit)
	srv, err := mcp.NewServer(mcp.Config{Services: e.be, Images: e.be, Plans: e.be, Ops: e.be, Auth: au, Audit: e.audit, Access: au,
		Logger: e.log, Policy: pol, Oversight: e.be, ApprovalTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL
	admin := e.mustConnect(t, bootstrapToken)
	tok := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "intern", Scope: "operate"}))
	intern := e.mustConnect(t, tok.Token)

	nr := decodeResult[api.NodeSchedulingResult](t, callTool(t, admin, api.ToolDrainNode, api.DrainNodeInput{Node: "n1", DryRun: true}))
	if nr.Plan == nil {
		t.Fatal("no plan")
	}
	wantRefused(t, callTool(t, intern, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: nr.Plan.ID}), "principal/intern/deny")
	if n, _ := e.store.Node("n1"); state.Draining(n) {
		t.Fatal("a denied principal drained the node through apply_plan")
	}
	decodeResult[api.ApplyPlanResult](t, callTool(t, admin, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: nr.Plan.ID}))
	if n, _ := e.store.Node("n1"); !state.Draining(n) {
		t.Fatal("admin's apply_plan did not drain the node")
	}
}
