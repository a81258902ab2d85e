package state

import (
	"fmt"
	"maps"

	"github.com/gantry-dev/gantry/errdefs"
)

// Node scheduling: an operator can mark a node ineligible (no new
// instances) or drain it (ineligible, and its instances are stopped so the
// controller places them elsewhere). The mark is kept in the node's labels
// under LabelScheduling, so it is replicated, snapshotted and shown with
// the node, and the FSM carries it over when a node re-registers.

// LabelScheduling is the node label holding its scheduling mark.
const LabelScheduling = "gantry.dev/scheduling"

// Scheduling marks.
const (
	SchedIneligible = "ineligible"
	SchedDraining   = "draining"
)

// Schedulable reports whether the scheduler may place new instances on n
// (ignoring its status and capacity).
func Schedulable(n *Node) bool { return n.Labels[LabelScheduling] == "" }

// Draining reports whether n was drained.
func Draining(n *Node) bool { return n.Labels[LabelScheduling] == SchedDraining }

// SetNodeScheduling sets a node's scheduling mark: Mark is "" (eligible),
// SchedIneligible or SchedDraining. It does not touch instances: a drain
// also stops the node's instances in the same command. A missing node fails
// with errdefs.ErrNotFound.
type SetNodeScheduling struct {
	ID   string `json:"id"`
	Mark string `json:"mark,omitempty"`
	// ExpectModifyIndex, when not 0, makes the change conditional: it fails
	// with errdefs.ErrConflict unless the node's ModifyIndex is this (an
	// applied plan, made against that record).
	ExpectModifyIndex uint64 `json:"expect_modify_index,omitempty"`
}

func (o SetNodeScheduling) wrap() wireOp { return wireOp{SetNodeScheduling: &o} }

func (o SetNodeScheduling) validate() error {
	switch {
	case o.ID == "":
		return invalid("set node scheduling: id is empty")
	case o.Mark != "" && o.Mark != SchedIneligible && o.Mark != SchedDraining:
		return invalid("set node %q scheduling: mark %q is unknown (use %q, %q or empty)", o.ID, o.Mark, SchedIneligible, SchedDraining)
	}
	return nil
}

func (a *applier) setNodeScheduling(op SetNodeScheduling) error {
	old, _ := must(a.txn.First(tableNodes, indexID, op.ID)).(*Node)
	if old == nil {
		return errdefs.WithHint(fmt.Errorf("node %q: %w", op.ID, errdefs.ErrNotFound), "list nodes with list_nodes")
	}
	if op.ExpectModifyIndex != 0 && old.ModifyIndex != op.ExpectModifyIndex {
		return fmt.Errorf("node %q: expected modify index %d, found %d: %w", op.ID, op.ExpectModifyIndex, old.ModifyIndex, errdefs.ErrConflict)
	}
	n := *old
	n.Labels = maps.Clone(old.Labels)
	if op.Mark == "" {
		delete(n.Labels, LabelScheduling)
	} else {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[LabelScheduling] = op.Mark
	}
	n.ModifyIndex = a.index
	a.insert(tableNodes, &n)
	return nil
}

// keepScheduling carries old's scheduling mark over to n when a node is
// put again (on restart) without one.
func keepScheduling(n, old *Node) {
	if old == nil || old.Labels[LabelScheduling] == "" || n.Labels[LabelScheduling] != "" {
		return
	}
	n.Labels = maps.Clone(n.Labels)
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[LabelScheduling] = old.Labels[LabelScheduling]
}

func (a *applier) node(id string) *Node {
	n, _ := must(a.txn.First(tableNodes, indexID, id)).(*Node)
	return n
}
