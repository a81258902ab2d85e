package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// nodePlanKind reports whether req is about a node rather than a service.
func nodePlanKind(req mcp.PlanRequest) bool {
	return req.Kind == mcp.PlanDrain || req.Kind == mcp.PlanEligibility
}

// planNode computes what draining a node or changing its eligibility would
// do, changing nothing: the node's live instances a drain stops, and for
// every service one controller pass over the changed cluster (the node's
// new mark, the drained instances gone) that shows where replacements or
// pending instances would be placed, or why they would stay pending. The
// plan is based on the node's modify index.
func (b *Backend) planNode(req mcp.PlanRequest) (*api.Plan, error) {
	node, err := b.Store.Node(req.Node)
	if err != nil {
		return nil, errdefs.WithHint(err, "list nodes with list_nodes")
	}
	mark := nodeMark(req)
	p := &api.Plan{Action: api.ActionSetEligibility, Node: req.Node, Index: b.Store.Index(), Base: node.ModifyIndex,
		Create: []api.PlannedInstance{}, Replace: []api.PlannedInstance{}, Stop: []api.PlannedInstance{}}
	if req.Kind == mcp.PlanDrain {
		p.Action = api.ActionDrain
	}
	nodes, _ := b.Store.Nodes()
	all, _ := b.Store.Instances(state.InstanceFilter{})
	services, _ := b.Store.Services()

	// The cluster as it would be: copies, never the store's records.
	after := make([]*state.Node, 0, len(nodes))
	for _, n := range nodes {
		cp := *n
		if n.ID == req.Node {
			cp.Labels = maps.Clone(n.Labels)
			if cp.Labels == nil {
				cp.Labels = map[string]string{}
			}
			cp.Labels[state.LabelScheduling] = mark
			if mark == "" {
				delete(cp.Labels, state.LabelScheduling)
			}
		}
		after = append(after, &cp)
	}
	insts := make([]*state.Instance, 0, len(all))
	grouped := map[string][]*state.Instance{}
	for _, in := range all {
		cp := *in
		if req.Kind == mcp.PlanDrain && in.Node == req.Node && in.Desired == state.DesiredRun {
			p.Stop = append(p.Stop, api.PlannedInstance{ID: in.ID, Service: in.Service, Slot: in.Slot, Node: in.Node, FromVersion: in.SpecVersion})
			// The plan shows the outcome: stopped, its resources and ports free.
			cp.Desired, cp.State = state.DesiredStop, state.StateStopped
		}
		insts = append(insts, &cp)
		grouped[in.Service] = append(grouped[in.Service], &cp)
	}
	sort.Slice(p.Stop, func(i, j int) bool { return p.Stop[i].ID < p.Stop[j].ID })

	cands, usage := controller.Candidates(after, insts, services)
	var pending []string
	now := time.Now().UTC()
	for _, svc := range services {
		if svc.Removing {
			continue
		}
		rp := controller.Reconcile(controller.Input{Name: svc.Name, Service: svc, Instances: grouped[svc.Name], Nodes: cands, Usage: usage, Now: now,
			NewID: func(service string, slot int) string { return fmt.Sprintf("%s-%d-planned", service, slot) }})
		for _, c := range rp.Create {
			p.Create = append(p.Create, api.PlannedInstance{Service: svc.Name, Slot: c.Slot, Node: c.Node, ToVersion: c.SpecVersion})
		}
		if rp.Pending != "" {
			pending = append(pending, rp.Pending)
		}
	}
	p.Pending = strings.Join(pending, "; ")
	p.Summary = nodeSummary(p, node, mark)
	return p, nil
}

// nodeMark is the scheduling mark req sets on its node.
func nodeMark(req mcp.PlanRequest) string {
	switch {
	case req.Kind == mcp.PlanDrain:
		return state.SchedDraining
	case !req.Eligible:
		return state.SchedIneligible
	}
	return ""
}

