// Package state holds Gantry's replicated state: services, instances, nodes
// and events. Every change is a Raft log entry (hashicorp/raft, logs in
// raft-boltdb, file snapshots) that an FSM applies to indexed in-memory
// tables (go-memdb). Reads are local and see everything applied so far;
// writes go through Store.Apply, one atomic log entry per call.
package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Defaults for Config.
const (
	DefaultSnapshotThreshold = 4096
	DefaultSnapshotInterval  = 2 * time.Minute
	DefaultTrailingLogs      = 1024
	DefaultHeartbeatTimeout  = 100 * time.Millisecond
	DefaultMaxEvents         = 5000
)

const (
	snapshotsRetained = 2
	logCacheEntries   = 512
	boltLockTimeout   = time.Second
	// drainTimeout bounds how long Close waits for writes in flight before
	// it shuts raft down.
	drainTimeout = 5 * time.Second
)

// Config configures a Store.
type Config struct {
	// DataDir holds raft/raft.db (log and stable store) and raft/snapshots.
	DataDir string
	// NodeID names this server in the Raft configuration. It must stay the
	// same for the life of DataDir.
	NodeID string
	// Logger receives the store's logs, and raft's at warn level or above.
	// Nil discards them.
	Logger *slog.Logger
	// Transport carries Raft RPCs. Nil means an in-memory transport, enough
	// for a single voter; Close closes only a transport it made itself.
	// NewTransport makes the mutual-TLS one a cluster of servers needs.
	Transport raft.Transport
	// How a store with an empty data dir gets its first Raft configuration.
	// With none of Peers, Join and BootstrapExpect, it bootstraps itself as
	// the single voter (gantry dev, or the first server of a cluster that
	// grows with AddVoter) and Open waits until it leads. Otherwise Open
	// returns once raft runs, leader or not (see WaitLeader). A data dir
	// that holds state keeps its stored configuration and ignores these.
	//
	// Peers bootstraps the group with exactly these voters (every server
	// given the same list, itself included). Needs a Transport.
	Peers []Peer
	// Join starts with no configuration: the server waits until the leader
	// adds it (AddVoter). Needs a Transport.
	Join bool
	// BootstrapExpect starts with no configuration, like Join, until the
	// wiring sees this many servers through gossip and calls
	// BootstrapCluster with them. Needs a Transport.
	BootstrapExpect int
	// Forward carries a write from a follower to the leader at leaderAddr
	// (its Raft address) and returns the leader's ApplyCommand result. A
	// Forward that knows the command was not appended (the other side was
	// not the leader, or nothing was sent) returns an error that wraps
	// ErrNotLeader, so Apply retries once. Nil means a follower's writes
	// fail with a NotLeaderError naming the leader.
	Forward func(ctx context.Context, leaderAddr string, cmd []byte) (Result, error)
	// SnapshotThreshold is how many entries since the last snapshot make
	// raft take the next one; SnapshotInterval is how often it checks.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log.
	TrailingLogs uint64
	// HeartbeatTimeout is how long a follower waits for a leader before it
	// stands for election, so a lone voter elects itself after 1-2 times
	// this; it is also the leader lease. Elections time out after 5 times
	// it (2 times with a Transport, so a split vote is retried sooner),
	// so that a slow fsync during an election does not restart it. With a
	// Transport it defaults to DefaultClusterHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// MaxEvents is how many events are kept; older ones are trimmed.
	MaxEvents int
}

func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, errdefs.WithHint(fmt.Errorf("open state: data dir is empty: %w", errdefs.ErrInvalid), "set --data-dir")
	}
	if c.NodeID == "" {
		return c, fmt.Errorf("open state: node id is empty: %w", errdefs.ErrInvalid)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
		if c.Transport != nil {
			c.HeartbeatTimeout = DefaultClusterHeartbeatTimeout
		}
	}
	modes := 0
	for _, set := range []bool{len(c.Peers) > 0, c.Join, c.BootstrapExpect > 0} {
		if set {
			modes++
		}
	}
	switch {
	case modes > 1:
		return c, fmt.Errorf("open state: set only one of raft peers, join and bootstrap-expect: %w", errdefs.ErrInvalid)
	case modes == 1 && c.Transport == nil:
		return c, fmt.Errorf("open state: a multi-server raft group needs a network transport: %w", errdefs.ErrInvalid)
	case len(c.Peers) > 0:
		if _, err := raftConfiguration(c.Peers, c.NodeID); err != nil {
			return c, fmt.Errorf("open state: %w", err)
		}
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	return c, nil
}

// Store is the replicated state of a Gantry cluster.
type Store struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm
	raft     *raft.Raft
	bolt     *raftboltdb.BoltStore
	snaps    *raft.FileSnapshotStore
	trans    raft.Transport
	ownTrans io.Closer // the transport Open made, if it made one

	mu       sync.RWMutex // guards closed, and inflight.Add against Wait
	closed   bool
	inflight sync.WaitGroup // writes in flight and their waiter goroutines

	closeOnce sync.Once
	closeErr  error
}

