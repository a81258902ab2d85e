package controller

import (
	"context"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// openLostCluster opens a real store with two ready nodes and a service
// web of two replicas (replace_after 0s) placed on them by a Pass, then
// fails n2 through NodeStatusChanges and runs a Pass, returning the
// instance that was on n2.
func openLostCluster(t *testing.T) (context.Context, *state.Store, *Controller, *state.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "ctl-test"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	apply := func(ops ...state.Op) {
		t.Helper()
		if _, err := st.Apply(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	apply(state.PutNode{Node: state.Node{ID: "n1", Name: "n1", CPU: 4000, Memory: 8 << 30}},
		state.PutNode{Node: state.Node{ID: "n2", Name: "n2", CPU: 4000, Memory: 8 << 30}},
		state.PutService{Service: state.Service{Name: "web", Spec: spec.Service{Name: "web", Image: "busybox:1", Replicas: 2}}})
	ctl := New(st, nil)
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	var onN2 *state.Instance
	insts, _ := st.Instances(state.InstanceFilter{Service: "web"})
	for _, in := range insts {
		if in.Node == "n2" {
			onN2 = in
		}
	}
	if len(insts) != 2 || onN2 == nil {
		t.Fatalf("want the 2 replicas spread over n1 and n2, got %+v", insts)
	}
	nodes, _ := st.Nodes()
	apply(NodeStatusChanges(nodes, map[string]bool{"n1": true, "n2": false}, time.Now().UTC())...)
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, st, ctl, onN2
}

// Through the real FSM: a failed node's instance is marked lost and its
// slot runs on the other node; when the node is back and its worker
// reports the instance stopped, the record goes.
func TestPassReplacesInstancesOfDownNode(t *testing.T) {
	ctx, st, ctl, onN2 := openLostCluster(t)
	lost, err := st.Instance(onN2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if lost.Desired != state.DesiredStop || lost.State != state.StateLost || lost.Message == "" {
		t.Fatalf("instance on the failed node: desired %q state %q message %q", lost.Desired, lost.State, lost.Message)
	}
	insts, _ := st.Instances(state.InstanceFilter{Service: "web"})
	live := map[int]string{}
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			if _, dup := live[in.Slot]; dup || in.Node != "n1" {
				t.Fatalf("live instances: %+v", insts)
			}
			live[in.Slot] = in.ID
		}
	}
	if len(live) != 2 {
		t.Fatalf("want slots 0 and 1 live on n1, got %v", live)
	}

	// The node returns; its worker stops the container and says so.
	nodes, _ := st.Nodes()
	ops := NodeStatusChanges(nodes, map[string]bool{"n2": true}, time.Now().UTC())
	ops = append(ops, state.SetInstanceStatus{ID: onN2.ID, Status: state.InstanceStatus{State: state.StateStopped}})
	if _, err := st.Apply(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Instance(onN2.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("the stopped lost record should be deleted: %v", err)
	}
	if insts, _ := st.Instances(state.InstanceFilter{Service: "web"}); len(insts) != 2 {
		t.Fatalf("want exactly 2 records left, got %+v", insts)
	}
	if n, _ := st.Node("n2"); n.Status != state.NodeReady || !n.DownSince.IsZero() {
		t.Fatalf("returned node: %+v", n)
	}
}

// A service being removed does not wait for a down node to report its
// lost instances.
func TestPassRemovesServiceWithLostInstances(t *testing.T) {
	ctx, st, ctl, onN2 := openLostCluster(t)
	svc, err := st.Service("web")
	if err != nil {
		t.Fatal(err)
	}
	svc.Removing = true
	if _, err := st.Apply(ctx, state.PutService{Service: *svc}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ctl.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		// n1's worker stops what it is asked to.
		insts, _ := st.Instances(state.InstanceFilter{Node: "n1"})
		var ops []state.Op
		for _, in := range insts {
			if in.Desired == state.DesiredStop {
				ops = append(ops, state.SetInstanceStatus{ID: in.ID, Status: state.InstanceStatus{State: state.StateStopped}})
			}
		}
		if len(ops) > 0 {
			if _, err := st.Apply(ctx, ops...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := st.Service("web"); !errdefs.IsNotFound(err) {
		t.Fatalf("service should be removed: %v", err)
	}
	if in, err := st.Instance(onN2.ID); err != nil || in.State != state.StateLost {
		t.Fatalf("the lost record waits for its node: %+v, %v", in, err)
	}
}

// Run places the replacement when the tolerance ends, not at its next
// periodic pass (every 2s).
func TestRunReplacesOnTime(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "ctl-run"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	defer st.Close()
	sp := spec.Service{Name: "web", Image: "busybox:1", Replicas: 2,
		Disconnect: spec.Disconnect{ReplaceAfter: spec.Duration(300 * time.Millisecond)}}
	if _, err := st.Apply(ctx, state.PutNode{Node: state.Node{ID: "n1", Name: "n1"}}, state.PutNode{Node: state.Node{ID: "n2", Name: "n2"}},
		state.PutService{Service: state.Service{Name: "web", Spec: sp}}); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- New(st, nil).Run(rctx) }()
	defer func() { stop(); <-done }()

	onN2 := func() *state.Instance {
		insts, _ := st.Instances(state.InstanceFilter{Node: "n2"})
		if len(insts) == 0 {
			return nil
		}
		return insts[0]
	}
	for deadline := time.Now().Add(10 * time.Second); onN2() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no instance placed on n2")
		}
	}
	nodes, _ := st.Nodes()
	down := time.Now()
	if _, err := st.Apply(ctx, NodeStatusChanges(nodes, map[string]bool{"n2": false}, down.UTC())...); err != nil {
		t.Fatal(err)
	}
	for onN2().State != state.StateLost {
		if time.Since(down) > 10*time.Second {
			t.Fatalf("instance on the down node not lost: %+v", onN2())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(down); took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("lost %s after the node went down, want just after replace_after (300ms)", took)
	}
}
