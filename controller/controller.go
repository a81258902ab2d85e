package controller

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/gantry-dev/gantry/scheduler"
	"github.com/gantry-dev/gantry/state"
)

// Store is what the controller needs from the state store.
type Store interface {
	Services() ([]*state.Service, uint64)
	Instances(f state.InstanceFilter) ([]*state.Instance, uint64)
	Nodes() ([]*state.Node, uint64)
	Notify() <-chan struct{}
	Apply(ctx context.Context, ops ...state.Op) (uint64, error)
}

// Controller reconciles every service whenever the state changes.
type Controller struct {
	store   Store
	log     *slog.Logger
	pending map[string]string // service -> last reported placement failure
	recheck time.Time         // earliest Plan.Recheck of the last pass
}

// New returns a controller over store.
func New(store Store, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{store: store, log: log.With("component", "controller"), pending: map[string]string{}}
}

// Run reconciles until ctx is done. It returns nil on cancellation. It
// runs a pass on every state change, every 2 seconds, and when a pass said
// that time alone changes its outcome (Plan.Recheck: a node has been down
// for a service's replace_after), so a replacement starts on time.
func (c *Controller) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		ch := c.store.Notify()
		if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile pass failed", "err", err)
		}
		wait := 2 * time.Second
		if !c.recheck.IsZero() {
			wait = min(wait, max(time.Until(c.recheck), 0))
		}
		timer.Reset(wait) // Go 1.23 timers: no stale tick survives a Reset
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-timer.C:
		}
	}
}

// Pass runs one reconcile over all services and commits the plans.
func (c *Controller) Pass(ctx context.Context) error {
	services, _ := c.store.Services()
	instances, _ := c.store.Instances(state.InstanceFilter{})
	nodes, _ := c.store.Nodes()

	byName := map[string]*state.Service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	grouped := map[string][]*state.Instance{}
	for _, in := range instances {
		grouped[in.Service] = append(grouped[in.Service], in)
	}
	cands, usage := Candidates(nodes, instances, services)
	names := make([]string, 0, len(byName)+len(grouped))
	for n := range byName {
		names = append(names, n)
	}
	for n := range grouped {
		if byName[n] == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)

	now := time.Now().UTC()
	var ops []state.Op
	c.recheck = time.Time{}
	for _, name := range names {
		svc := byName[name]
		if svc != nil && svc.Removing {
			if countNotLost(grouped[name]) == 0 {
				ops = append(ops, state.DeleteService{Name: name}, state.AppendEvent{Event: state.Event{
					Time: now, Service: name, Type: "Removed", Message: "every instance stopped; service removed"}})
				continue
			}
			svc = nil // stop everything
		}
		p := Reconcile(Input{Name: name, Service: svc, Instances: grouped[name], Nodes: cands, Usage: usage, Now: now})
		ops = append(ops, planOps(p)...)
		if !p.Recheck.IsZero() && (c.recheck.IsZero() || p.Recheck.Before(c.recheck)) {
			c.recheck = p.Recheck
		}
		if p.Pending != c.pending[name] {
			if p.Pending != "" {
				ops = append(ops, state.AppendEvent{Event: state.Event{Time: now, Service: name, Type: "Pending", Message: p.Pending}})
				c.log.Warn("cannot place instances", "service", name, "reason", p.Pending)
			}
			c.pending[name] = p.Pending
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := c.store.Apply(ctx, ops...)
	return err
}

func planOps(p Plan) []state.Op {
	var ops []state.Op
	for _, in := range p.Lost {
		ops = append(ops, state.SetInstanceDesired{ID: in.ID, Desired: in.Desired},
			state.SetInstanceStatus{ID: in.ID, Status: in.InstanceStatus})
	}
	for _, in := range p.Create {
		ops = append(ops, state.PutInstance{Instance: *in})
	}
	for _, id := range p.Stop {
		ops = append(ops, state.SetInstanceDesired{ID: id, Desired: state.DesiredStop})
	}
	for _, id := range p.Delete {
		ops = append(ops, state.DeleteInstance{ID: id})
	}
	for _, ev := range p.Events {
		ops = append(ops, state.AppendEvent{Event: ev})
	}
	return ops
}

// Candidates is the scheduler's view of the cluster: the nodes that can
// take instances, and what live instances reserve on each. Dry-run plans
// use it too, so a plan simulates exactly what the controller will do.
// A fixed host port stays held by an instance being stopped until its
// node reports it stopped, because the worker keeps the port until then.
// The host ports an instance reports it publishes are held too, dynamic
// ones included: a fixed host_port that another instance got as its
// dynamic port would only crash-loop on that node.
func Candidates(nodes []*state.Node, insts []*state.Instance, services []*state.Service) ([]scheduler.Node, map[string]*scheduler.Usage) {
	byName := make(map[string]*state.Service, len(services))
	for _, s := range services {
		byName[s.Name] = s
	}
	usage := map[string]*scheduler.Usage{}
	for _, in := range insts {
		req := Request(in.Service, byName[in.Service])
		if !gone(in) {
			scheduler.HoldPorts(usage, in.Node, in.Service, publishedPorts(in, byName[in.Service]))
		}
		if in.Desired != state.DesiredRun {
			if !gone(in) {
				scheduler.HoldPorts(usage, in.Node, in.Service, req.HostPorts)
			}
			continue
		}
		scheduler.Hold(usage, in.Node, req)
	}
	cands := make([]scheduler.Node, 0, len(nodes))
	for _, n := range nodes {
		cands = append(cands, scheduler.Node{ID: n.ID, Ready: n.Status == "ready",
			Unschedulable: n.Labels[state.LabelScheduling], CPU: n.CPU, Memory: n.Memory, DownSince: NodeDownSince(n)})
	}
	return cands, usage
}

// publishedPorts are the host ports instance in reports it publishes, as
// scheduler.PortKey values, with each port's protocol from svc's spec (tcp
// when the port is no longer in it).
func publishedPorts(in *state.Instance, svc *state.Service) []string {
	if len(in.Ports) == 0 {
		return nil
	}
	keys := make([]string, 0, len(in.Ports))
	for name, hp := range in.Ports {
		if hp <= 0 {
			continue
		}
		proto := ""
		if svc != nil {
			for _, p := range svc.Spec.Ports {
				if p.Name == name {
					proto = p.Protocol
				}
			}
		}
		keys = append(keys, scheduler.PortKey(hp, proto))
	}
	sort.Strings(keys)
	return keys
}

// Request is what one instance of the service name (svc nil: removed)
// asks of the scheduler: its resources and its fixed host ports.
func Request(name string, svc *state.Service) scheduler.Request {
	req := scheduler.Request{Service: name}
	if svc == nil {
		return req
	}
	req.CPU = int64(svc.Spec.Resources.CPU)
	req.Memory = int64(svc.Spec.Resources.Memory)
	for _, p := range svc.Spec.Ports {
		if p.HostPort != 0 {
			req.HostPorts = append(req.HostPorts, scheduler.PortKey(p.HostPort, p.Protocol))
		}
	}
	return req
}