func nodeSummary(p *api.Plan, node *state.Node, mark string) string {
	var b strings.Builder
	switch mark {
	case state.SchedDraining:
		fmt.Fprintf(&b, "drain node %s", p.Node)
	case state.SchedIneligible:
		fmt.Fprintf(&b, "mark node %s ineligible for new instances (running ones stay)", p.Node)
	default:
		fmt.Fprintf(&b, "mark node %s eligible for new instances", p.Node)
	}
	if node.Labels[state.LabelScheduling] == mark {
		b.WriteString(" (it already is)")
	}
	var parts []string
	if n := len(p.Stop); n > 0 {
		ids := make([]string, 0, n)
		for _, s := range p.Stop {
			ids = append(ids, s.ID)
		}
		parts = append(parts, fmt.Sprintf("%d instance%s to stop (%s)", n, plural(n), strings.Join(ids, ", ")))
	}
	if n := len(p.Create); n > 0 {
		where := make([]string, 0, n)
		for _, c := range p.Create {
			where = append(where, fmt.Sprintf("%s slot %d on node %s", c.Service, c.Slot, c.Node))
		}
		parts = append(parts, fmt.Sprintf("%d to place: %s", n, strings.Join(where, ", ")))
	}
	if len(parts) == 0 {
		parts = append(parts, "no instance changes")
	}
	fmt.Fprintf(&b, ": %s", strings.Join(parts, ", "))
	if p.Pending != "" {
		fmt.Fprintf(&b, "; some instances would stay pending: %s", p.Pending)
	}
	return b.String()
}

// applyNodePlan applies a node plan if the node's record and, for a drain,
// the set of live instances on it are as the plan saw them.
func (b *Backend) applyNodePlan(ctx context.Context, req mcp.PlanRequest, plan *api.Plan) (*api.ApplyPlanResult, error) {
	node, err := b.Store.Node(req.Node)
	if err != nil {
		return nil, errdefs.WithHint(err, "list nodes with list_nodes")
	}
	var what string
	if node.ModifyIndex != plan.Base {
		what = fmt.Sprintf("node %s changed at index %d (the plan saw index %d)", req.Node, node.ModifyIndex, plan.Base)
	} else if req.Kind == mcp.PlanDrain {
		insts, _ := b.Store.Instances(state.InstanceFilter{Node: req.Node})
		var now, saw []string
		for _, in := range insts {
			if in.Desired == state.DesiredRun {
				now = append(now, in.ID)
			}
		}
		for _, s := range plan.Stop {
			saw = append(saw, s.ID)
		}
		sort.Strings(now)
		if !slices.Equal(now, saw) {
			what = fmt.Sprintf("the instances on node %s changed: the plan would stop [%s], now [%s] run there",
				req.Node, strings.Join(saw, ", "), strings.Join(now, ", "))
		}
	}
	if what != "" {
		if fresh, err := b.planNode(req); err == nil {
			what += "; planning again now would " + fresh.Summary
		}
		return nil, errdefs.WithHint(fmt.Errorf("plan %s for node %s is stale: %s: %w", plan.ID, req.Node, what, errdefs.ErrConflict),
			"make a new plan with dry_run true, check it, and apply that one")
	}
	res, err := b.setNodeScheduling(ctx, req.Node, req.Eligible, req.Kind == mcp.PlanDrain, plan.Base)
	if errdefs.IsConflict(err) {
		// The node changed between the check above and the command.
		return nil, errdefs.WithHint(fmt.Errorf("plan %s for node %s is stale: node %s changed since the plan was made: %w", plan.ID, req.Node, req.Node, errdefs.ErrConflict),
			"make a new plan with dry_run true, check it, and apply that one")
	}
	if err != nil {
		return nil, err
	}
	return &api.ApplyPlanResult{Action: plan.Action, Index: b.Store.Index(), Message: res.Message}, nil
}
