package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

// RemoteStore defaults.
const (
	DefaultMaxQueuedEvents = 1000
	flushBatch             = 256 // ops per flushed command
	watchBackoffMax        = 5 * time.Second
	cacheVersion           = 1
)

// RemoteStoreConfig configures a RemoteStore.
type RemoteStoreConfig struct {
	Client *Client
	// Node is the worker's node name (its certificate's name).
	Node string
	// CacheFile keeps the last snapshot (e.g. <data-dir>/assignment.json).
	CacheFile string
	// Wait is how long one watch blocks on the server (default 30s).
	Wait time.Duration
	// MaxQueuedEvents bounds the events kept while no server answers; the
	// oldest are dropped past it (default 1000).
	MaxQueuedEvents int
	Logger          *slog.Logger
}

// RemoteStore is the worker.Store of a `gantry worker`: reads come from the
// last snapshot of the node's assignment that a server sent (kept current
// by a blocking watch, and cached on disk), writes go to the leader.
//
// Static stability: while no server answers, reads keep returning the last
// snapshot, so the worker keeps its containers running and removes nothing
// it was not told to. Writes the worker makes about its own node
// (SetInstanceStatus, AppendEvent, PutNode) are then queued and Apply
// returns 0 and no error: statuses are coalesced (the latest per instance
// wins), node records too, and events are kept up to MaxQueuedEvents. The
// queue is flushed when a server answers again. Statuses the worker writes
// show in reads at once (as they do beside a local store) until a snapshot
// that includes them arrives. Other ops fail with errdefs.ErrUnavailable.
// The queue lives in memory: a worker restarted while cut off reports its
// instances afresh when it re-adopts them.
type RemoteStore struct {
	cfg RemoteStoreConfig
	log *slog.Logger

	mu       sync.Mutex
	snap     *WatchResponse
	services map[string]*state.Service
	overlay  map[string]overlaid // instance ID -> status written here
	seq      uint64              // numbers writes, newest highest
	statuses map[string]queuedStatus
	nodes    map[string]queuedNode
	events   []queuedEvent
	online   bool
	dropped  int           // queued events dropped past MaxQueuedEvents, not yet logged
	lastErr  string        // the last watch refusal logged
	ch       chan struct{} // closed on the next change of the view

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type overlaid struct {
	status state.InstanceStatus
	seq    uint64
	index  uint64 // the Raft index that applied it; 0 while not applied
}

type queuedStatus struct {
	op  state.SetInstanceStatus
	seq uint64
}

type queuedNode struct {
	op  state.PutNode
	seq uint64
}

type queuedEvent struct {
	op  state.AppendEvent
	seq uint64
}

type cacheFile struct {
	Version  int            `json:"version"`
	SavedAt  time.Time      `json:"saved_at"`
	Snapshot *WatchResponse `json:"snapshot"`
}

// OpenRemoteStore loads the cached snapshot from cfg.CacheFile or, when there
// is none, fetches one from the servers, then starts watching for changes.
// Without a cache and without a server it fails with errdefs.ErrUnavailable:
// a worker must not start from an empty assignment it was never given. Close
// stops it.
func OpenRemoteStore(ctx context.Context, cfg RemoteStoreConfig) (*RemoteStore, error) {
	if cfg.Client == nil || cfg.Node == "" || cfg.CacheFile == "" {
		return nil, fmt.Errorf("remote store: client, node and cache file are required: %w", errdefs.ErrInvalid)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWatchWait
	}
	if cfg.MaxQueuedEvents <= 0 {
		cfg.MaxQueuedEvents = DefaultMaxQueuedEvents
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &RemoteStore{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "remote-store", "node", cfg.Node),
		overlay:  map[string]overlaid{},
		statuses: map[string]queuedStatus{},
		nodes:    map[string]queuedNode{},
		ch:       make(chan struct{}),
		kick:     make(chan struct{}, 1),
	}
	snap, err := s.loadCache()
	if err != nil {
		s.log.Warn("ignoring the cached assignment", "file", cfg.CacheFile, "err", err)
	}
	if snap == nil {
		snap, err = cfg.Client.Watch(ctx, cfg.Node, 0, 0, "")
		if err != nil {
			return nil, errdefs.WithHint(fmt.Errorf("remote store: no cached assignment in %s and no server answered: %w", cfg.CacheFile, err),
				"start the worker once while a server is reachable; afterwards it runs from its cache when none is")
		}
		if err := s.saveCache(snap); err != nil {
			return nil, err
		}
		s.online = true
	} else {
		s.log.Info("loaded the cached assignment", "index", snap.Index, "instances", len(snap.Instances))
	}
	s.setSnapshotLocked(snap)

	ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.watchLoop(ctx) }()
	go func() { defer s.wg.Done(); s.flushLoop(ctx) }()
	return s, nil
}

