package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/scheduler"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

var (
	_ mcp.Planner   = (*Backend)(nil)
	_ mcp.Histories = (*Backend)(nil)
)

// target is the service record a plan leads to: nil for a removal.
type target struct {
	svc     *state.Service // current record, nil when absent
	next    *state.Service // record after the change; nil when removed
	action  string
	changes []string
	index   uint64
}

// Plan computes what req would do, changing nothing: the spec fields that
// change and, by running the controller's Reconcile over the current state
// until it settles, the instances created, replaced (rolling, one at a
// time) and stopped.
func (b *Backend) Plan(ctx context.Context, req mcp.PlanRequest) (*api.Plan, error) {
	if nodePlanKind(req) {
		return b.planNode(req)
	}
	t, err := b.target(req)
	if err != nil {
		return nil, err
	}
	insts, _ := b.Store.Instances(state.InstanceFilter{})
	nodes, _ := b.Store.Nodes()
	services, _ := b.Store.Services()
	p := &api.Plan{Action: t.action, Service: req.Service, Changes: t.changes, Index: t.index,
		Create: []api.PlannedInstance{}, Replace: []api.PlannedInstance{}, Stop: []api.PlannedInstance{}}
	if t.svc != nil {
		p.FromVersion, p.Base = t.svc.Version, t.svc.ModifyIndex
	}
	if t.next != nil {
		p.ToVersion = t.next.Version
	}
	if t.action != api.ActionNone {
		if t.svc != nil && t.next != nil && t.next.Version != t.svc.Version && t.action != api.ActionRestart {
			b.keepSameSpec(req.Service, t.next, insts)
		}
		simulate(p, req.Service, t.next, insts, nodes, services)
	}
	p.Summary = summary(p, t)
	return p, nil
}

// keepSameSpec moves the instances that already run next's spec to its
// version, as the state does when the change is applied (a rollback keeps
// the instances of the version it goes back to).
func (b *Backend) keepSameSpec(name string, next *state.Service, insts []*state.Instance) {
	for _, in := range insts {
		if in.Service != name || in.Desired != state.DesiredRun || in.SpecVersion == next.Version {
			continue
		}
		if old, err := b.Store.SpecAt(name, in.SpecVersion); err == nil && state.SameSpecForInstances(old.Spec, next.Spec) {
			in.SpecVersion = next.Version
		}
	}
}

// target reads the current service and works out the record req leads to.
func (b *Backend) target(req mcp.PlanRequest) (*target, error) {
	t := &target{index: b.Store.Index()}
	cur, err := b.Store.Service(req.Service)
	switch {
	case errdefs.IsNotFound(err) && req.Kind == mcp.PlanDeploy:
	case err != nil:
		return nil, err
	case cur.Removing && req.Kind != mcp.PlanRemove:
		return nil, removingErr(req.Service)
	default:
		t.svc = cur
	}
	switch req.Kind {
	case mcp.PlanDeploy:
		if req.Spec == nil {
			return nil, fmt.Errorf("plan deploy of %q: no spec: %w", req.Service, errdefs.ErrInvalid)
		}
		if err := req.Spec.Validate(); err != nil {
			return nil, err
		}
		if err := b.checkSecretRefs(req.Spec); err != nil {
			return nil, err
		}
		if cur == nil {
			t.action = api.ActionCreate
			t.next = &state.Service{Name: req.Spec.Name, Spec: *req.Spec, Version: 1}
			return t, nil
		}
		return t.withSpec(*req.Spec, api.ActionUpdate), nil
	case mcp.PlanScale:
		if req.Replicas < 0 || req.Replicas > 1000 {
			return nil, errdefs.WithHint(fmt.Errorf("replicas %d out of range: %w", req.Replicas, errdefs.ErrInvalid), "use 0 to 1000")
		}
		s := cur.Spec
		s.Replicas = req.Replicas
		return t.withSpec(s, api.ActionScale), nil
	case mcp.PlanRemove:
		t.action = api.ActionRemove
		if cur.Removing {
			t.action = api.ActionNone
			t.next = cur
		}
		return t, nil
	case mcp.PlanRestart:
		t.action = api.ActionRestart
		next := *cur
		next.Version++
		t.next = &next
		return t, nil
	case mcp.PlanRollback:
		old, err := b.Store.SpecAt(req.Service, req.Version)
		if err != nil {
			return nil, err
		}
		s := old.Spec
		s.Replicas = cur.Spec.Replicas // a rollback restores the spec, not the scale
		if err := b.checkSecretRefs(&s); err != nil {
			return nil, err
		}
		return t.withSpec(s, api.ActionRollback), nil
	}
	return nil, fmt.Errorf("plan kind %q is unknown: %w", req.Kind, errdefs.ErrInvalid)
}

// withSpec sets t.next to the current record with spec s, bumping the
// version unless only replicas change.
func (t *target) withSpec(s spec.Service, action string) *target {
	next := *t.svc
	next.Spec = s
	t.changes = spec.Changes(&t.svc.Spec, &s)
	switch {
	case len(t.changes) == 0:
		action = api.ActionNone
	case len(t.changes) == 1 && t.changes[0] == "replicas":
		if action == api.ActionUpdate {
			action = api.ActionScale
		}
	default:
		next.Version++
	}
	t.action, t.next = action, &next
	return t
}

