package state

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/gantry-dev/gantry/errdefs"
	memdb "github.com/hashicorp/go-memdb"
)

// Reads are local: they see every entry this server has applied. Each
// returns copies that the caller may modify. The index some of them return
// is the Raft index of the last change applied when the read was made; a
// caller waits for the next one with Notify.

// InstanceFilter selects instances; empty fields match everything.
type InstanceFilter struct {
	Service string
	Node    string
}

// EventFilter selects events; empty fields match everything.
type EventFilter struct {
	Service  string
	Instance string
	// After keeps only events with a greater Seq (a cursor for following).
	After uint64
	// Limit, when positive, keeps only the newest Limit matching events.
	Limit int
}

func (s *Store) txn() *memdb.Txn { return s.fsm.db.Load().Txn(false) }

// Index is the Raft index of the last change applied.
func (s *Store) Index() uint64 { return appliedIndex(s.txn()) }

// Notify returns a channel that is closed when the next change is applied.
// To watch, take the channel, then read, then wait on it:
//
//	for {
//		ch := s.Notify()
//		... read ...
//		<-ch
//	}
//
// Taking the channel before reading means no change goes unnoticed.
func (s *Store) Notify() <-chan struct{} { return s.fsm.notify.wait() }

// Service returns the service called name, or an errdefs.ErrNotFound error.
func (s *Store) Service(name string) (*Service, error) {
	svc, _ := must(s.txn().First(tableServices, indexID, name)).(*Service)
	if svc == nil {
		return nil, fmt.Errorf("service %q: %w", name, errdefs.ErrNotFound)
	}
	return clone(svc), nil
}

// Services returns every service, sorted by name, and the index of the read.
func (s *Store) Services() ([]*Service, uint64) {
	txn := s.txn()
	return cloneAll(collect[Service](must(txn.Get(tableServices, indexID)), nil)), appliedIndex(txn)
}

// Instance returns the instance with the given ID, or an
// errdefs.ErrNotFound error.
func (s *Store) Instance(id string) (*Instance, error) {
	in, _ := must(s.txn().First(tableInstances, indexID, id)).(*Instance)
	if in == nil {
		return nil, fmt.Errorf("instance %q: %w", id, errdefs.ErrNotFound)
	}
	return clone(in), nil
}

// Instances returns the instances f selects, sorted by service, slot and ID,
// and the index of the read.
func (s *Store) Instances(f InstanceFilter) ([]*Instance, uint64) {
	txn := s.txn()
	var it memdb.ResultIterator
	switch {
	case f.Service != "":
		it = must(txn.Get(tableInstances, indexService, f.Service))
	case f.Node != "":
		it = must(txn.Get(tableInstances, indexNode, f.Node))
	default:
		it = must(txn.Get(tableInstances, indexID))
	}
	out := collect(it, func(in *Instance) bool {
		return (f.Service == "" || in.Service == f.Service) && (f.Node == "" || in.Node == f.Node)
	})
	slices.SortFunc(out, func(a, b *Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.ID, b.ID))
	})
	return cloneAll(out), appliedIndex(txn)
}

// InstancesInSlot returns the instances of a service's slot, sorted by ID.
// There is usually one; while a slot is being replaced, the stopping
// instance and its successor share it.
func (s *Store) InstancesInSlot(service string, slot int) []*Instance {
	return cloneAll(collect[Instance](must(s.txn().Get(tableInstances, indexServiceSlot, service, slot)), nil))
}

// Node returns the node with the given ID, or an errdefs.ErrNotFound error.
func (s *Store) Node(id string) (*Node, error) {
	n, _ := must(s.txn().First(tableNodes, indexID, id)).(*Node)
	if n == nil {
		return nil, fmt.Errorf("node %q: %w", id, errdefs.ErrNotFound)
	}
	return clone(n), nil
}

// Nodes returns every node, sorted by ID, and the index of the read.
func (s *Store) Nodes() ([]*Node, uint64) {
	txn := s.txn()
	return cloneAll(collect[Node](must(txn.Get(tableNodes, indexID)), nil)), appliedIndex(txn)
}

// Events returns the events f selects, oldest first.
func (s *Store) Events(f EventFilter) []*Event {
	txn := s.txn()
	var it memdb.ResultIterator
	switch {
	case f.Instance != "":
		it = must(txn.Get(tableEvents, indexInstance, f.Instance))
	case f.Service != "":
		it = must(txn.Get(tableEvents, indexService, f.Service))
	default:
		it = must(txn.LowerBound(tableEvents, indexID, f.After+1))
	}
	out := collect(it, func(e *Event) bool {
		return e.Seq > f.After && (f.Service == "" || e.Service == f.Service) &&
			(f.Instance == "" || e.Instance == f.Instance)
	})
	// The secondary indexes order rows by Seq too (memdb appends the primary
	// key), but sorting keeps that from being a silent assumption.
	slices.SortFunc(out, func(a, b *Event) int { return cmp.Compare(a.Seq, b.Seq) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return cloneAll(out)
}

// collect returns the rows it yields that keep accepts (all when keep is
// nil). They are the stored rows: clone them before handing them out.
func collect[T any](it memdb.ResultIterator, keep func(*T) bool) []*T {
	out := []*T{}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if v := obj.(*T); keep == nil || keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// cloneAll replaces each row by a copy.
func cloneAll[T any](rows []*T) []*T {
	for i, v := range rows {
		rows[i] = clone(v)
	}
	return rows
}
