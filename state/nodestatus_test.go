package state

import (
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// A node marked down keeps the time it first went down across repeated
// down writes (the disconnect tolerance runs from it), and loses it when
// it is ready again.
func TestPutNodeDownSince(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1"}})
	if n, _ := s.Node("n1"); n.Status != NodeReady || !n.DownSince.IsZero() {
		t.Fatalf("new node: status %q, down since %v", n.Status, n.DownSince)
	}

	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1", Status: NodeDown}})
	n, _ := s.Node("n1")
	if n.Status != NodeDown || n.DownSince.IsZero() {
		t.Fatalf("down without a time: status %q, down since %v (want the entry's time)", n.Status, n.DownSince)
	}
	first := n.DownSince

	later := first.Add(time.Hour)
	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1", Status: NodeDown, DownSince: later}})
	if n, _ := s.Node("n1"); !n.DownSince.Equal(first) {
		t.Fatalf("down again: down since %v, want the first %v kept", n.DownSince, first)
	}

	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1", Status: NodeReady, DownSince: later}})
	if n, _ := s.Node("n1"); n.Status != NodeReady || !n.DownSince.IsZero() {
		t.Fatalf("back: status %q, down since %v, want ready and zero", n.Status, n.DownSince)
	}

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1", Status: NodeDown, DownSince: at}})
	if n, _ := s.Node("n1"); !n.DownSince.Equal(at) {
		t.Fatalf("down with a time: down since %v, want %v", n.DownSince, at)
	}
}

// A deploy that changes only disconnect.replace_after makes a new version
// (in history, for rollbacks) but keeps the running instances.
func TestDisconnectChangeKeepsInstances(t *testing.T) {
	s := openStore(t, t.TempDir())
	sp := webSpec("busybox:1", 1)
	apply(t, s, PutService{Service: Service{Spec: sp}})
	apply(t, s, PutInstance{Instance: Instance{ID: "web-0-a", Service: "web", Slot: 0, SpecVersion: 1, Node: "n", Desired: DesiredRun}})
	sp.Disconnect = spec.Disconnect{ReplaceAfter: spec.Duration(time.Minute)}
	apply(t, s, PutService{Service: Service{Spec: sp}})
	svc, _ := s.Service("web")
	in, _ := s.Instance("web-0-a")
	if svc.Version != 2 || in.SpecVersion != 2 {
		t.Fatalf("after a disconnect change: service version %d, instance on version %d; want both 2", svc.Version, in.SpecVersion)
	}
	sp.Image = "busybox:2"
	apply(t, s, PutService{Service: Service{Spec: sp}})
	if in, _ := s.Instance("web-0-a"); in.SpecVersion != 2 {
		t.Fatalf("an image change must leave the instance to be replaced, got version %d", in.SpecVersion)
	}
}
