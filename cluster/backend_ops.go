package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

var _ mcp.Operations = (*Backend)(nil)

func eventView(e *state.Event) api.EventRecord {
	return api.EventRecord{Seq: e.Seq, Time: e.Time, Type: e.Type, Service: e.Service, Instance: e.Instance, Node: e.Node, Message: e.Message}
}

// ListEvents returns the newest q.Limit events q selects, oldest first.
func (b *Backend) ListEvents(ctx context.Context, q mcp.EventQuery) (*api.EventList, error) {
	if q.Service != "" {
		if _, err := b.Store.Service(q.Service); err != nil && len(b.Store.Events(state.EventFilter{Service: q.Service, Limit: 1})) == 0 {
			return nil, err // neither a service nor one that had events
		}
	}
	all := b.Store.Events(state.EventFilter{Service: q.Service, Instance: q.Instance})
	out := &api.EventList{Events: []api.EventRecord{}}
	var keep []*state.Event
	for _, e := range all {
		if (q.Type == "" || strings.EqualFold(e.Type, q.Type)) && (q.Since.IsZero() || e.Time.After(q.Since)) {
			keep = append(keep, e)
		}
	}
	if q.Limit > 0 && len(keep) > q.Limit {
		keep, out.Truncated = keep[len(keep)-q.Limit:], true
	}
	for _, e := range keep {
		out.Events = append(out.Events, eventView(e))
	}
	return out, nil
}

// ClusterStatus summarises nodes, services and instances.
func (b *Backend) ClusterStatus(ctx context.Context) (*api.ClusterStatus, error) {
	nodes, err := b.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	raw, _ := b.Store.Nodes()
	byID := map[string]*state.Node{}
	for _, n := range raw {
		byID[n.ID] = n
	}
	services, _ := b.Store.Services()
	insts, idx := b.Store.Instances(state.InstanceFilter{})
	out := &api.ClusterStatus{Index: idx, Services: len(services), Instances: map[string]int{}, Nodes: []api.NodeStatus{}}
	for _, n := range nodes {
		ns := api.NodeStatus{Node: n, Eligible: true}
		if r := byID[n.ID]; r != nil {
			ns.Eligible, ns.Draining = state.Schedulable(r), state.Draining(r)
		}
		out.Nodes = append(out.Nodes, ns)
	}
	for _, s := range services {
		if !s.Removing {
			out.Desired += s.Spec.Replicas
		}
	}
	for _, in := range insts {
		if in.Desired != state.DesiredRun {
			if in.State == state.StateLost {
				out.Instances[state.StateLost]++ // on a down node, replaced elsewhere
				continue
			}
			out.Instances[state.StateStopping]++
			continue
		}
		out.Instances[in.State]++
		if in.State == state.StateRunning && in.Healthy {
			out.Running++
		}
	}
	return out, nil
}

// SetNodeScheduling marks a node (in)eligible; a drain also stops every
// live instance on it, in the same command, so the controller places them
// elsewhere (or reports them pending).
func (b *Backend) SetNodeScheduling(ctx context.Context, node string, eligible, drain bool) (*api.NodeSchedulingResult, error) {
	return b.setNodeScheduling(ctx, node, eligible, drain, 0)
}

// setNodeScheduling is SetNodeScheduling, conditional on the node's modify
// index when expect is not 0 (errdefs.ErrConflict otherwise).
func (b *Backend) setNodeScheduling(ctx context.Context, node string, eligible, drain bool, expect uint64) (*api.NodeSchedulingResult, error) {
	if _, err := b.Store.Node(node); err != nil {
		return nil, errdefs.WithHint(err, "list nodes with list_nodes")
	}
	mark := ""
	switch {
	case drain:
		mark = state.SchedDraining
	case !eligible:
		mark = state.SchedIneligible
	}
	res := &api.NodeSchedulingResult{Node: node, Eligible: mark == "", Draining: drain}
	ops := []state.Op{state.SetNodeScheduling{ID: node, Mark: mark, ExpectModifyIndex: expect}}
	now := time.Now().UTC()
	if drain {
		insts, _ := b.Store.Instances(state.InstanceFilter{Node: node})
		for _, in := range insts {
			if in.Desired != state.DesiredRun {
				continue
			}
			ops = append(ops, state.SetInstanceDesired{ID: in.ID, Desired: state.DesiredStop},
				state.AppendEvent{Event: state.Event{Time: now, Service: in.Service, Instance: in.ID, Node: node,
					Type: "Stopping", Message: fmt.Sprintf("node %s is being drained", node)}})
			res.Stopped++
		}
	}
	msg := map[string]string{"": "node %s is eligible for new instances",
		state.SchedIneligible: "node %s is ineligible: no new instances are placed on it; running ones stay",
		state.SchedDraining:   "node %s is drained: no new instances are placed on it"}[mark]
	res.Message = fmt.Sprintf(msg, node)
	if drain {
		res.Message += fmt.Sprintf("; %d instance(s) stopped, to be placed on other nodes (pending while no node can take them)", res.Stopped)
	}
	ops = append(ops, state.AppendEvent{Event: state.Event{Time: now, Node: node, Type: "NodeScheduling", Message: res.Message}})
	if _, err := b.Store.Apply(ctx, ops...); err != nil {
		return nil, err
	}
	return res, nil
}
