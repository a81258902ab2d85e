package state

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
)

// fsm applies committed log entries to go-memdb. Raft calls Apply,
// ApplyBatch, Snapshot and Restore from one goroutine (Restore at start-up
// from NewRaft's), so the fields below db are touched by that goroutine only.
// Readers load db and read through memdb's immutable transactions.
type fsm struct {
	log       *slog.Logger
	maxEvents int
	db        atomic.Pointer[memdb.MemDB]
	notify    notifier

	events  int    // rows in the events table
	lastSeq uint64 // highest event Seq ever given out
}

var _ raft.BatchingFSM = (*fsm)(nil)

// fsmResponse is what Apply returns to raft; Store.Apply finds it in
// ApplyFuture.Response.
type fsmResponse struct {
	result Result
	err    error
}

func newFSM(log *slog.Logger, maxEvents int) (*fsm, error) {
	db, err := newMemDB()
	if err != nil {
		return nil, err
	}
	f := &fsm{log: log, maxEvents: maxEvents}
	f.db.Store(db)
	f.notify.init()
	return f, nil
}

// Apply applies one committed entry.
func (f *fsm) Apply(l *raft.Log) any {
	resp, changed := f.applyEntry(l)
	if changed {
		f.notify.fire()
	}
	return resp
}

// ApplyBatch applies the entries raft committed together (up to
// MaxAppendEntries when many writers are busy). Each entry is still its own
// memdb transaction, so a failing entry leaves the others applied, but
// watchers wake once per batch instead of once per entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	changed := false
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		resp, ch := f.applyEntry(l)
		out[i] = resp
		changed = changed || ch
	}
	if changed {
		f.notify.fire()
	}
	return out
}

// applyEntry applies one command in one memdb transaction: all its ops or,
// when one fails, none.
func (f *fsm) applyEntry(l *raft.Log) (*fsmResponse, bool) {
	now, ops, err := decodeCommand(l.Data)
	if err != nil {
		f.log.Error("cannot apply log entry", "index", l.Index, "err", err)
		return &fsmResponse{result: Result{Index: l.Index}, err: err}, false
	}
	a := applier{
		txn:     f.db.Load().Txn(true),
		index:   l.Index,
		now:     now,
		events:  f.events,
		lastSeq: f.lastSeq,
		result:  Result{Index: l.Index},
	}
	for _, op := range ops {
		if err := a.apply(op); err != nil {
			a.txn.Abort()
			return &fsmResponse{result: Result{Index: l.Index}, err: err}, false
		}
	}
	a.trimEvents(f.maxEvents)
	check(a.txn.Insert(tableMeta, &metaRow{Key: metaIndexKey, Value: l.Index}))
	a.txn.Commit()
	f.events, f.lastSeq = a.events, a.lastSeq
	return &fsmResponse{result: a.result}, true
}

// applier applies the ops of one entry inside one write transaction.
type applier struct {
	txn     *memdb.Txn
	index   uint64
	now     time.Time
	events  int
	lastSeq uint64
	result  Result
}

func (a *applier) apply(op Op) error {
	if err := op.validate(); err != nil {
		return err
	}
	switch op := op.(type) {
	case PutService:
		return a.putService(op)
	case DeleteService:
		return a.deleteService(op)
	case PutInstance:
		return a.putInstance(op)
	case SetInstanceDesired:
		return a.setInstanceDesired(op)
	case SetInstanceStatus:
		return a.setInstanceStatus(op)
	case DeleteInstance:
		return a.deleteInstance(op)
	case PutNode:
		return a.putNode(op)
	case AppendEvent:
		return a.appendEvent(op)
	case PutToken:
		return a.putToken(op)
	case RevokeToken:
		return a.revokeToken(op)
	case AppendAudit:
		return a.appendAudit(op)
	case RestartService:
		return a.restartService(op)
	case SetNodeScheduling:
		return a.setNodeScheduling(op)
	case ServiceAbsent:
		return a.serviceAbsent(op)
	case PutApproval:
		return a.putApproval(op)
	case DecideApproval:
		return a.decideApproval(op)
	case UseApproval:
		return a.useApproval(op)
	case PutSecret:
		return a.putSecret(op)
	case DeleteSecret:
		return a.deleteSecret(op)
	case PutJoinToken:
		return a.putJoinToken(op)
	case RevokeJoinToken:
		return a.revokeJoinToken(op)
	case UseJoinToken:
		return a.useJoinToken(op)
	case ScaleService:
		return a.scaleService(op)
	}
	return invalid("op %T is unknown", op)
}

