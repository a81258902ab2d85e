package controller

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/gantry-dev/gantry/scheduler"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

var oneNode = []scheduler.Node{{ID: "n1", Ready: true, CPU: 4000, Memory: 8 << 30}}

func svc(replicas, version int) *state.Service {
	return &state.Service{Name: "web", Version: version, Spec: spec.Service{Name: "web", Replicas: replicas}}
}

// cluster simulates the rest of the system around Reconcile: it applies
// plans to a set of records and lets the "worker" move instances along.
type cluster struct {
	insts map[string]*state.Instance
	index uint64
	seq   int
}

func (c *cluster) list() []*state.Instance {
	var out []*state.Instance
	for _, in := range c.insts {
		cp := *in
		out = append(out, &cp)
	}
	return out
}

func (c *cluster) apply(p Plan) {
	for _, in := range p.Create {
		c.index++
		cp := *in
		cp.CreateIndex = c.index
		c.insts[cp.ID] = &cp
	}
	for _, id := range p.Stop {
		c.insts[id].Desired = state.DesiredStop
	}
	for _, id := range p.Delete {
		delete(c.insts, id)
	}
}

// work lets the worker act: run pending, stop stopping. ok decides for each
// instance whether it comes up healthy.
func (c *cluster) work(ok func(*state.Instance) bool) {
	for _, in := range c.insts {
		switch {
		case in.Desired == state.DesiredStop:
			in.State = state.StateStopped
			in.Healthy = false
		case ok(in):
			in.State, in.Healthy = state.StateRunning, true
		default:
			in.State, in.Healthy = state.StateBackoff, false
		}
	}
}

func (c *cluster) reconcile(s *state.Service) Plan {
	return Reconcile(Input{Name: "web", Service: s, Instances: c.list(), Nodes: oneNode,
		Usage: map[string]*scheduler.Usage{}, Now: time.Unix(0, 0),
		NewID: func(svc string, slot int) string { c.seq++; return fmt.Sprintf("%s-%d-%d", svc, slot, c.seq) }})
}

func liveBySlot(c *cluster) map[int][]*state.Instance {
	m := map[int][]*state.Instance{}
	for _, in := range c.insts {
		if in.Desired == state.DesiredRun {
			m[in.Slot] = append(m[in.Slot], in)
		}
	}
	return m
}

func TestReconcileScaleUpDown(t *testing.T) {
	c := &cluster{insts: map[string]*state.Instance{}}
	p := c.reconcile(svc(3, 1))
	if len(p.Create) != 3 || len(p.Stop) != 0 {
		t.Fatalf("scale up: %+v", p)
	}
	c.apply(p)
	c.work(func(*state.Instance) bool { return true })
	if p := c.reconcile(svc(3, 1)); !p.Empty() {
		t.Fatalf("steady state should be a no-op, got %+v", p)
	}
	p = c.reconcile(svc(1, 1))
	if len(p.Stop) != 2 || len(p.Create) != 0 {
		t.Fatalf("scale down: %+v", p)
	}
	c.apply(p)
	c.work(func(*state.Instance) bool { return true })
	p = c.reconcile(svc(1, 1))
	if len(p.Delete) != 2 {
		t.Fatalf("stopped records should be deleted: %+v", p)
	}
	// Service removed: the last one stops.
	c.apply(p)
	p = c.reconcile(nil)
	if len(p.Stop) != 1 {
		t.Fatalf("removed service: %+v", p)
	}
}

func TestReconcileRollingOneAtATime(t *testing.T) {
	c := &cluster{insts: map[string]*state.Instance{}}
	c.apply(c.reconcile(svc(3, 1)))
	c.work(func(*state.Instance) bool { return true })
	// New version: only one slot is replaced while the others serve.
	p := c.reconcile(svc(3, 2))
	if len(p.Stop) != 1 || len(p.Create) != 1 {
		t.Fatalf("rolling step 1: stop %d create %d", len(p.Stop), len(p.Create))
	}
	c.apply(p)
	// The new instance is not ready yet: nothing else moves.
	if p := c.reconcile(svc(3, 2)); len(p.Stop) != 0 || len(p.Create) != 0 {
		t.Fatalf("must wait for the new instance: %+v", p)
	}
	// A new version that never becomes healthy halts the rollout.
	c.work(func(in *state.Instance) bool { return in.SpecVersion == 1 })
	c.apply(c.reconcile(svc(3, 2)))
	running := 0
	for _, in := range c.insts {
		if in.Desired == state.DesiredRun && in.SpecVersion == 1 && in.State == state.StateRunning {
			running++
		}
	}
	if running != 2 {
		t.Fatalf("a failing rollout must keep 2 old replicas serving, got %d", running)
	}
}

// TestReconcileConverges is a property test: whatever sequence of scales,
// spec changes and failures happens, once the workers cooperate the
// service converges to exactly `replicas` live instances, one per slot,
// all on the latest version.
func TestReconcileConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := &cluster{insts: map[string]*state.Instance{}}
		version := 1
		replicas := rapid.IntRange(0, 6).Draw(rt, "replicas")
		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 3).Draw(rt, "action") {
			case 0:
				replicas = rapid.IntRange(0, 6).Draw(rt, "replicas")
			case 1:
				version++
			case 2:
				bad := rapid.IntRange(0, 1).Draw(rt, "healthy") == 0
				c.work(func(*state.Instance) bool { return !bad })
			}
			p := c.reconcile(svc(replicas, version))
			c.apply(p)
			// Invariant at every step: never two live instances in a slot.
			for slot, ins := range liveBySlot(c) {
				if len(ins) > 1 {
					rt.Fatalf("slot %d has %d live instances", slot, len(ins))
				}
			}
		}
		for i := 0; i < 2*replicas+4; i++ {
			c.work(func(*state.Instance) bool { return true })
			c.apply(c.reconcile(svc(replicas, version)))
		}
		c.work(func(*state.Instance) bool { return true })
		c.apply(c.reconcile(svc(replicas, version)))
		live := liveBySlot(c)
		if len(live) != replicas {
			rt.Fatalf("want %d live slots, got %d", replicas, len(live))
		}
		for slot, ins := range live {
			if slot < 0 || slot >= replicas || len(ins) != 1 || ins[0].SpecVersion != version {
				rt.Fatalf("slot %d: %+v", slot, ins)
			}
		}
		for _, in := range c.insts {
			if in.Desired != state.DesiredRun {
				rt.Fatalf("stopped record %s not deleted", in.ID)
			}
		}
	})
}
