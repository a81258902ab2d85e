// Package controller turns services into instance records. Reconcile is a
// pure function from one service's stored state to a plan; Controller runs
// it whenever the state changes and commits the plans through Raft.
package controller

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/gantry-dev/gantry/scheduler"
	"github.com/gantry-dev/gantry/state"
)

// Plan is what one reconcile pass wants committed.
type Plan struct {
	Create []*state.Instance // new instance records (desired run)
	Stop   []string          // instance IDs whose desired state becomes stop
	Delete []string          // records of stopped instances to drop
	// Lost are instances whose node has been down for longer than the
	// service's disconnect tolerance, as their records become: desired
	// stop, observed StateLost with the reason. Their slots are free.
	Lost   []*state.Instance
	Events []state.Event
	// Pending is set when instances could not be placed, with the reason.
	Pending string
	// Recheck, when set, is when the plan would change with nothing else
	// changing: a disconnect tolerance or a lost record's time runs out.
	Recheck time.Time
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	return len(p.Create) == 0 && len(p.Stop) == 0 && len(p.Delete) == 0 && len(p.Lost) == 0
}

// Input is everything Reconcile looks at for one service.
type Input struct {
	Name      string
	Service   *state.Service    // nil when the service was removed
	Instances []*state.Instance // every record of this service
	Nodes     []scheduler.Node
	Usage     map[string]*scheduler.Usage // updated as instances are placed
	Now       time.Time
	NewID     func(service string, slot int) string // nil: random suffix
}

// live reports whether an instance counts toward the replica count.
func live(in *state.Instance) bool { return in.Desired == state.DesiredRun }

// ready reports whether an instance is serving (running and, when checked,
// healthy). Health is reported by the worker as Healthy; a service without
// a check is healthy once running.
func ready(in *state.Instance) bool { return in.State == state.StateRunning && in.Healthy }

// gone reports whether a stopping instance has been fully cleaned up.
// The worker that ran it reports StateStopped once container, mounts and
// network are gone; only then is the record dropped, so nothing leaks.
func gone(in *state.Instance) bool { return in.State == state.StateStopped }