// Close stops watching and flushing and waits for both. Writes still queued
// are dropped.
func (s *RemoteStore) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Instances returns the instances of the last snapshot that f selects (with
// this node's own status writes applied) and the snapshot's index.
func (s *RemoteStore) Instances(f state.InstanceFilter) ([]*state.Instance, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*state.Instance{}
	for _, in := range s.snap.Instances {
		if (f.Service != "" && in.Service != f.Service) || (f.Node != "" && in.Node != f.Node) {
			continue
		}
		c := cloneJSON(in)
		if o, ok := s.overlay[in.ID]; ok {
			c.InstanceStatus = *cloneJSON(&o.status)
		}
		out = append(out, c)
	}
	return out, s.snap.Index
}

// Service returns a service of the last snapshot, or errdefs.ErrNotFound.
func (s *RemoteStore) Service(name string) (*state.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.services[name]
	if svc == nil {
		return nil, fmt.Errorf("service %q: %w", name, errdefs.ErrNotFound)
	}
	return cloneJSON(svc), nil
}

// Notify returns a channel closed at the next change of what the reads
// return: a new snapshot, or a status written here.
func (s *RemoteStore) Notify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Index is the state index of the last snapshot.
func (s *RemoteStore) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap.Index
}

// Online reports whether the last call to a server succeeded.
func (s *RemoteStore) Online() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online
}

// Queued is how many writes wait for a server.
func (s *RemoteStore) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.statuses) + len(s.nodes) + len(s.events)
}

// Apply sends ops to the leader as one command and returns its index. While
// no server answers, a worker's reports are queued instead (index 0, no
// error); see RemoteStore.
func (s *RemoteStore) Apply(ctx context.Context, ops ...state.Op) (uint64, error) {
	cmd, err := state.EncodeCommand(ops...)
	if err != nil {
		return 0, err
	}
	queueable := true
	for _, op := range ops {
		switch op.(type) {
		case state.SetInstanceStatus, state.AppendEvent, state.PutNode:
		default:
			queueable = false
		}
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	for _, op := range ops {
		if st, ok := op.(state.SetInstanceStatus); ok {
			s.overlay[st.ID] = overlaid{status: st.Status, seq: seq}
		}
	}
	s.changedLocked()
	direct := s.online && s.queuedLocked() == 0
	if !direct && queueable {
		s.enqueueLocked(ops, seq)
		online := s.online
		s.mu.Unlock()
		if online {
			s.kickFlush()
		}
		return 0, nil
	}
	s.mu.Unlock()

	resp, err := s.cfg.Client.Apply(ctx, cmd)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.appliedLocked(ops, seq, resp.Index)
		return resp.Index, nil
	case queueable && errdefs.IsUnavailable(err) && ctx.Err() == nil:
		s.setOnlineLocked(false, err)
		s.enqueueLocked(ops, seq)
		return 0, nil
	}
	// Refused: the status written here is not the state's.
	for _, op := range ops {
		if st, ok := op.(state.SetInstanceStatus); ok && s.overlay[st.ID].seq == seq {
			delete(s.overlay, st.ID)
			s.changedLocked()
		}
	}
	return 0, err
}

func (s *RemoteStore) queuedLocked() int { return len(s.statuses) + len(s.nodes) + len(s.events) }

// enqueueLocked queues ops written at seq, unless a newer write of the same
// object is already there.
func (s *RemoteStore) enqueueLocked(ops []state.Op, seq uint64) {
	for _, op := range ops {
		switch op := op.(type) {
		case state.SetInstanceStatus:
			if q, ok := s.statuses[op.ID]; !ok || q.seq < seq {
				if o, ok := s.overlay[op.ID]; !ok || o.seq <= seq {
					s.statuses[op.ID] = queuedStatus{op: op, seq: seq}
				}
			}
		case state.PutNode:
			if q, ok := s.nodes[op.Node.ID]; !ok || q.seq < seq {
				s.nodes[op.Node.ID] = queuedNode{op: op, seq: seq}
			}
		case state.AppendEvent:
			s.events = append(s.events, queuedEvent{op: op, seq: seq})
			if over := len(s.events) - s.cfg.MaxQueuedEvents; over > 0 {
				s.dropped += over
				s.events = append(s.events[:0:0], s.events[over:]...)
			}
		}
	}
}

