package state

import (
	"context"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// A scheduling change made from a plan applies only to the node record the
// plan saw.
func TestSetNodeSchedulingExpectModifyIndex(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutNode{Node: Node{ID: "n1", Name: "n1"}})
	n, err := s.Node("n1")
	if err != nil {
		t.Fatal(err)
	}
	seen := n.ModifyIndex
	apply(t, s, SetNodeScheduling{ID: "n1", Mark: SchedIneligible})
	_, err = s.Apply(context.Background(), SetNodeScheduling{ID: "n1", Mark: SchedDraining, ExpectModifyIndex: seen})
	if !errdefs.IsConflict(err) {
		t.Fatalf("stale expect: %v, want ErrConflict", err)
	}
	if n, _ := s.Node("n1"); Draining(n) {
		t.Fatal("a stale change was applied")
	}
	n, _ = s.Node("n1")
	apply(t, s, SetNodeScheduling{ID: "n1", Mark: SchedDraining, ExpectModifyIndex: n.ModifyIndex})
	if n, _ := s.Node("n1"); !Draining(n) {
		t.Fatal("a current change was not applied")
	}
}