// Reconcile compares a service's desired replicas with its instance records.
//
// Rules: each slot 0..replicas-1 has exactly one live instance; slots at or
// above replicas are stopped; an instance on an older spec version is
// replaced one slot at a time (a rolling update: the next slot is replaced
// only once every other slot is ready), except that instances which are not
// serving anyway are replaced at once; a duplicate in a slot keeps the
// oldest; stopped records are deleted.
//
// An instance on a node that is down stays counted, and is not replaced
// for a new version either, for the service's disconnect.replace_after;
// then it is marked lost (Plan.Lost) and its slot is filled again. A lost
// record is deleted once its node reports it stopped, or when its node is
// gone from the cluster or has been down for ForgetLostAfter more.
func Reconcile(in Input) Plan {
	var p Plan
	newID := in.NewID
	if newID == nil {
		newID = randomID
	}
	nodes := viewNodes(in.Nodes)
	tolerance := ReplaceAfter(in.Service)
	onDownNode := func(inst *state.Instance) bool { _, down := nodes.down[inst.Node]; return down }
	bySlot := map[int][]*state.Instance{}
	for _, inst := range in.Instances {
		since, down := nodes.down[inst.Node]
		switch {
		case isLost(inst):
			if !nodes.known[inst.Node] || down && in.Now.Sub(since) >= tolerance+ForgetLostAfter {
				p.forget(inst, in.Now, nodes.known[inst.Node])
			} else if down {
				p.recheckAt(since.Add(tolerance + ForgetLostAfter))
			}
			continue
		case down && !gone(inst) && in.Now.Sub(since) >= tolerance:
			p.lose(inst, since, tolerance, in.Now)
			continue
		case down && !gone(inst):
			p.recheckAt(since.Add(tolerance))
		}
		if !live(inst) {
			if gone(inst) {
				p.Delete = append(p.Delete, inst.ID)
			}
			continue
		}
		bySlot[inst.Slot] = append(bySlot[inst.Slot], inst)
	}
	replicas := 0
	version := 0
	if in.Service != nil {
		replicas = in.Service.Spec.Replicas
		version = in.Service.Version
	}

	// Duplicates and surplus slots.
	slots := make([]int, 0, len(bySlot))
	for s := range bySlot {
		slots = append(slots, s)
	}
	sort.Ints(slots)
	for _, s := range slots {
		insts := bySlot[s]
		sort.Slice(insts, func(i, j int) bool { return insts[i].CreateIndex < insts[j].CreateIndex })
		if s >= replicas {
			for _, inst := range insts {
				p.stop(inst, in.Now, "scaled down")
			}
			delete(bySlot, s)
			continue
		}
		for _, dup := range insts[1:] {
			p.stop(dup, in.Now, "duplicate in slot")
		}
		bySlot[s] = insts[:1]
	}

	// Rolling replacement of outdated instances, at most one slot
	// unavailable at a time: a serving old instance is replaced only while
	// every slot serves; one that is not serving anyway goes at once.
	unavailable := 0
	for s := 0; s < replicas; s++ {
		if insts := bySlot[s]; len(insts) == 0 || !ready(insts[0]) || onDownNode(insts[0]) {
			unavailable++
		}
	}
	for s := 0; s < replicas; s++ {
		insts := bySlot[s]
		if len(insts) == 0 || insts[0].SpecVersion == version {
			continue
		}
		old := insts[0]
		if onDownNode(old) {
			continue // its node may come back within the tolerance: replacing it now could run the slot twice
		}
		if ready(old) {
			if unavailable > 0 {
				continue // wait: keep serving until the others are ready
			}
			unavailable++
		}
		p.stop(old, in.Now, fmt.Sprintf("replaced by spec version %d", version))
		delete(bySlot, s)
	}

	// Fill empty slots.
	req := Request(in.Name, in.Service)
	for s := 0; s < replicas; s++ {
		if len(bySlot[s]) > 0 {
			continue
		}
		node, err := scheduler.Place(in.Nodes, in.Usage, req)
		if err != nil {
			p.Pending = err.Error()
			continue
		}
		inst := &state.Instance{
			ID:          newID(in.Name, s),
			Service:     in.Name,
			Slot:        s,
			SpecVersion: version,
			Node:        node,
			Desired:     state.DesiredRun,
			CreatedAt:   in.Now,
		}
		inst.State = state.StatePending
		p.Create = append(p.Create, inst)
		p.Events = append(p.Events, state.Event{Time: in.Now, Service: in.Name, Instance: inst.ID, Node: node,
			Type: "Scheduled", Message: fmt.Sprintf("slot %d placed on node %s", s, node)})
	}
	return p
}

func (p *Plan) stop(inst *state.Instance, now time.Time, why string) {
	p.Stop = append(p.Stop, inst.ID)
	p.Events = append(p.Events, state.Event{Time: now, Service: inst.Service, Instance: inst.ID, Node: inst.Node,
		Type: "Stopping", Message: why})
}

func (p *Plan) recheckAt(t time.Time) {
	if p.Recheck.IsZero() || t.Before(p.Recheck) {
		p.Recheck = t
	}
}

// lose marks inst lost: desired stop, observed StateLost, which frees its
// slot for a replacement placed in the same pass.
func (p *Plan) lose(inst *state.Instance, since time.Time, tolerance time.Duration, now time.Time) {
	c := *inst
	c.Desired = state.DesiredStop
	c.State, c.Healthy = state.StateLost, false
	c.Message = lostMessage(inst, since, tolerance)
	p.Lost = append(p.Lost, &c)
	p.Events = append(p.Events, state.Event{Time: now, Service: inst.Service, Instance: inst.ID, Node: inst.Node,
		Type: "Lost", Message: c.Message})
}

// forget drops the record of a lost instance whose node will not report it.
func (p *Plan) forget(inst *state.Instance, now time.Time, nodeKnown bool) {
	why := fmt.Sprintf("node %s is no longer in the cluster", inst.Node)
	if nodeKnown {
		why = fmt.Sprintf("node %s stayed down too long", inst.Node)
	}
	p.Delete = append(p.Delete, inst.ID)
	p.Events = append(p.Events, state.Event{Time: now, Service: inst.Service, Instance: inst.ID, Node: inst.Node,
		Type: "Forgotten", Message: why + ": the lost instance's record is dropped; if the node returns, its worker removes the container"})
}

func randomID(service string, slot int) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", service, slot, hex.EncodeToString(b[:]))
}