// simulate runs Reconcile for the service as the controller would, each
// pass assuming the instances it creates become ready and those it stops
// go away, until nothing changes: the outcome of a rolling update.
func simulate(p *api.Plan, name string, next *state.Service, all []*state.Instance, nodes []*state.Node, services []*state.Service) {
	cands, usage := controller.Candidates(nodes, all, services)
	byName := map[string]*state.Service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	stored := byName[name] // the record Candidates counted this service's instances by
	for _, in := range all {
		// An instance already being stopped frees its host ports once
		// stopped: the plan shows the outcome, not the wait.
		if in.Desired != state.DesiredRun && in.State != state.StateStopped {
			scheduler.ReleasePorts(usage, in.Node, in.Service, controller.Request(in.Service, byName[in.Service]).HostPorts)
		}
	}
	var cur []*state.Instance
	for _, in := range all {
		if in.Service != name {
			continue
		}
		if in.Desired == state.DesiredRun {
			// Assume what runs now becomes ready: the plan shows the
			// outcome, not the wait.
			in.State, in.Healthy = state.StateRunning, true
		}
		cur = append(cur, in)
	}
	replaced := map[int]api.PlannedInstance{}
	real := map[string]bool{}
	for _, in := range cur {
		real[in.ID] = true
	}
	now := time.Now().UTC()
	seq := uint64(1 << 62)
	for pass := 0; pass < 2*(len(cur)+1000); pass++ {
		rp := controller.Reconcile(controller.Input{Name: name, Service: next, Instances: cur, Nodes: cands, Usage: usage, Now: now,
			NewID: func(service string, slot int) string { return fmt.Sprintf("%s-%d-planned", service, slot) }})
		p.Pending = rp.Pending
		if len(rp.Create) == 0 && len(rp.Stop) == 0 && len(rp.Lost) == 0 {
			break
		}
		stopped := map[string]bool{}
		for _, id := range rp.Stop {
			stopped[id] = true
		}
		for _, in := range rp.Lost { // on a node down past the tolerance: replaced too
			stopped[in.ID] = true
		}
		kept := cur[:0:0]
		for _, in := range cur {
			if !stopped[in.ID] {
				kept = append(kept, in)
				continue
			}
			if real[in.ID] {
				scheduler.Release(usage, in.Node, controller.Request(name, stored))
			} else {
				scheduler.Release(usage, in.Node, controller.Request(name, next))
			}
			if !real[in.ID] {
				continue
			}
			pi := api.PlannedInstance{ID: in.ID, Slot: in.Slot, Node: in.Node, FromVersion: in.SpecVersion}
			if next != nil && in.Slot < next.Spec.Replicas && in.SpecVersion != next.Version {
				replaced[in.Slot] = pi
			} else {
				p.Stop = append(p.Stop, pi)
			}
		}
		cur = kept
		for _, c := range rp.Create {
			c.State, c.Healthy = state.StateRunning, true
			seq++
			c.CreateIndex = seq
			cur = append(cur, c)
			if old, ok := replaced[c.Slot]; ok {
				old.ToVersion, old.Node = c.SpecVersion, c.Node
				p.Replace = append(p.Replace, old)
				delete(replaced, c.Slot)
				continue
			}
			p.Create = append(p.Create, api.PlannedInstance{Slot: c.Slot, Node: c.Node, ToVersion: c.SpecVersion})
		}
	}
	for _, old := range replaced { // could not be placed again
		p.Replace = append(p.Replace, old)
	}
}

