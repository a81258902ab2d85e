package state

import (
	"testing"
	"time"
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
