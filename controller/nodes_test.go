package controller

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func TestNodeStatusChanges(t *testing.T) {
	downAt := t0.Add(-time.Minute)
	nodes := []*state.Node{
		{ID: "n1", Status: state.NodeReady, Labels: map[string]string{"zone": "a"}},
		{ID: "n2", Status: state.NodeDown, DownSince: downAt},
		{ID: "n3", Status: state.NodeReady},
		{ID: "n4", Status: state.NodeDown, DownSince: downAt},
	}
	// n1 fails, n2 is back, n3 and n4 are unchanged, n5 is not in state.
	ops := NodeStatusChanges(nodes, map[string]bool{"n1": false, "n2": true, "n3": true, "n4": false, "n5": false}, t0)
	var puts []state.Node
	var events []state.Event
	for _, op := range ops {
		switch op := op.(type) {
		case state.PutNode:
			puts = append(puts, op.Node)
		case state.AppendEvent:
			events = append(events, op.Event)
		default:
			t.Fatalf("unexpected op %T", op)
		}
	}
	if len(puts) != 2 || len(events) != 2 {
		t.Fatalf("want 2 node writes and 2 events, got %+v", ops)
	}
	if n := puts[0]; n.ID != "n1" || n.Status != state.NodeDown || !n.DownSince.Equal(t0) || n.Labels["zone"] != "a" {
		t.Errorf("failed node: %+v", n)
	}
	if n := puts[1]; n.ID != "n2" || n.Status != state.NodeReady || !n.DownSince.IsZero() {
		t.Errorf("returning node: %+v", n)
	}
	if events[0].Type != "NodeDown" || events[0].Node != "n1" || events[1].Type != "NodeReady" || !strings.Contains(events[1].Message, "after 1m0s down") {
		t.Errorf("events: %+v", events)
	}
	if nodes[1].Status != state.NodeDown {
		t.Error("NodeStatusChanges changed its input")
	}
	// A node nobody reported on is left alone.
	if ops := NodeStatusChanges(nodes, map[string]bool{}, t0); len(ops) != 0 {
		t.Errorf("no observations: %+v", ops)
	}
}

func TestDownReason(t *testing.T) {
	since := t0
	if got := DownReason("n2", since, 30*time.Second, t0.Add(18*time.Second)); got != "node n2 down since 2026-12-03T12:00:00Z; replaced after 30s (in 12s)" {
		t.Errorf("within tolerance: %q", got)
	}
	if got := DownReason("n2", since, 0, t0); !strings.HasSuffix(got, "replaced after 0s (due now)") {
		t.Errorf("past tolerance: %q", got)
	}
}

// nodeSim is a cluster of several nodes around Reconcile: nodes go down
// and come back, time passes, and each ready node's worker acts on the
// records it sees. containers models what really runs on each node: a
// down node's containers keep running (it may only be cut off) until its
// worker sees the state again.
type nodeSim struct {
	insts      map[string]*state.Instance
	nodes      map[string]*state.Node
	containers map[string]string // instance ID -> node it runs on
	now        time.Time
	index      uint64
	seq        int
}

func newNodeSim(n int) *nodeSim {
	c := &nodeSim{insts: map[string]*state.Instance{}, nodes: map[string]*state.Node{}, containers: map[string]string{}, now: t0}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.nodes[id] = &state.Node{ID: id, Status: state.NodeReady, CPU: 4000, Memory: 8 << 30}
	}
	return c
}