// Open opens the state in cfg.DataDir, bootstrapping a one-voter cluster
// when the directory holds no state yet. It returns once this server is the
// leader and has applied the whole log, or when ctx ends. In the
// multi-server modes (Config.Peers, Join, BootstrapExpect, or a stored
// configuration of several servers) it returns as soon as raft runs; use
// WaitLeader to wait for an election.
func Open(ctx context.Context, cfg Config) (_ *Store, err error) {
	start := time.Now()
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(filepath.Join(raftDir, "snapshots"), 0o700); err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("open state: %w", err),
			"--data-dir must be a writable directory")
	}

	log := cfg.Logger.With("component", "state")
	fsm, err := newFSM(log, cfg.MaxEvents)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: log, fsm: fsm}
	defer func() {
		if err != nil {
			s.shutdown()
		}
	}()

	dbPath := filepath.Join(raftDir, "raft.db")
	if s.bolt, err = openBolt(dbPath); err != nil {
		return nil, err
	}
	logs, err := raft.NewLogCache(logCacheEntries, s.bolt)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	hlog := newHCLogAdapter(cfg.Logger, hclog.Warn)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapshotsRetained, hlog.Named("snapshots"))
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("open state snapshots in %s: %w", raftDir, err),
			"--data-dir must be a writable directory")
	}
	s.snaps = snaps
	trans := cfg.Transport
	if trans == nil {
		_, t := raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
		trans, s.ownTrans = t, t
	}
	s.trans = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = 5 * cfg.HeartbeatTimeout
	if cfg.Transport != nil {
		rc.ElectionTimeout = 2 * cfg.HeartbeatTimeout
	}
	// Pre-vote keeps a partitioned server from disrupting a healthy cluster
	// when it comes back; a lone voter has no one to disrupt, and pre-vote
	// starts the election timer before the vote is fsynced, so a slow disk
	// could make it start over.
	rc.PreVoteDisabled = cfg.Transport == nil
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true // concurrent writers share log appends and fsyncs
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("open state: raft config: %v: %w", err, errdefs.ErrInvalid)
	}

	err = safely(dbPath, func() error {
		has, err := raft.HasExistingState(logs, s.bolt, snaps)
		if err != nil {
			return fmt.Errorf("read raft state: %w", err)
		}
		if !has {
			if err := bootstrapEmpty(log, cfg, rc, raftDir, func(c raft.Configuration) error {
				return raft.BootstrapCluster(rc, logs, s.bolt, snaps, trans, c)
			}); err != nil {
				return err
			}
		} else if cfg.Transport != nil && (len(cfg.Peers) > 0 || cfg.Join || cfg.BootstrapExpect > 0) {
			log.Info("raft state exists; its configuration is kept and the bootstrap settings are ignored", "dir", raftDir)
		}
		s.raft, err = raft.NewRaft(rc, fsm, logs, s.bolt, snaps, trans)
		return err
	})
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("open state in %s: %w", raftDir, err),
			"the raft log or a snapshot may be damaged; move the directory away to start from empty state")
	}
	servers, err := s.checkMember(rc.LocalID, raftDir)
	if err != nil {
		return nil, err
	}
	if cfg.Transport == nil || (len(servers) == 1 && servers[0].ID == rc.LocalID) {
		if err := s.waitLeader(ctx); err != nil {
			return nil, err
		}
	}
	log.Info("state store open", "node", cfg.NodeID, "index", s.Index(), "servers", len(servers),
		"took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// openBolt opens raft.db, turning a lock held elsewhere and a damaged file
// into errors that say so.
func openBolt(path string) (*raftboltdb.BoltStore, error) {
	var store *raftboltdb.BoltStore
	err := safely(path, func() (err error) {
		store, err = raftboltdb.New(raftboltdb.Options{
			Path:        path,
			BoltOptions: &bbolt.Options{Timeout: boltLockTimeout},
		})
		return err
	})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, errdefs.WithHint(fmt.Errorf("open raft log %s: locked by another process: %w", path, errdefs.ErrUnavailable),
			"is another gantry running with this --data-dir?")
	case err != nil:
		return nil, errdefs.WithHint(fmt.Errorf("open raft log %s: %w", path, err),
			"the file may be damaged; move it away to start from empty state")
	}
	return store, nil
}

// safely runs fn, turning a panic (bolt panics on some damaged files) into an
// error.
func safely(path string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s is damaged: %v: %w", path, r, errdefs.ErrInvalid)
		}
	}()
	return fn()
}