// appliedLocked records that the statuses among ops written at seq were
// applied at index, so a snapshot at that index replaces them.
func (s *RemoteStore) appliedLocked(ops []state.Op, seq, index uint64) {
	for _, op := range ops {
		if st, ok := op.(state.SetInstanceStatus); ok {
			if o := s.overlay[st.ID]; o.seq == seq {
				o.index = index
				s.overlay[st.ID] = o
				if index <= s.snap.Index { // the snapshot already holds it
					delete(s.overlay, st.ID)
				}
			}
		}
	}
}

func (s *RemoteStore) setOnlineLocked(online bool, err error) {
	if online == s.online {
		return
	}
	s.online = online
	if online {
		s.log.Info("servers answer again", "queued", s.queuedLocked(), "events_dropped", s.dropped)
		s.dropped, s.lastErr = 0, ""
	} else {
		s.log.Warn("no server answers: keeping the last known assignment, queueing status reports",
			"index", s.snap.Index, "instances", len(s.snap.Instances), "err", err)
	}
}

// changedLocked wakes the Notify waiters.
func (s *RemoteStore) changedLocked() {
	close(s.ch)
	s.ch = make(chan struct{})
}

// setSnapshotLocked makes snap the view and drops the statuses it includes.
func (s *RemoteStore) setSnapshotLocked(snap *WatchResponse) {
	s.snap = snap
	s.services = make(map[string]*state.Service, len(snap.Services))
	for _, svc := range snap.Services {
		s.services[svc.Name] = svc
	}
	for id, o := range s.overlay {
		if o.index != 0 && o.index <= snap.Index {
			delete(s.overlay, id)
		}
	}
	s.changedLocked()
}

func (s *RemoteStore) kickFlush() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// watchLoop keeps the snapshot current with blocking watches.
func (s *RemoteStore) watchLoop(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		s.mu.Lock()
		index, hash := s.snap.Index, s.snap.Hash
		s.mu.Unlock()
		snap, err := s.cfg.Client.Watch(ctx, s.cfg.Node, index, s.cfg.Wait, hash)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.setOnlineLocked(false, err)
			if errors.Is(err, errdefs.ErrPermission) && err.Error() != s.lastErr {
				s.lastErr = err.Error()
				s.log.Error("the servers refuse this worker's watch; running the last known assignment", "err", err)
			}
			s.mu.Unlock()
			if sleep(ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, watchBackoffMax)
			continue
		}
		backoff = 250 * time.Millisecond
		s.mu.Lock()
		s.setOnlineLocked(true, nil)
		queued := s.queuedLocked() > 0
		fresh := snap.Node == s.cfg.Node && snap.Index >= s.snap.Index && snap.Hash != s.snap.Hash
		if fresh {
			s.setSnapshotLocked(snap)
		} else if snap.Index > s.snap.Index {
			s.snap.Index = snap.Index // same content, later index
		}
		s.mu.Unlock()
		if queued {
			s.kickFlush()
		}
		if fresh {
			if err := s.saveCache(snap); err != nil {
				s.log.Warn("cannot cache the assignment", "err", err)
			}
		}
	}
}

// flushLoop sends queued writes when kicked.
func (s *RemoteStore) flushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		for s.flushOnce(ctx) {
		}
	}
}

// batchItem is a queued op and the write that queued it.
type batchItem struct {
	op  state.Op
	seq uint64
}