func (a *applier) insert(table string, obj any) {
	check(a.txn.Insert(table, obj))
}

func (a *applier) putService(op PutService) error {
	svc := op.Service
	if svc.Name == "" {
		svc.Name = svc.Spec.Name
	}
	if svc.Spec.Name == "" {
		svc.Spec.Name = svc.Name
	}
	if err := a.checkSecretRefs(&svc.Spec); err != nil {
		return err
	}
	old, _ := must(a.txn.First(tableServices, indexID, svc.Name)).(*Service)
	if op.ExpectModifyIndex != 0 {
		switch {
		case old == nil:
			return fmt.Errorf("service %q: expected modify index %d, but the service does not exist: %w",
				svc.Name, op.ExpectModifyIndex, errdefs.ErrConflict)
		case old.ModifyIndex != op.ExpectModifyIndex:
			return errdefs.WithHint(fmt.Errorf("service %q: expected modify index %d, but it is %d: %w",
				svc.Name, op.ExpectModifyIndex, old.ModifyIndex, errdefs.ErrConflict),
				"someone else changed the service; read it again and retry")
		}
	}
	if old == nil {
		svc.Version = 1
		svc.CreateIndex = a.index
		svc.CreatedAt = a.now
	} else {
		svc.Version = old.Version
		if !sameSpecBesidesReplicas(old.Spec, svc.Spec) {
			svc.Version++
		}
		svc.CreateIndex = old.CreateIndex
		svc.CreatedAt = old.CreatedAt
	}
	svc.ModifyIndex = a.index
	svc.UpdatedAt = a.now
	a.insert(tableServices, &svc)
	if old != nil && svc.Version != old.Version {
		a.keepSameSpecInstances(&svc)
	}
	a.recordHistory(&svc, old, op.Cause)
	return nil
}

// keepSameSpecInstances moves the live instances that already run svc's
// new spec (an earlier version with the same spec, as after a rollback or a
// cancelled deploy, or one that differs only in disconnect) to the new
// version, so the controller does not replace
// instances with identical ones. Deployment rollbacks in Kubernetes reuse
// the old ReplicaSet's pods the same way.
func (a *applier) keepSameSpecInstances(svc *Service) {
	for _, in := range collect[Instance](must(a.txn.Get(tableInstances, indexService, svc.Name)), nil) {
		if in.Desired != DesiredRun || in.SpecVersion == svc.Version {
			continue
		}
		row, _ := must(a.txn.First(tableHistory, indexID, svc.Name, in.SpecVersion)).(*SpecVersion)
		if row == nil || !SameSpecForInstances(row.Spec, svc.Spec) {
			continue
		}
		moved := *in
		moved.SpecVersion = svc.Version
		moved.ModifyIndex = a.index
		a.insert(tableInstances, &moved)
	}
}

// SameSpecBesidesReplicas reports whether a change from a to b is only a
// scale (or nothing): the Version stays, and instances running a stay.
func SameSpecBesidesReplicas(a, b spec.Service) bool { return sameSpecBesidesReplicas(a, b) }

