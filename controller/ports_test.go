package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

func hostPortService(replicas, version int) *state.Service {
	s := svc(replicas, version)
	s.Spec.Ports = []spec.Port{{Name: "http", Port: 80, HostPort: 18080, Protocol: "tcp"}}
	return s
}

// A fixed host port fits once per node: the second replica on a single
// node stays pending with a reason naming the port and the node.
func TestReconcileFixedHostPortPending(t *testing.T) {
	s := hostPortService(2, 1)
	nodes := []*state.Node{{ID: "n1", Status: "ready", CPU: 4000, Memory: 8 << 30}}
	cands, usage := Candidates(nodes, nil, []*state.Service{s})
	p := Reconcile(Input{Name: "web", Service: s, Nodes: cands, Usage: usage, Now: time.Now()})
	if len(p.Create) != 1 {
		t.Fatalf("want 1 instance placed, got %d", len(p.Create))
	}
	for _, want := range []string{"n1", "18080/tcp"} {
		if !strings.Contains(p.Pending, want) {
			t.Errorf("pending reason %q does not name %q", p.Pending, want)
		}
	}
}

// Candidates: a running instance and one still stopping hold their fixed
// host ports; a stopped one does not.
func TestCandidatesHoldHostPortsUntilStopped(t *testing.T) {
	s := hostPortService(1, 2)
	nodes := []*state.Node{{ID: "n1", Status: "ready"}}
	for _, tc := range []struct {
		desired, state string
		held           bool
	}{
		{state.DesiredRun, state.StateRunning, true},
		{state.DesiredStop, state.StateStopping, true},
		{state.DesiredStop, state.StateStopped, false},
	} {
		old := &state.Instance{ID: "web-0-old", Service: "web", Node: "n1", SpecVersion: 1, Desired: tc.desired,
			InstanceStatus: state.InstanceStatus{State: tc.state}}
		_, usage := Candidates(nodes, []*state.Instance{old}, []*state.Service{s})
		held := usage["n1"] != nil && usage["n1"].HostPorts["18080/tcp"] == "web"
		if held != tc.held {
			t.Errorf("%s/%s: port held %v, want %v", tc.desired, tc.state, held, tc.held)
		}
	}
	if r := Request("web", nil); len(r.HostPorts) != 0 || r.CPU != 0 {
		t.Errorf("a removed service asks for nothing, got %+v", r)
	}
}

// A fixed host_port that another service's instance got as its dynamic
// port (the two overlap when host_port is inside the servers' port range)
// leaves the new instance pending, naming the port and its holder, instead
// of placing it on that node to crash-loop on the conflict.
func TestFixedHostPortAvoidsAPublishedDynamicPort(t *testing.T) {
	fixed := hostPortService(1, 1)
	dyn := svc(1, 1)
	dyn.Name = "dyn"
	dyn.Spec.Name = "dyn"
	dyn.Spec.Ports = []spec.Port{{Name: "http", Port: 8080}} // dynamic
	nodes := []*state.Node{{ID: "n1", Status: "ready", CPU: 4000, Memory: 8 << 30}}
	running := &state.Instance{ID: "dyn-0-aaaaaa", Service: "dyn", Node: "n1", SpecVersion: 1, Desired: state.DesiredRun,
		InstanceStatus: state.InstanceStatus{State: state.StateRunning, Ports: map[string]int{"http": 18080}}}
	cands, usage := Candidates(nodes, []*state.Instance{running}, []*state.Service{fixed, dyn})
	p := Reconcile(Input{Name: "web", Service: fixed, Nodes: cands, Usage: usage, Now: time.Now()})
	if len(p.Create) != 0 {
		t.Fatalf("placed %d instances on the node whose port 18080 is published", len(p.Create))
	}
	for _, want := range []string{"n1", "18080/tcp", `"dyn"`} {
		if !strings.Contains(p.Pending, want) {
			t.Errorf("pending reason %q does not name %s", p.Pending, want)
		}
	}
	// Once that instance has stopped, the port is free.
	running.State = state.StateStopped
	cands, usage = Candidates(nodes, []*state.Instance{running}, []*state.Service{fixed, dyn})
	if p := Reconcile(Input{Name: "web", Service: fixed, Nodes: cands, Usage: usage, Now: time.Now()}); len(p.Create) != 1 {
		t.Errorf("port free again: placed %d, want 1 (pending %q)", len(p.Create), p.Pending)
	}
}