// bootstrapEmpty gives an empty data dir its first configuration, as cfg
// says (see Config.Peers): this server alone, the peers list, or none yet.
func bootstrapEmpty(log *slog.Logger, cfg Config, rc *raft.Config, dir string, bootstrap func(raft.Configuration) error) error {
	var c raft.Configuration
	switch {
	case cfg.Join:
		log.Info("starting with no raft configuration: waiting for the leader to add this server", "node", cfg.NodeID, "dir", dir)
		return nil
	case cfg.BootstrapExpect > 0:
		log.Info("starting with no raft configuration: waiting to see the expected servers", "node", cfg.NodeID,
			"expect", cfg.BootstrapExpect, "dir", dir)
		return nil
	case len(cfg.Peers) > 0:
		var err error
		if c, err = raftConfiguration(cfg.Peers, cfg.NodeID); err != nil {
			return err
		}
		for _, srv := range c.Servers {
			if srv.ID == rc.LocalID && srv.Address != cfg.Transport.LocalAddr() {
				log.Warn("this server's address in the raft peers differs from its transport's advertised address",
					"peers_addr", srv.Address, "advertise", cfg.Transport.LocalAddr())
			}
		}
		log.Info("bootstrapping a new raft cluster", "node", cfg.NodeID, "peers", peerIDs(cfg.Peers), "dir", dir)
	default:
		log.Info("bootstrapping a new single-voter cluster", "node", cfg.NodeID, "dir", dir)
		addr := raft.ServerAddress(cfg.NodeID)
		if cfg.Transport != nil {
			addr = cfg.Transport.LocalAddr()
		}
		c.Servers = []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}}
	}
	if err := bootstrap(c); err != nil {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	return nil
}

// checkMember fails when the stored Raft configuration does not include this
// node as a voter (the data dir was made under another node ID): the server
// would otherwise wait for an election it can never win. An empty
// configuration (a server waiting to join or to bootstrap) passes. It
// returns the stored servers.
func (s *Store) checkMember(id raft.ServerID, dir string) ([]raft.Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("open state: read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 && s.cfg.Transport != nil {
		return nil, nil
	}
	var ids []string
	for _, srv := range servers {
		if srv.ID == id && srv.Suffrage == raft.Voter {
			return servers, nil
		}
		ids = append(ids, string(srv.ID))
	}
	return nil, errdefs.WithHint(fmt.Errorf("open state in %s: node %q is not a voter of the stored cluster %v: %w", dir, id, ids, errdefs.ErrInvalid),
		"start with the node id the data dir was created with, or use a fresh --data-dir")
}

// waitLeader waits until this server leads and has applied every entry.
func (s *Store) waitLeader(ctx context.Context) error {
	for s.raft.State() != raft.Leader {
		select {
		case <-s.raft.LeaderCh():
		case <-ctx.Done():
			return fmt.Errorf("open state: waiting to become raft leader: %w: %w", ctx.Err(), errdefs.ErrUnavailable)
		}
	}
	// A barrier is applied after everything before it, including the
	// entries this leader just committed from an earlier run.
	if err := s.begin(); err != nil {
		return err
	}
	defer s.inflight.Done()
	if err := s.await(ctx, s.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return raftError("open state: apply log", err)
	}
	return nil
}

// Close shuts raft down and closes the log. Writes in flight finish first.
// It is safe to call more than once; reads keep working after it.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *Store) shutdown() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() { s.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		s.log.Warn("closing the state store with writes still in flight", "waited", drainTimeout)
	}

	var errs []error
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	}
	if s.ownTrans != nil {
		if err := s.ownTrans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft transport: %w", err))
		}
	}
	if s.bolt != nil {
		if err := s.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	return errors.Join(errs...)
}

// begin registers a write in flight, or fails once Close has started.
func (s *Store) begin() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("state store is closed: %w", errdefs.ErrUnavailable)
	}
	s.inflight.Add(1)
	return nil
}

// await waits for a raft future or for ctx. Futures cannot be selected on,
// so with a cancellable ctx a goroutine waits for it; the goroutine counts as
// in flight (the caller's own count is still held when it is added), so
// Close waits for it.
func (s *Store) await(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		done <- f.Error()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the change may still be applied)", ctx.Err())
	}
}

func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Nanosecond)
	}
	return 0 // no timeout
}

// raftError puts raft's errors about leadership and shutdown in the
// unavailable category.
func raftError(what string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrAbortedByRestore), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%s: %w: %w", what, err, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Apply submits ops as one Raft entry and waits until it is applied. The
// ops are applied atomically: when one fails (errdefs.ErrInvalid,
// ErrConflict, ErrNotFound), none is. It returns the entry's index.
//
// On a follower the entry is sent to the leader through Config.Forward
// (see submit in cluster.go for the at-most-once semantics); it then waits
// a little (within ctx) for this server to apply the entry too, so that
// the caller reads its own write.
func (s *Store) Apply(ctx context.Context, ops ...Op) (uint64, error) {
	r, err := s.ApplyWithResult(ctx, ops...)
	return r.Index, err
}

// ApplyWithResult is Apply that also reports which ops found their instance
// missing and did nothing.
func (s *Store) ApplyWithResult(ctx context.Context, ops ...Op) (Result, error) {
	if len(ops) == 0 {
		return Result{}, invalid("apply: no ops")
	}
	for i, op := range ops {
		if op == nil {
			return Result{}, invalid("apply: op %d is nil", i)
		}
		if err := op.validate(); err != nil {
			return Result{}, err
		}
	}
	data, err := encodeCommand(time.Now(), ops)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, data)
}