func (c *nodeSim) nodeList() []*state.Node {
	var out []*state.Node
	for _, n := range c.nodes {
		cp := *n
		out = append(out, &cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (c *nodeSim) list() []*state.Instance {
	var out []*state.Instance
	for _, in := range c.insts {
		cp := *in
		out = append(out, &cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// setAlive applies what NodeStatusChanges makes of an observation, as the
// FSM would.
func (c *nodeSim) setAlive(id string, alive bool) {
	for _, op := range NodeStatusChanges(c.nodeList(), map[string]bool{id: alive}, c.now) {
		if put, ok := op.(state.PutNode); ok {
			n := put.Node
			c.nodes[n.ID] = &n
		}
	}
}

func (c *nodeSim) reconcile(s *state.Service) Plan {
	insts := c.list()
	cands, usage := Candidates(c.nodeList(), insts, []*state.Service{s})
	return Reconcile(Input{Name: "web", Service: s, Instances: insts, Nodes: cands, Usage: usage, Now: c.now,
		NewID: func(svc string, slot int) string { c.seq++; return fmt.Sprintf("%s-%d-%d", svc, slot, c.seq) }})
}

func (c *nodeSim) apply(p Plan) {
	for _, in := range p.Lost {
		cur := c.insts[in.ID]
		cur.Desired, cur.InstanceStatus = in.Desired, in.InstanceStatus
	}
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

// work lets every ready node's worker act: run what should run, stop and
// remove what should not (including containers whose record is gone),
// and report.
func (c *nodeSim) work() {
	for id, node := range c.containers {
		if c.nodes[node].Status != state.NodeReady {
			continue
		}
		if in := c.insts[id]; in == nil || in.Desired != state.DesiredRun {
			delete(c.containers, id)
		}
	}
	for _, in := range c.insts {
		if c.nodes[in.Node].Status != state.NodeReady {
			continue // cut off: nothing it does reaches the state
		}
		if in.Desired == state.DesiredRun {
			c.containers[in.ID] = in.Node
			in.State, in.Healthy = state.StateRunning, true
		} else {
			in.State, in.Healthy = state.StateStopped, false
		}
	}
}

func liveSlots(insts map[string]*state.Instance) map[int][]*state.Instance {
	m := map[int][]*state.Instance{}
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			m[in.Slot] = append(m[in.Slot], in)
		}
	}
	return m
}

func toleratingService(replicas, version int, tolerance time.Duration) *state.Service {
	s := svc(replicas, version)
	s.Spec.Disconnect = spec.Disconnect{ReplaceAfter: spec.Duration(tolerance)}
	return s
}

// A down node's instances stay counted for the tolerance, are then lost
// and replaced in the same slots; when the node comes back its worker
// stops them and the records go, leaving one live instance per slot.
func TestReconcileReplacesAfterTolerance(t *testing.T) {
	c := newNodeSim(2)
	s := toleratingService(2, 1, 30*time.Second)
	c.apply(c.reconcile(s))
	c.work()
	var onN2 *state.Instance
	for _, in := range c.insts {
		if in.Node == "n2" {
			onN2 = in
		}
	}
	if onN2 == nil {
		t.Fatalf("the two replicas should spread over both nodes: %+v", c.list())
	}

	c.setAlive("n2", false)
	c.now = c.now.Add(29 * time.Second)
	if p := c.reconcile(s); !p.Empty() || !p.Recheck.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("within the tolerance nothing changes until it ends at %s, got %+v", t0.Add(30*time.Second), p)
	}
	c.now = c.now.Add(time.Second)
	p := c.reconcile(s)
	if len(p.Lost) != 1 || p.Lost[0].ID != onN2.ID || len(p.Create) != 1 || p.Create[0].Slot != onN2.Slot || p.Create[0].Node != "n1" {
		t.Fatalf("after 30s: want %s lost and its slot %d placed on n1, got lost %+v create %+v", onN2.ID, onN2.Slot, p.Lost, p.Create)
	}
	lost := p.Lost[0]
	if lost.Desired != state.DesiredStop || lost.State != state.StateLost || !strings.Contains(lost.Message, "node n2 down since 2026-12-03T12:00:00Z") {
		t.Errorf("lost record: %+v", lost)
	}
	c.apply(p)
	c.work()
	if p := c.reconcile(s); !p.Empty() || !p.Recheck.Equal(t0.Add(30*time.Second+ForgetLostAfter)) {
		t.Fatalf("while the node stays down the lost record waits, until the cleanup timeout: %+v", p)
	}
	if len(c.containers) != 3 {
		t.Fatalf("the cut-off node still runs its container: want 3 containers, got %v", c.containers)
	}

	c.setAlive("n2", true)
	c.work() // n2's worker stops the lost instance and reports it stopped
	p = c.reconcile(s)
	if len(p.Delete) != 1 || p.Delete[0] != onN2.ID || len(p.Create) != 0 {
		t.Fatalf("after the node reports: want %s deleted, got %+v", onN2.ID, p)
	}
	c.apply(p)
	live := liveSlots(c.insts)
	if len(c.insts) != 2 || len(live) != 2 || len(live[0]) != 1 || len(live[1]) != 1 || len(c.containers) != 2 {
		t.Fatalf("want 2 live instances in slots 0 and 1 and 2 containers, got %+v, %v", c.list(), c.containers)
	}
}

// Lost records of a node that never returns are forgotten after the
// tolerance plus ForgetLostAfter, or at once when the node is removed.
func TestReconcileForgetsLost(t *testing.T) {
	c := newNodeSim(2)
	s := toleratingService(2, 1, time.Minute)
	c.apply(c.reconcile(s))
	c.work()
	c.setAlive("n2", false)
	c.now = c.now.Add(time.Minute)
	c.apply(c.reconcile(s))
	c.work()
	c.now = c.now.Add(ForgetLostAfter - time.Second)
	if p := c.reconcile(s); !p.Empty() {
		t.Fatalf("before the cleanup timeout: %+v", p)
	}
	c.now = c.now.Add(time.Second)
	p := c.reconcile(s)
	if len(p.Delete) != 1 || len(p.Events) != 1 || p.Events[0].Type != "Forgotten" {
		t.Fatalf("after the cleanup timeout: want the lost record deleted, got %+v", p)
	}

	c = newNodeSim(2)
	s = toleratingService(2, 1, 0)
	c.apply(c.reconcile(s))
	c.work()
	c.setAlive("n2", false)
	c.apply(c.reconcile(s))
	delete(c.nodes, "n2")
	if p := c.reconcile(s); len(p.Delete) != 1 || !strings.Contains(p.Events[0].Message, "no longer in the cluster") {
		t.Fatalf("node removed: want the lost record deleted, got %+v", p)
	}
}

// A new version does not replace an instance whose node is down within
// the tolerance (the old one may still run), nor roll the other slots
// while that slot's state is unknown.
func TestReconcileRollingWaitsForDownNode(t *testing.T) {
	c := newNodeSim(2)
	c.apply(c.reconcile(toleratingService(2, 1, time.Minute)))
	c.work()
	c.setAlive("n2", false)
	c.now = c.now.Add(10 * time.Second)
	if p := c.reconcile(toleratingService(2, 2, time.Minute)); !p.Empty() {
		t.Fatalf("rolling with a slot on a down node: %+v", p)
	}
	c.now = c.now.Add(time.Minute)
	p := c.reconcile(toleratingService(2, 2, time.Minute))
	if len(p.Lost) != 1 || len(p.Create) != 1 || p.Create[0].SpecVersion != 2 || len(p.Stop) != 0 {
		t.Fatalf("past the tolerance the lost slot gets version 2 and the other waits for it: %+v", p)
	}
}

// An instance that was not serving when its node went down is not
// replaced by a new version either: it may still be running there.
func TestReconcileKeepsFailingInstanceOnDownNode(t *testing.T) {
	c := newNodeSim(2)
	c.apply(c.reconcile(toleratingService(2, 1, time.Minute)))
	c.work()
	for _, in := range c.insts {
		if in.Node == "n2" {
			in.State, in.Healthy = state.StateBackoff, false
		}
	}
	c.setAlive("n2", false)
	p := c.reconcile(toleratingService(2, 2, time.Minute))
	if len(p.Stop) != 0 || len(p.Create) != 0 {
		t.Fatalf("within the tolerance nothing on the down node is replaced: %+v", p)
	}
}

// TestReconcileNodeFailures is a property test over a cluster whose nodes
// fail and return at random while the service is scaled and updated:
//   - never two live instances of the service share a slot;
//   - an instance is never placed on a down node;
//   - no live instance stays on a node down for longer than the tolerance;
//   - once every node is back and has reported, exactly `replicas` live
//     instances remain, one per slot, on the latest version, every other
//     record is gone, and exactly one container runs per slot.
func TestReconcileNodeFailures(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		nodeCount := rapid.IntRange(1, 4).Draw(rt, "nodes")
		c := newNodeSim(nodeCount)
		tolerance := rapid.SampledFrom([]time.Duration{0, 30 * time.Second, 5 * time.Minute}).Draw(rt, "tolerance")
		replicas := rapid.IntRange(0, 5).Draw(rt, "replicas")
		version := 1
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 7).Draw(rt, "action") {
			case 0:
				replicas = rapid.IntRange(0, 5).Draw(rt, "replicas")
			case 1:
				version++
			case 2:
				c.work()
			case 3:
				id := fmt.Sprintf("n%d", rapid.IntRange(1, nodeCount).Draw(rt, "node"))
				c.setAlive(id, c.nodes[id].Status != state.NodeReady)
			case 4:
				c.now = c.now.Add(time.Duration(rapid.IntRange(0, 120).Draw(rt, "seconds")) * time.Second)
			case 5:
				if rapid.IntRange(0, 9).Draw(rt, "long") == 0 {
					c.now = c.now.Add(ForgetLostAfter + tolerance)
				}
			case 6:
				// A returning worker's stale report: what it ran before it
				// saw the stop, written over the lost state.
				for _, in := range c.insts {
					if _, runs := c.containers[in.ID]; runs && in.Desired != state.DesiredRun && c.nodes[in.Node].Status == state.NodeReady {
						in.State, in.Healthy = state.StateRunning, true
					}
				}
			}
			s := toleratingService(replicas, version, tolerance)
			p := c.reconcile(s)
			for _, in := range p.Create {
				if c.nodes[in.Node].Status != state.NodeReady {
					rt.Fatalf("instance %s placed on %s node %s", in.ID, c.nodes[in.Node].Status, in.Node)
				}
			}
			c.apply(p)
			for slot, ins := range liveSlots(c.insts) {
				if len(ins) > 1 {
					rt.Fatalf("slot %d has %d live instances", slot, len(ins))
				}
			}
			for _, in := range c.insts {
				n := c.nodes[in.Node]
				if in.Desired == state.DesiredRun && n.Status == state.NodeDown && c.now.Sub(n.DownSince) >= tolerance {
					rt.Fatalf("live instance %s on node %s, down for %s (tolerance %s)", in.ID, n.ID, c.now.Sub(n.DownSince), tolerance)
				}
			}
		}

		// Every node comes back; workers and the controller go on.
		for id := range c.nodes {
			c.setAlive(id, true)
		}
		s := toleratingService(replicas, version, tolerance)
		for i := 0; i < 2*replicas+4; i++ {
			c.work()
			c.now = c.now.Add(time.Second)
			c.apply(c.reconcile(s))
		}
		c.work()
		c.apply(c.reconcile(s))
		c.work()
		live := liveSlots(c.insts)
		if len(live) != replicas || len(c.insts) != replicas {
			rt.Fatalf("want %d live instances and no other record, got %d live slots and %d records: %+v", replicas, len(live), len(c.insts), c.list())
		}
		for slot, ins := range live {
			if slot < 0 || slot >= replicas || len(ins) != 1 || ins[0].SpecVersion != version {
				rt.Fatalf("slot %d: %+v", slot, ins)
			}
		}
		perSlot := map[int]int{}
		for id := range c.containers {
			perSlot[c.insts[id].Slot]++
		}
		for slot, n := range perSlot {
			if n != 1 {
				rt.Fatalf("slot %d has %d running containers", slot, n)
			}
		}
		if len(c.containers) != replicas {
			rt.Fatalf("want %d containers, got %d", replicas, len(c.containers))
		}
	})
}
