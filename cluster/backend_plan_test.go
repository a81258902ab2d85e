package cluster

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// planEnv is the real MCP server over a real state store (in t.TempDir)
// with one node and no worker: instances stay pending, which is all a plan
// looks at.
type planEnv struct {
	store  *state.Store
	ctl    *controller.Controller
	cs     *sdk.ClientSession
	logDir string
}

func newPlanEnv(t *testing.T) *planEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Apply(ctx, state.PutNode{Node: state.Node{ID: "n1", Name: "n1", CPU: 4000, Memory: 8 << 30}}); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	be := &Backend{Store: st, LogPath: func(id string) string { return filepath.Join(logDir, id+".log") }}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Ops: be, Token: "t0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return &planEnv{store: st, ctl: controller.New(st, nil), cs: cs, logDir: logDir}
}

// call calls tool and decodes its structured result into out; it returns
// the text, and fails the test on a tool error unless wantErr.
func (e *planEnv) call(t *testing.T, tool string, args, out any, wantErr bool) string {
	t.Helper()
	res, err := e.cs.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var text string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			text += tc.Text
		}
	}
	if res.IsError != wantErr {
		t.Fatalf("%s: error=%v, want %v: %s", tool, res.IsError, wantErr, text)
	}
	if out != nil && !res.IsError {
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: decode %s: %v", tool, raw, err)
		}
	}
	return text
}

// settle runs the controller once, as the running one would.
func (e *planEnv) settle(t *testing.T) {
	t.Helper()
	if err := e.ctl.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
}

const planSpec = "name: web\nimage: busybox:1\nreplicas: 3\ncommand: [sleep, '1000']\n"

func TestDryRunThenApply(t *testing.T) {
	e := newPlanEnv(t)
	var dr api.DeployResult
	text := e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec, "dry_run": true}, &dr, false)
	p := dr.Plan
	if p == nil || p.Action != api.ActionCreate || len(p.Create) != 3 || len(p.Replace)+len(p.Stop) != 0 || p.Base != 0 {
		t.Fatalf("dry-run plan = %+v, want 3 creates", p)
	}
	if !strings.Contains(text, "nothing changed") || !strings.Contains(text, p.ID) {
		t.Errorf("dry-run text %q does not say nothing changed and give the plan ID", text)
	}
	if _, err := e.store.Service("web"); err == nil {
		t.Fatal("a dry run created the service")
	}

	var ar api.ApplyPlanResult
	e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: p.ID}, &ar, false)
	if ar.Action != api.ActionCreate || ar.Version != 1 {
		t.Errorf("apply = %+v", ar)
	}
	svc, err := e.store.Service("web")
	if err != nil || svc.Spec.Replicas != 3 {
		t.Fatalf("after apply: %+v, %v", svc, err)
	}
	// A plan is used once.
	e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: p.ID}, nil, true)
	e.settle(t)

	// An image change replaces all three, one at a time.
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "busybox:1", "busybox:2", 1), "dry_run": true}, &dr, false)
	if p := dr.Plan; p.Action != api.ActionUpdate || len(p.Replace) != 3 || len(p.Create) != 0 || p.ToVersion != 2 ||
		strings.Join(p.Changes, ",") != "image" {
		t.Fatalf("update plan = %+v", p)
	}
	// Scaling down stops the surplus.
	var sr api.ScaleResult
	e.call(t, api.ToolScaleService, api.ScaleInput{Name: "web", Replicas: 1, DryRun: true}, &sr, false)
	if p := sr.Plan; p == nil || p.Action != api.ActionScale || len(p.Stop) != 2 || sr.Previous != 3 {
		t.Fatalf("scale plan = %+v (previous %d)", p, sr.Previous)
	}
	var rr api.RemoveResult
	e.call(t, api.ToolRemoveService, api.RemoveInput{Name: "web", DryRun: true}, &rr, false)
	if p := rr.Plan; p == nil || p.Action != api.ActionRemove || len(p.Stop) != 3 {
		t.Fatalf("remove plan = %+v", p)
	}
	if svc2, _ := e.store.Service("web"); svc2.ModifyIndex != svc.ModifyIndex || svc2.Removing {
		t.Fatal("a dry run changed the service")
	}

	// A concurrent change makes the scale plan stale.
	e.call(t, api.ToolScaleService, api.ScaleInput{Name: "web", Replicas: 5}, nil, false)
	msg := e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: sr.Plan.ID}, nil, true)
	for _, want := range []string{"stale", "dry_run"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stale apply error %q does not contain %q", msg, want)
		}
	}
	if svc, _ := e.store.Service("web"); svc.Spec.Replicas != 5 {
		t.Errorf("replicas = %d after a refused plan, want 5", svc.Spec.Replicas)
	}
	e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: "../etc"}, nil, true)
}