// sameSpecBesidesReplicas reports whether a change from a to b is only a
// scale (or nothing), which does not bump the service's Version.
func sameSpecBesidesReplicas(a, b spec.Service) bool {
	a.Replicas, b.Replicas = 0, 0
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func (a *applier) deleteService(op DeleteService) error {
	old := must(a.txn.First(tableServices, indexID, op.Name))
	if old == nil {
		return fmt.Errorf("delete service %q: %w", op.Name, errdefs.ErrNotFound)
	}
	check(a.txn.Delete(tableServices, old))
	a.dropHistory(op.Name)
	return nil
}

func (a *applier) instance(id string) *Instance {
	in, _ := must(a.txn.First(tableInstances, indexID, id)).(*Instance)
	return in
}

func (a *applier) putInstance(op PutInstance) error {
	in := op.Instance
	if in.Desired == "" {
		in.Desired = DesiredRun
	}
	if old := a.instance(in.ID); old != nil {
		in.CreateIndex = old.CreateIndex
		in.CreatedAt = old.CreatedAt
		if !op.ReplaceStatus {
			in.InstanceStatus = old.InstanceStatus
		}
	} else {
		in.CreateIndex = a.index
		in.CreatedAt = a.now
	}
	if in.State == "" {
		in.State = StatePending
	}
	in.ModifyIndex = a.index
	a.insert(tableInstances, &in)
	return nil
}

func (a *applier) setInstanceDesired(op SetInstanceDesired) error {
	old := a.instance(op.ID)
	if old == nil {
		return fmt.Errorf("set desired state of instance %q: %w", op.ID, errdefs.ErrNotFound)
	}
	in := *old // the stored row is immutable: copy, then replace
	in.Desired = op.Desired
	in.ModifyIndex = a.index
	a.insert(tableInstances, &in)
	return nil
}

func (a *applier) setInstanceStatus(op SetInstanceStatus) error {
	old := a.instance(op.ID)
	if old == nil {
		a.result.Skipped = append(a.result.Skipped, op.ID)
		return nil
	}
	in := *old
	in.InstanceStatus = op.Status
	in.ModifyIndex = a.index
	a.insert(tableInstances, &in)
	return nil
}

func (a *applier) deleteInstance(op DeleteInstance) error {
	old := a.instance(op.ID)
	if old == nil {
		a.result.Skipped = append(a.result.Skipped, op.ID)
		return nil
	}
	check(a.txn.Delete(tableInstances, old))
	return nil
}

func (a *applier) putNode(op PutNode) error {
	n := op.Node
	if n.Status == "" {
		n.Status = "ready"
	}
	if old, _ := must(a.txn.First(tableNodes, indexID, n.ID)).(*Node); old != nil && !old.JoinedAt.IsZero() {
		n.JoinedAt = old.JoinedAt
	} else if n.JoinedAt.IsZero() {
		n.JoinedAt = a.now
	}
	n.SeenAt = a.now
	n.ModifyIndex = a.index
	keepScheduling(&n, a.node(n.ID))
	stampDownSince(&n, a.node(n.ID), a.now)
	a.insert(tableNodes, &n)
	return nil
}

func (a *applier) appendEvent(op AppendEvent) error {
	e := op.Event
	e.Seq = max(a.index, a.lastSeq+1)
	a.lastSeq = e.Seq
	if e.Time.IsZero() {
		e.Time = a.now
	}
	a.insert(tableEvents, &e)
	a.events++
	return nil
}

// trimEvents deletes the oldest events beyond limit.
func (a *applier) trimEvents(limit int) {
	excess := a.events - limit
	if excess <= 0 {
		return
	}
	it := must(a.txn.Get(tableEvents, indexID))
	var old []any
	for obj := it.Next(); obj != nil && len(old) < excess; obj = it.Next() {
		old = append(old, obj)
	}
	for _, obj := range old {
		check(a.txn.Delete(tableEvents, obj))
	}
	a.events -= len(old)
}

// Snapshots.

// snapshotJSON is the snapshot format byte; see formatJSON for the log.
const snapshotJSON byte = 1

// snapshotData is every table. Rows are written in index order so that two
// snapshots of the same state are byte-identical.
type snapshotData struct {
	Index     uint64         `json:"index"`
	LastSeq   uint64         `json:"last_event_seq"`
	Services  []*Service     `json:"services"`
	Instances []*Instance    `json:"instances"`
	Nodes     []*Node        `json:"nodes"`
	Events    []*Event       `json:"events"`
	History   []*SpecVersion `json:"history,omitempty"`
	Tokens    []*Token       `json:"tokens,omitempty"`
	Audit     []*AuditEntry  `json:"audit,omitempty"`
	Approvals []*Approval    `json:"approvals,omitempty"`
	Secrets   []*Secret      `json:"secrets,omitempty"`
	Joins     []*JoinToken   `json:"joins,omitempty"`
}

// fsmSnapshot holds a read transaction: memdb rows are immutable, so it is
// a consistent view that Apply can keep writing past while Persist runs.
type fsmSnapshot struct {
	txn     *memdb.Txn
	lastSeq uint64
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{txn: f.db.Load().Txn(false), lastSeq: f.lastSeq}, nil
}

func rows[T any](txn *memdb.Txn, table string) []*T {
	out := []*T{}
	it := must(txn.Get(table, indexID))
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*T))
	}
	return out
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	data := snapshotData{
		Index:     appliedIndex(s.txn),
		LastSeq:   s.lastSeq,
		Services:  rows[Service](s.txn, tableServices),
		Instances: rows[Instance](s.txn, tableInstances),
		Nodes:     rows[Node](s.txn, tableNodes),
		Events:    rows[Event](s.txn, tableEvents),
		History:   rows[SpecVersion](s.txn, tableHistory),
		Tokens:    rows[Token](s.txn, tableTokens),
		Audit:     rows[AuditEntry](s.txn, tableAudit),
		Approvals: rows[Approval](s.txn, tableApprovals),
		Secrets:   rows[Secret](s.txn, tableSecrets),
		Joins:     rows[JoinToken](s.txn, tableJoins),
	}
	w := bufio.NewWriter(sink)
	err := w.WriteByte(snapshotJSON)
	if err == nil {
		err = json.NewEncoder(w).Encode(&data)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write state snapshot: %w", err), sink.Cancel())
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Restore replaces the whole state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReader(rc)
	format, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("read state snapshot: %w", err)
	}
	if format != snapshotJSON {
		return fmt.Errorf("state snapshot format %d is unknown (written by a newer gantry? upgrade this binary): %w", format, errdefs.ErrInvalid)
	}
	var data snapshotData
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return fmt.Errorf("decode state snapshot: %v: %w", err, errdefs.ErrInvalid)
	}
	db, err := newMemDB()
	if err != nil {
		return err
	}
	txn := db.Txn(true)
	// A damaged or crafted snapshot must be refused, never panic: raft
	// panics when a restore fails on a follower, and memdb's indexers
	// panic on a nil row. Two rows with one ID would silently keep one.
	insertAll := func(table string, n int, row func(int) any) error {
		for i := range n {
			obj := row(i)
			if v := reflect.ValueOf(obj); !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
				return fmt.Errorf("restore state snapshot: %s: row %d is null: %w", table, i, errdefs.ErrInvalid)
			}
			if err := txn.Insert(table, obj); err != nil {
				return fmt.Errorf("restore state snapshot: %s: %v: %w", table, err, errdefs.ErrInvalid)
			}
		}
		got := 0
		it := must(txn.Get(table, indexID))
		for obj := it.Next(); obj != nil; obj = it.Next() {
			got++
		}
		if got != n {
			return fmt.Errorf("restore state snapshot: %s: %d rows hold %d distinct IDs: %w", table, n, got, errdefs.ErrInvalid)
		}
		return nil
	}
	err = errors.Join(
		insertAll(tableServices, len(data.Services), func(i int) any { return data.Services[i] }),
		insertAll(tableInstances, len(data.Instances), func(i int) any { return data.Instances[i] }),
		insertAll(tableNodes, len(data.Nodes), func(i int) any { return data.Nodes[i] }),
		insertAll(tableEvents, len(data.Events), func(i int) any { return data.Events[i] }),
		insertAll(tableHistory, len(data.History), func(i int) any { return data.History[i] }),
		insertAll(tableTokens, len(data.Tokens), func(i int) any { return data.Tokens[i] }),
		insertAll(tableAudit, len(data.Audit), func(i int) any { return data.Audit[i] }),
		insertAll(tableApprovals, len(data.Approvals), func(i int) any { return data.Approvals[i] }),
		insertAll(tableSecrets, len(data.Secrets), func(i int) any { return data.Secrets[i] }),
		insertAll(tableJoins, len(data.Joins), func(i int) any { return data.Joins[i] }),
		txn.Insert(tableMeta, &metaRow{Key: metaIndexKey, Value: data.Index}),
	)
	if err != nil {
		txn.Abort()
		return err
	}
	txn.Commit()

	f.events = len(data.Events)
	f.lastSeq = data.LastSeq
	for _, e := range data.Events {
		f.lastSeq = max(f.lastSeq, e.Seq)
	}
	f.db.Store(db)
	f.notify.fire()
	f.log.Debug("restored state snapshot", "index", data.Index, "services", len(data.Services),
		"instances", len(data.Instances), "nodes", len(data.Nodes), "events", len(data.Events))
	return nil
}

func appliedIndex(txn *memdb.Txn) uint64 {
	if m, _ := must(txn.First(tableMeta, indexID, metaIndexKey)).(*metaRow); m != nil {
		return m.Value
	}
	return 0
}

// notifier is a broadcast: fire closes the current channel and makes the
// next one.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) init() { n.ch = make(chan struct{}) }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}