// flushOnce sends up to flushBatch queued ops; it reports whether to go on.
func (s *RemoteStore) flushOnce(ctx context.Context) bool {
	s.mu.Lock()
	var batch []batchItem
	for _, q := range s.nodes {
		batch = append(batch, batchItem{q.op, q.seq})
	}
	for _, q := range s.statuses {
		if len(batch) < flushBatch {
			batch = append(batch, batchItem{q.op, q.seq})
		}
	}
	for _, q := range s.events {
		if len(batch) < flushBatch {
			batch = append(batch, batchItem{q.op, q.seq})
		}
	}
	s.mu.Unlock()
	if len(batch) == 0 || ctx.Err() != nil {
		return false
	}
	index, err := s.send(ctx, batch)
	switch {
	case err == nil:
		s.done(batch, index)
		s.log.Info("flushed queued writes", "ops", len(batch), "index", index)
		return true
	case ctx.Err() != nil:
		return false
	case errdefs.IsUnavailable(err):
		s.mu.Lock()
		s.setOnlineLocked(false, err)
		s.mu.Unlock()
		return false // the watch loop kicks again once a server answers
	}
	// One op spoils the batch (an instance moved away, say): send them one
	// by one and drop those refused.
	s.log.Warn("queued writes refused together; sending them one by one", "err", err)
	for _, it := range batch {
		index, err := s.send(ctx, []batchItem{it})
		switch {
		case err == nil:
			s.done([]batchItem{it}, index)
		case ctx.Err() != nil:
			return false
		case errdefs.IsUnavailable(err):
			return false
		default:
			s.log.Warn("dropping a queued write the servers refuse", "op", fmt.Sprintf("%T", it.op), "err", err)
			s.done([]batchItem{it}, 0)
		}
	}
	return true
}

func (s *RemoteStore) send(ctx context.Context, batch []batchItem) (uint64, error) {
	ops := make([]state.Op, len(batch))
	for i, it := range batch {
		ops[i] = it.op
	}
	cmd, err := state.EncodeCommand(ops...)
	if err != nil {
		return 0, err
	}
	resp, err := s.cfg.Client.Apply(ctx, cmd)
	return resp.Index, err
}

// done removes the flushed items from the queue, unless a newer write
// replaced them meanwhile, and marks their statuses applied at index.
func (s *RemoteStore) done(batch []batchItem, index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := map[uint64]int{} // events sent, per seq
	for _, it := range batch {
		switch op := it.op.(type) {
		case state.SetInstanceStatus:
			if q := s.statuses[op.ID]; q.seq == it.seq {
				delete(s.statuses, op.ID)
			}
			if o, ok := s.overlay[op.ID]; ok && o.seq == it.seq {
				if index == 0 {
					delete(s.overlay, op.ID)
					s.changedLocked()
				} else {
					o.index = index
					s.overlay[op.ID] = o
				}
			}
		case state.PutNode:
			if q := s.nodes[op.Node.ID]; q.seq == it.seq {
				delete(s.nodes, op.Node.ID)
			}
		case state.AppendEvent:
			sent[it.seq]++
		}
	}
	// Events go out oldest first, so the sent ones lead the queue.
	n := 0
	for _, e := range s.events {
		if sent[e.seq] == 0 {
			break
		}
		sent[e.seq]--
		n++
	}
	s.events = append(s.events[:0:0], s.events[n:]...)
}

// loadCache reads the cached snapshot; (nil, nil) when there is none.
func (s *RemoteStore) loadCache() (*WatchResponse, error) {
	data, err := os.ReadFile(s.cfg.CacheFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c cacheFile
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode %s: %w", s.cfg.CacheFile, err)
	}
	switch {
	case c.Version != cacheVersion || c.Snapshot == nil:
		return nil, fmt.Errorf("%s: cache version %d is unknown", s.cfg.CacheFile, c.Version)
	case c.Snapshot.Node != s.cfg.Node:
		return nil, fmt.Errorf("%s holds the assignment of node %q, not %q", s.cfg.CacheFile, c.Snapshot.Node, s.cfg.Node)
	}
	return c.Snapshot, nil
}

// saveCache writes snap atomically: a temporary file, synced, renamed over
// the cache, and the directory synced.
func (s *RemoteStore) saveCache(snap *WatchResponse) error {
	data, err := json.Marshal(cacheFile{Version: cacheVersion, SavedAt: time.Now().UTC(), Snapshot: snap})
	if err != nil {
		return fmt.Errorf("encode assignment cache: %w", err)
	}
	dir := filepath.Dir(s.cfg.CacheFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("assignment cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".assignment-*.tmp")
	if err != nil {
		return fmt.Errorf("assignment cache: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.cfg.CacheFile)
	}
	if err != nil {
		return fmt.Errorf("write assignment cache %s: %w", s.cfg.CacheFile, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: the rename is durable on most filesystems anyway
		_ = d.Close()
	}
	return nil
}

// cloneJSON deep-copies v through its JSON form, which is what these wire
// types are made of.
func cloneJSON[T any](v *T) *T {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("rpc: clone %T: %v", v, err))
	}
	out := new(T)
	if err := json.Unmarshal(data, out); err != nil {
		panic(fmt.Sprintf("rpc: clone %T: %v", v, err))
	}
	return out
}