func TestRollbackRestartHistory(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "busybox:1", "busybox:2", 1)}, nil, false)
	e.settle(t)

	var cr api.ChangeResult
	e.call(t, api.ToolRollbackService, api.RollbackInput{Name: "web", Version: 1, DryRun: true}, &cr, false)
	if cr.Plan == nil || cr.Plan.ToVersion != 3 || strings.Join(cr.Plan.Changes, ",") != "image" {
		t.Fatalf("rollback plan = %+v", cr.Plan)
	}
	e.call(t, api.ToolRollbackService, api.RollbackInput{Name: "web", Version: 1}, &cr, false)
	svc, _ := e.store.Service("web")
	if cr.Version != 3 || svc.Version != 3 || svc.Spec.Image != "busybox:1" {
		t.Fatalf("after rollback: result %+v, stored version %d image %s", cr, svc.Version, svc.Spec.Image)
	}
	e.call(t, api.ToolRollbackService, api.RollbackInput{Name: "web", Version: 42}, nil, true)

	e.call(t, api.ToolRestartService, api.RestartInput{Name: "web", DryRun: true}, &cr, false)
	if cr.Plan == nil || cr.Plan.Action != api.ActionRestart || len(cr.Plan.Replace) != 3 {
		t.Fatalf("restart plan = %+v", cr.Plan)
	}
	e.call(t, api.ToolRestartService, api.RestartInput{Name: "web"}, &cr, false)
	if svc, _ := e.store.Service("web"); svc.Version != 4 || svc.Spec.Image != "busybox:1" {
		t.Fatalf("after restart: version %d image %s, want 4 busybox:1", svc.Version, svc.Spec.Image)
	}

	var h api.History
	e.call(t, api.ToolServiceHistory, api.NameInput{Name: "web"}, &h, false)
	var got []string
	for _, v := range h.Versions {
		got = append(got, v.Cause+":"+v.Image)
	}
	if h.Current != 4 || strings.Join(got, " ") != "deploy:busybox:1 deploy:busybox:2 rollback to version 1:busybox:1 restart:busybox:1" {
		t.Fatalf("history = %d %v", h.Current, got)
	}
	if strings.Join(h.Versions[1].Changes, ",") != "image" {
		t.Errorf("version 2 changes = %v, want [image]", h.Versions[1].Changes)
	}
}

func TestCreatePlanRefusedOnceTheServiceExists(t *testing.T) {
	e := newPlanEnv(t)
	var dr api.DeployResult
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec, "dry_run": true}, &dr, false)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "replicas: 3", "replicas: 1", 1)}, nil, false)
	msg := e.call(t, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: dr.Plan.ID}, nil, true)
	if !strings.Contains(msg, "created since") {
		t.Errorf("stale create plan: error %q does not say the service was created since", msg)
	}
	if svc, _ := e.store.Service("web"); svc.Spec.Replicas != 1 {
		t.Errorf("replicas = %d, want 1: the stale plan was applied", svc.Spec.Replicas)
	}
}

// Going back to a spec the instances still run (a rollback before the
// update got anywhere, or a cancelled deploy) replaces nothing: the plan
// says so, and the controller leaves them running.
func TestRollbackToTheRunningSpecReplacesNothing(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)
	before, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "busybox:1", "busybox:2", 1)}, nil, false)

	var cr api.ChangeResult
	e.call(t, api.ToolRollbackService, api.RollbackInput{Name: "web", Version: 1, DryRun: true}, &cr, false)
	if cr.Plan == nil || cr.Plan.ToVersion != 3 || len(cr.Plan.Replace)+len(cr.Plan.Create)+len(cr.Plan.Stop) != 0 {
		t.Fatalf("rollback plan to the running spec = %+v, want nothing replaced", cr.Plan)
	}
	e.call(t, api.ToolRollbackService, api.RollbackInput{Name: "web", Version: 1}, &cr, false)
	e.settle(t)
	after, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(after) != len(before) || len(after) != 3 {
		t.Fatalf("instances before %d, after %d", len(before), len(after))
	}
	ids := map[string]bool{}
	for _, in := range before {
		ids[in.ID] = true
	}
	for _, in := range after {
		if !ids[in.ID] || in.SpecVersion != 3 || in.Desired != state.DesiredRun {
			t.Errorf("instance %s (version %d, desired %s): want the same instances, now on version 3", in.ID, in.SpecVersion, in.Desired)
		}
	}
}