func summary(p *api.Plan, t *target) string {
	var b strings.Builder
	switch p.Action {
	case api.ActionNone:
		fmt.Fprintf(&b, "no change to service %q (version %d)", p.Service, p.FromVersion)
		if t.svc != nil && t.svc.Removing {
			b.WriteString(": it is already being removed")
		}
		return b.String()
	case api.ActionCreate:
		fmt.Fprintf(&b, "create service %q at version 1", p.Service)
	case api.ActionUpdate, api.ActionRollback:
		fmt.Fprintf(&b, "%s service %q from version %d to %d", p.Action, p.Service, p.FromVersion, p.ToVersion)
	case api.ActionScale:
		fmt.Fprintf(&b, "scale service %q from %d to %d replicas", p.Service, t.svc.Spec.Replicas, t.next.Spec.Replicas)
	case api.ActionRestart:
		fmt.Fprintf(&b, "restart service %q (version %d to %d, same spec)", p.Service, p.FromVersion, p.ToVersion)
	case api.ActionRemove:
		fmt.Fprintf(&b, "remove service %q", p.Service)
	}
	if len(p.Changes) > 0 && p.Action != api.ActionScale {
		fmt.Fprintf(&b, " (changed: %s)", strings.Join(p.Changes, ", "))
	}
	var parts []string
	if n := len(p.Create); n > 0 {
		parts = append(parts, fmt.Sprintf("%d instance%s to create", n, plural(n)))
	}
	if n := len(p.Replace); n > 0 {
		parts = append(parts, fmt.Sprintf("%d to replace one at a time, each once the others are ready", n))
	}
	if n := len(p.Stop); n > 0 {
		parts = append(parts, fmt.Sprintf("%d to stop", n))
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

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ApplyPlan applies req if the service is unchanged since plan was made.
func (b *Backend) ApplyPlan(ctx context.Context, req mcp.PlanRequest, plan *api.Plan) (*api.ApplyPlanResult, error) {
	if nodePlanKind(req) {
		return b.applyNodePlan(ctx, req, plan)
	}
	cur, err := b.Store.Service(req.Service)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	var now uint64
	if cur != nil {
		now = cur.ModifyIndex
	}
	if now != plan.Base {
		return nil, b.stale(req, plan, cur)
	}
	t, err := b.target(req)
	if err != nil {
		return nil, err
	}
	res := &api.ApplyPlanResult{Action: t.action, Service: req.Service, Version: plan.FromVersion}
	if t.next != nil {
		res.Version = t.next.Version
	}
	if t.action == api.ActionNone {
		res.Message = plan.Summary + "; nothing to do"
		res.Index = b.Store.Index()
		return res, nil
	}
	at := time.Now().UTC()
	var op state.Op
	evType := map[string]string{api.ActionCreate: "Deployed", api.ActionUpdate: "Deployed", api.ActionScale: "Scaled",
		api.ActionRemove: "Removing", api.ActionRestart: "Restarting", api.ActionRollback: "RolledBack"}[t.action]
	switch t.action {
	case api.ActionRemove:
		rec := *cur
		rec.Removing = true
		op = state.PutService{Service: rec, ExpectModifyIndex: plan.Base}
	case api.ActionRestart:
		op = state.RestartService{Name: req.Service, ExpectModifyIndex: plan.Base}
	default:
		rec := *t.next
		rec.UpdatedAt = at
		if cur == nil {
			rec.CreatedAt = at
		}
		put := state.PutService{Service: rec, ExpectModifyIndex: plan.Base}
		if t.action == api.ActionRollback {
			put.Cause = fmt.Sprintf("rollback to version %d", req.Version)
		}
		op = put
	}
	res.Message = plan.Summary
	ev := state.Event{Time: at, Service: req.Service, Type: evType, Message: plan.Summary}
	ops := []state.Op{op, state.AppendEvent{Event: ev}}
	if plan.Base == 0 {
		// A create: Base 0 makes the put unconditional, so the same command
		// checks that the service is still absent.
		ops = append([]state.Op{state.ServiceAbsent{Name: req.Service}}, ops...)
	}
	idx, err := b.Store.Apply(ctx, ops...)
	if errdefs.IsConflict(err) {
		latest, _ := b.Store.Service(req.Service)
		return nil, b.stale(req, plan, latest)
	}
	if err != nil {
		return nil, err
	}
	res.Index = idx
	return res, nil
}

// stale explains why a plan no longer applies.
func (b *Backend) stale(req mcp.PlanRequest, plan *api.Plan, cur *state.Service) error {
	var what string
	switch {
	case cur == nil && plan.Base != 0:
		what = "it has been removed"
	case cur != nil && plan.Base == 0:
		what = fmt.Sprintf("it has been created since (now version %d)", cur.Version)
	case cur.Version != plan.FromVersion:
		what = fmt.Sprintf("it changed from version %d to %d (modify index %d to %d)", plan.FromVersion, cur.Version, plan.Base, cur.ModifyIndex)
	default:
		what = fmt.Sprintf("it changed at index %d (the plan saw index %d)", cur.ModifyIndex, plan.Base)
		if cur.Removing {
			what += " and is being removed"
		}
	}
	if fresh, err := b.Plan(context.Background(), req); err == nil {
		what += "; planning again now would " + fresh.Summary
	}
	return errdefs.WithHint(fmt.Errorf("plan %s for service %q is stale: %s: %w", plan.ID, req.Service, what, errdefs.ErrConflict),
		"make a new plan with dry_run true, check it, and apply that one")
}

// History lists the kept spec versions of a service.
func (b *Backend) History(ctx context.Context, name string) (*api.History, error) {
	cur, err := b.Store.Service(name)
	if err != nil {
		return nil, err
	}
	out := &api.History{Service: name, Current: cur.Version, Versions: []api.SpecVersion{}}
	var prev *spec.Service
	for _, h := range b.Store.History(name) {
		v := api.SpecVersion{Version: h.Version, Cause: h.Cause, Time: h.Time, Image: h.Spec.Image}
		if prev != nil {
			v.Changes = spec.Changes(prev, &h.Spec)
		}
		if raw, err := json.Marshal(h.Spec); err == nil {
			_ = json.Unmarshal(raw, &v.Spec)
		}
		s := h.Spec
		prev = &s
		out.Versions = append(out.Versions, v)
	}
	return out, nil
}
