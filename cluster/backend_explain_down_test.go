package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/state"
)

// Explain says why an instance on a down node is still counted and when
// it is replaced, and why a lost one is stopping.
func TestExplainDownNodeAndLostInstance(t *testing.T) {
	e := newPlanEnv(t)
	const tolerant = "name: web\nimage: busybox:1\nreplicas: 1\ncommand: [sleep, '1000']\ndisconnect: {replace_after: 1h}\n"
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": tolerant}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 1 {
		t.Fatalf("%d instances, want 1", len(insts))
	}
	id := insts[0].ID
	nodes, _ := e.store.Nodes()
	if _, err := e.store.Apply(context.Background(), controller.NodeStatusChanges(nodes, map[string]bool{"n1": false}, time.Now().UTC())...); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	var ex api.Explanation
	text := e.call(t, api.ToolExplain, api.ExplainInput{ID: id}, &ex, false)
	for _, want := range []string{"node n1 down since", "replaced after 1h0m0s (in ", "disconnect.replace_after"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain of an instance on a down node lacks %q:\n%s", want, text)
		}
	}
	if len(ex.Findings) != 1 || !ex.Findings[0].Problem {
		t.Errorf("findings = %+v, want one problem", ex.Findings)
	}

	// No tolerance: the instance is lost at once; with no other node its
	// slot waits, and explain says both.
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(tolerant, "1h", "0s", 1)}, nil, false)
	e.settle(t)
	if in, err := e.store.Instance(id); err != nil || in.State != state.StateLost || in.Desired != state.DesiredStop {
		t.Fatalf("instance after the tolerance: %+v, %v", in, err)
	}
	text = e.call(t, api.ToolExplain, api.ExplainInput{ID: id}, &ex, false)
	for _, want := range []string{"is lost: node n1 down since", "longer than disconnect.replace_after 0s", "placed again on another node"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain of a lost instance lacks %q:\n%s", want, text)
		}
	}
	var cs api.ClusterStatus
	e.call(t, api.ToolClusterStatus, nil, &cs, false)
	if cs.Instances[state.StateLost] != 1 || cs.Instances[state.StateStopping] != 0 {
		t.Errorf("cluster status counts %v, want the instance as lost", cs.Instances)
	}
	text = e.call(t, api.ToolExplain, api.ExplainInput{ID: "web"}, &ex, false)
	for _, want := range []string{"1 replica(s) have no instance", "n1: down since"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain of the service lacks %q:\n%s", want, text)
		}
	}
}

// A deploy that changes only disconnect.replace_after replaces nothing, in
// its dry-run plan and when applied.
func TestDisconnectChangeReplacesNothing(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)
	ids := func() map[string]bool {
		insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
		m := map[string]bool{}
		for _, in := range insts {
			m[in.ID] = in.Desired == state.DesiredRun
		}
		return m
	}
	before := ids()
	changed := planSpec + "disconnect: {replace_after: 5m}\n"
	var dr api.DeployResult
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": changed, "dry_run": true}, &dr, false)
	if p := dr.Plan; p == nil || len(p.Replace)+len(p.Stop)+len(p.Create) != 0 {
		t.Fatalf("dry-run plan of a disconnect change = %+v, want nothing replaced", p)
	}
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": changed}, nil, false)
	e.settle(t)
	after := ids()
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("instances before %v, after %v", before, after)
	}
	for id, live := range after {
		if !before[id] || !live {
			t.Fatalf("instances before %v, after %v: want the same 3 running", before, after)
		}
	}
	if svc, _ := e.store.Service("web"); svc.Version != 2 || svc.Spec.Disconnect.ReplaceAfter.D() != 5*time.Minute {
		t.Fatalf("service after the change: version %d, disconnect %+v", svc.Version, svc.Spec.Disconnect)
	}
}

// A dry-run deploy while a node is down past the tolerance shows the
// instance there replaced on another node, as the controller will do.
func TestDryRunReplacesLostInstance(t *testing.T) {
	e := newPlanEnv(t)
	if _, err := e.store.Apply(context.Background(), state.PutNode{Node: state.Node{ID: "n2", Name: "n2", CPU: 4000, Memory: 8 << 30}}); err != nil {
		t.Fatal(err)
	}
	spec1 := strings.Replace(planSpec, "replicas: 3", "replicas: 2", 1) + "disconnect: {replace_after: 1h}\n"
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": spec1}, nil, false)
	e.settle(t)
	var onN2 string
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	for _, in := range insts {
		if in.Node == "n2" {
			onN2 = in.ID
		}
	}
	if onN2 == "" {
		t.Fatalf("want a replica on n2: %+v", insts)
	}
	nodes, _ := e.store.Nodes()
	if _, err := e.store.Apply(context.Background(), controller.NodeStatusChanges(nodes, map[string]bool{"n2": false}, time.Now().UTC())...); err != nil {
		t.Fatal(err)
	}
	var dr api.DeployResult
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(spec1, "1h", "0s", 1), "dry_run": true}, &dr, false)
	p := dr.Plan
	// Only disconnect changes, so the instances keep their version: the
	// lost one is stopped and its slot created again on n1.
	if p == nil || len(p.Stop) != 1 || p.Stop[0].ID != onN2 || len(p.Create) != 1 || p.Create[0].Node != "n1" || p.Create[0].Slot != p.Stop[0].Slot {
		t.Fatalf("dry-run plan = %+v, want %s stopped and its slot created on n1", p, onN2)
	}
}
