package controller

import (
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/gantry-dev/gantry/scheduler"
	"github.com/gantry-dev/gantry/state"
)

// Failed nodes.
//
// A node that fails its membership checks is marked down
// (NodeStatusChanges, on the leader). Its instances keep counting toward
// their service's replicas for the service's disconnect.replace_after
// (default 0s); then Reconcile marks them lost, desired stop and observed
// StateLost in one command, which frees their slots, and places the slots
// again on ready nodes. When the node returns, its worker sees the
// desired stop, stops and removes the container and reports it stopped;
// the record is then deleted like any stopped instance. A node that never
// returns has its lost records forgotten after ForgetLostAfter. At every
// step a slot has at most one live (desired run) instance, so a returning
// node never adds a duplicate.

// ForgetLostAfter is how long, past a service's replace_after, the record
// of a lost instance is kept for its node to come back and report it
// stopped. After that the record is deleted; if the node comes back later,
// its worker removes the container of an instance no longer in state.
const ForgetLostAfter = 24 * time.Hour

// NodeStatusChanges turns membership observations into node writes: a node
// that alive says is not alive and is not yet down becomes down (DownSince
// now), a down node that is alive becomes ready again. alive is keyed by
// node ID (the name a node gossips under); a node missing from it is left
// as it is, so a caller that has not heard about a node yet does not fail
// it. Each change comes with an event. The result is ready for Apply on
// the leader; it is empty when nothing changes.
func NodeStatusChanges(nodes []*state.Node, alive map[string]bool, now time.Time) []state.Op {
	sorted := append([]*state.Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var ops []state.Op
	for _, n := range sorted {
		up, seen := alive[n.ID]
		if !seen {
			continue
		}
		down := n.Status == state.NodeDown
		if up != down {
			continue // no change
		}
		c := *n
		c.Labels = maps.Clone(n.Labels)
		ev := state.Event{Time: now, Node: n.ID}
		if up {
			c.Status, c.DownSince = state.NodeReady, time.Time{}
			ev.Type = "NodeReady"
			ev.Message = fmt.Sprintf("node %s is back", n.ID)
			if !n.DownSince.IsZero() {
				ev.Message += fmt.Sprintf(" after %s down; its worker stops the instances that were replaced meanwhile", now.Sub(n.DownSince).Round(time.Second))
			}
		} else {
			c.Status, c.DownSince = state.NodeDown, now
			ev.Type = "NodeDown"
			ev.Message = fmt.Sprintf("node %s failed its membership checks; its instances are replaced after each service's disconnect.replace_after", n.ID)
		}
		ops = append(ops, state.PutNode{Node: c}, state.AppendEvent{Event: ev})
	}
	return ops
}

// NodeDownSince returns since when the node n is down (zero if it is not): its
// DownSince, or for a record written before that field existed, the
// time of its last write.
func NodeDownSince(n *state.Node) time.Time {
	if n.Status != state.NodeDown {
		return time.Time{}
	}
	if !n.DownSince.IsZero() {
		return n.DownSince
	}
	return n.SeenAt
}

// ReplaceAfter is the disconnect tolerance of svc (nil: removed, 0).
func ReplaceAfter(svc *state.Service) time.Duration {
	if svc == nil {
		return 0
	}
	return max(svc.Spec.Disconnect.ReplaceAfter.D(), 0)
}

// DownReason explains an instance on a node that is down, for explain:
// "node n2 down since 2026-12-03T12:00:01Z; replaced after 30s (in 12s)".
func DownReason(node string, since time.Time, replaceAfter time.Duration, now time.Time) string {
	s := fmt.Sprintf("node %s down since %s; replaced after %s", node, since.UTC().Format(time.RFC3339), replaceAfter)
	if left := since.Add(replaceAfter).Sub(now); left > 0 {
		s += fmt.Sprintf(" (in %s)", left.Round(time.Second))
	} else {
		s += " (due now)"
	}
	return s
}

// lostMessage is the observed message of an instance marked lost.
func lostMessage(inst *state.Instance, since time.Time, replaceAfter time.Duration) string {
	return fmt.Sprintf("node %s down since %s, longer than disconnect.replace_after %s: slot %d is placed again on another node; this record goes once the node is back and has stopped the container, or after %s",
		inst.Node, since.UTC().Format(time.RFC3339), replaceAfter, inst.Slot, replaceAfter+ForgetLostAfter)
}

// isLost reports whether an instance was marked lost and its node has not
// reported since (a report replaces StateLost with what the node sees).
func isLost(in *state.Instance) bool {
	return in.State == state.StateLost && in.Desired != state.DesiredRun
}

// nodeView is what Reconcile knows of the nodes: which exist, and since
// when each down one is down.
type nodeView struct {
	known map[string]bool
	down  map[string]time.Time
}

func viewNodes(nodes []scheduler.Node) nodeView {
	v := nodeView{known: make(map[string]bool, len(nodes)), down: map[string]time.Time{}}
	for _, n := range nodes {
		v.known[n.ID] = true
		if !n.Ready && !n.DownSince.IsZero() {
			v.down[n.ID] = n.DownSince
		}
	}
	return v
}

// countNotLost counts the instances that are not lost: a service being
// removed is deleted once those are gone, without waiting for a down node
// to report its lost ones (they are cleaned up like any lost instance).
func countNotLost(insts []*state.Instance) int {
	n := 0
	for _, in := range insts {
		if !isLost(in) {
			n++
		}
	}
	return n
}
