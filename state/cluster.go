package state

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/raft"
)

// A Store is one server of a Raft group. With Config.Transport nil it is the
// single voter of `gantry dev`; with a transport (NewTransport) it is one of
// 3 or 5 servers, bootstrapped from Config.Peers, by BootstrapCluster once
// the wiring has seen Config.BootstrapExpect servers, or added by the
// leader (Config.Join, then AddVoter on the leader).
//
// Writes: Apply on the leader appends to the log; on a follower it hands
// the encoded command to Config.Forward, whose other end calls the
// leader's ApplyCommand. Reads are local (they see what this server has
// applied); Barrier makes a read on the leader linearizable.

// Cluster defaults.
const (
	// DefaultClusterHeartbeatTimeout is Config.HeartbeatTimeout when the
	// store has a network transport: a follower stands for election after
	// 1-2 times it without hearing from the leader.
	DefaultClusterHeartbeatTimeout = 500 * time.Millisecond
	// leaderPoll is how often waits for a leader look again.
	leaderPoll = 10 * time.Millisecond
)

// ErrNotLeader is what an operation that only the leader can do wraps on a
// follower (always with errdefs.ErrUnavailable). A write refused with it was
// not appended to the log, so it is safe to send again to the leader.
var ErrNotLeader = errors.New("not the raft leader")

// NotLeaderError is the error of an operation that only the leader can do,
// naming the leader this server knows of (empty during an election).
// errors.Is matches it with ErrNotLeader and errdefs.ErrUnavailable.
type NotLeaderError struct {
	Op         string
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return fmt.Sprintf("%s: %v and no leader is known (an election is under way, or a majority of servers is down): %v",
			e.Op, ErrNotLeader, errdefs.ErrUnavailable)
	}
	return fmt.Sprintf("%s: %v: the leader is %q at %s (send it there): %v",
		e.Op, ErrNotLeader, e.LeaderID, e.LeaderAddr, errdefs.ErrUnavailable)
}

func (e *NotLeaderError) Unwrap() []error { return []error{ErrNotLeader, errdefs.ErrUnavailable} }

// Peer is a server of the Raft group.
type Peer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // host:port of its Raft transport
	// Suffrage is "voter", "nonvoter" or "staging" (Peers fills it in; the
	// bootstrap lists ignore it: every peer there is a voter).
	Suffrage string `json:"suffrage,omitempty"`
	Leader   bool   `json:"leader,omitempty"`
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return s.String()
}

// raftConfiguration turns a bootstrap list into a configuration of voters,
// checking that it names self once and has no duplicates.
func raftConfiguration(peers []Peer, self string) (raft.Configuration, error) {
	var c raft.Configuration
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, p := range peers {
		if p.ID == "" || p.Addr == "" {
			return c, fmt.Errorf("raft peers: %+v needs both an id and an address: %w", p, errdefs.ErrInvalid)
		}
		if ids[p.ID] || addrs[p.Addr] {
			return c, fmt.Errorf("raft peers: %q (%s) is listed twice: %w", p.ID, p.Addr, errdefs.ErrInvalid)
		}
		if _, _, err := checkAdvertise(p.Addr); err != nil {
			return c, fmt.Errorf("raft peer %q: %w", p.ID, err)
		}
		ids[p.ID], addrs[p.Addr] = true, true
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	if !ids[self] {
		return c, errdefs.WithHint(fmt.Errorf("raft peers %v do not include this server %q: %w", peerIDs(peers), self, errdefs.ErrInvalid),
			"give every server the same list, this one included")
	}
	return c, nil
}

func peerIDs(peers []Peer) []string {
	ids := make([]string, len(peers))
	for i, p := range peers {
		ids[i] = p.ID
	}
	return ids
}

// BootstrapCluster makes peers the first configuration of a store opened
// with Config.BootstrapExpect (or Config.Join), once the wiring has found
// the expected servers through gossip. Every server may call it with the
// same list: each one records the same configuration, and they elect a
// leader among themselves. When this store already has a configuration
// (bootstrapped before, or added by a leader) it does nothing and returns
// nil: the stored configuration wins.
func (s *Store) BootstrapCluster(ctx context.Context, peers []Peer) error {
	if s.cfg.Transport == nil {
		return fmt.Errorf("bootstrap raft cluster: this store has no network transport: %w", errdefs.ErrInvalid)
	}
	if n := s.cfg.BootstrapExpect; n > 0 && len(peers) < n {
		return fmt.Errorf("bootstrap raft cluster: %d peers, expected %d: %w", len(peers), n, errdefs.ErrInvalid)
	}
	c, err := raftConfiguration(peers, s.cfg.NodeID)
	if err != nil {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.inflight.Done()
	err = s.await(ctx, s.raft.BootstrapCluster(c))
	if errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Info("raft cluster already has a configuration; bootstrap skipped", "peers", peerIDs(peers))
		return nil
	}
	if err != nil {
		return raftError("bootstrap raft cluster", err)
	}
	s.log.Info("bootstrapped raft cluster", "peers", peerIDs(peers))
	return nil
}

// IsLeader reports whether this server is the Raft leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the ID and Raft address of the leader this server knows
// of, both empty while there is none.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh returns raft's leadership channel: true when this server becomes
// the leader, false when it stops being it. There is one such channel per
// store, so there should be one reader (the server's leader loop). It holds
// one value and a newer transition replaces an unread one: a reader may see
// true twice in a row (leadership lost and won again in between) and never
// sees a transition that happened before it was taken and was read by
// someone else (Open reads the first one of a single voter). So: take the
// channel, then check IsLeader, then follow the channel.
func (s *Store) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// WaitLeader waits until the group has a leader this server knows of.
func (s *Store) WaitLeader(ctx context.Context) error {
	_, _, err := s.waitForLeader(ctx, "")
	return err
}

// waitForLeader waits until this server leads (then it returns its own ID
// and address) or knows a leader whose address is not skip.
func (s *Store) waitForLeader(ctx context.Context, skip string) (id, addr string, err error) {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for {
		if s.IsLeader() {
			return s.cfg.NodeID, string(s.trans.LocalAddr()), nil
		}
		if id, addr := s.Leader(); addr != "" && addr != skip {
			return id, addr, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", "", fmt.Errorf("waiting for a raft leader: %w: %w", ctx.Err(), errdefs.ErrUnavailable)
		}
	}
}

func (s *Store) notLeader(op string) error {
	id, addr := s.Leader()
	return &NotLeaderError{Op: op, LeaderID: id, LeaderAddr: addr}
}

// leaderError turns raft's "not leader" into a NotLeaderError and the rest
// as raftError does.
func (s *Store) leaderError(op string, err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		return s.notLeader(op)
	}
	return raftError(op, err)
}

// leaderOnly runs fn with a write registered in flight, on the leader only.
func (s *Store) leaderOnly(op string, fn func() error) error {
	if !s.IsLeader() {
		return s.notLeader(op)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.inflight.Done()
	if err := fn(); err != nil {
		return s.leaderError(op, err)
	}
	return nil
}

// AddVoter adds a server (started with Config.Join) as a voter, or updates
// its address. Leader only. It returns once the change is committed; the
// new server then catches up from the leader's log or a snapshot.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if id == "" {
		return invalid("add raft voter: id is empty")
	}
	if _, _, err := checkAdvertise(addr); err != nil {
		return fmt.Errorf("add raft voter %q: %w", id, err)
	}
	op := fmt.Sprintf("add raft voter %q", id)
	err := s.leaderOnly(op, func() error {
		return s.await(ctx, s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx)))
	})
	if err == nil {
		s.log.Info("added raft voter", "peer", id, "addr", addr)
	}
	return err
}

// RemovePeer removes a server from the Raft group. Leader only; a leader
// may remove itself (it steps down once the change is committed). An ID
// that is not in the configuration fails with errdefs.ErrNotFound.
func (s *Store) RemovePeer(ctx context.Context, id string) error {
	peers, err := s.Peers(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == id }) {
		return errdefs.WithHint(fmt.Errorf("remove raft peer %q: %w", id, errdefs.ErrNotFound),
			fmt.Sprintf("the peers are %v", peerIDs(peers)))
	}
	err = s.leaderOnly(fmt.Sprintf("remove raft peer %q", id), func() error {
		return s.await(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx)))
	})
	if err == nil {
		s.log.Info("removed raft peer", "peer", id)
	}
	return err
}

// Peers returns the latest Raft configuration (possibly not committed yet),
// sorted by ID, with the leader marked.
func (s *Store) Peers(ctx context.Context) ([]Peer, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	f := s.raft.GetConfiguration()
	if err := s.await(ctx, f); err != nil {
		return nil, raftError("read raft configuration", err)
	}
	leader, _ := s.Leader()
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{
			ID: string(srv.ID), Addr: string(srv.Address),
			Suffrage: suffrageName(srv.Suffrage), Leader: leader != "" && string(srv.ID) == leader,
		})
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// TransferLeadership hands leadership to the voter with ID to, or with to
// empty to the most up-to-date other voter. Leader only. It returns once
// this server has stepped down (or the transfer failed; the leader then
// stays).
func (s *Store) TransferLeadership(ctx context.Context, to string) error {
	var f func() raft.Future
	if to == "" {
		f = s.raft.LeadershipTransfer
	} else {
		peers, err := s.Peers(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(peers, func(p Peer) bool { return p.ID == to })
		switch {
		case i < 0:
			return errdefs.WithHint(fmt.Errorf("transfer raft leadership to %q: %w", to, errdefs.ErrNotFound),
				fmt.Sprintf("the peers are %v", peerIDs(peers)))
		case peers[i].Suffrage != "voter":
			return fmt.Errorf("transfer raft leadership to %q: it is a %s, not a voter: %w", to, peers[i].Suffrage, errdefs.ErrInvalid)
		case to == s.cfg.NodeID && s.IsLeader():
			return nil
		}
		f = func() raft.Future {
			return s.raft.LeadershipTransferToServer(raft.ServerID(to), raft.ServerAddress(peers[i].Addr))
		}
	}
	err := s.leaderOnly("transfer raft leadership", func() error { return s.await(ctx, f()) })
	if err == nil {
		id, _ := s.Leader()
		s.log.Info("transferred raft leadership", "to", to, "leader", id)
	}
	return err
}

// Barrier makes the next local reads linearizable: on the leader, it
// checks that this server still leads (a heartbeat round to a majority),
// then commits a barrier entry and waits until the FSM has applied every
// entry before it. Reads that start after Barrier returns see every write
// acknowledged before Barrier was called.
//
// It is not a pure ReadIndex: hashicorp/raft does not say when the FSM has
// consumed a given index (AppliedIndex counts entries handed to it), so the
// barrier is a log entry and costs about as much as a small write (it
// shares appends with concurrent writes).
//
// On a follower it fails with a NotLeaderError: the caller (the rpc layer)
// sends the read to the leader instead.
func (s *Store) Barrier(ctx context.Context) error {
	return s.leaderOnly("consistent read", func() error {
		if err := s.await(ctx, s.raft.VerifyLeader()); err != nil {
			return err
		}
		return s.await(ctx, s.raft.Barrier(enqueueTimeout(ctx)))
	})
}

// Forwarding.
//
// Semantics: a write is applied at most once. Apply retries once, and only
// after an error that proves the command was not appended to the log: the
// receiver was not the leader (ErrNotLeader, raft.ErrNotLeader). Any other
// failure of a write that may have reached the leader (a timeout, a lost
// connection, raft.ErrLeadershipLost) is returned, because Raft cannot say
// whether such an entry will commit: the caller reads the state to find
// out, and writes made conditional (ExpectModifyIndex, ServiceAbsent) are
// safe to repeat.

// submit applies an encoded command here when this server leads, or
// forwards it to the leader.
func (s *Store) submit(ctx context.Context, data []byte) (Result, error) {
	if s.cfg.Transport == nil {
		return s.applyLocal(ctx, data) // the single voter of gantry dev
	}
	var hint, skip string // after a refusal: the leader it named, or the address refused
	for attempt := 0; ; attempt++ {
		retry := attempt == 0
		addr, err := s.leaderToTry(ctx, hint, skip)
		if err != nil {
			return Result{}, err
		}
		hint, skip = "", ""
		if s.IsLeader() {
			r, err := s.applyLocal(ctx, data)
			if retry && errors.Is(err, ErrNotLeader) {
				continue
			}
			return r, err
		}
		if s.cfg.Forward == nil {
			return Result{}, s.notLeader("apply")
		}
		r, err := s.forward(ctx, addr, data)
		if err == nil {
			s.waitApplied(ctx, r.Index)
		}
		if retry && errors.Is(err, ErrNotLeader) {
			var nl *NotLeaderError
			if errors.As(err, &nl) && nl.LeaderAddr != "" && nl.LeaderAddr != addr {
				hint = nl.LeaderAddr
			} else {
				skip = addr
			}
			s.log.Debug("forwarded write refused by a server that does not lead; retrying once", "to", addr, "err", err)
			continue
		}
		return r, err
	}
}

// leaderToTry picks where a write goes: the leader a refusal named (hint),
// else the leader this server knows of, waiting up to 10 heartbeats for an
// election. After a refusal that named no other leader (skip), it waits 2
// heartbeats for news and then tries skip again: the refusal may have been
// a moment of transition, and a retry of a write that was not appended is
// safe.
func (s *Store) leaderToTry(ctx context.Context, hint, skip string) (string, error) {
	if hint != "" {
		return hint, nil
	}
	wait := 10 * s.cfg.HeartbeatTimeout
	if skip != "" {
		wait = 2 * s.cfg.HeartbeatTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, addr, err := s.waitForLeader(wctx, skip)
	switch {
	case err == nil:
		return addr, nil
	case ctx.Err() != nil:
		return "", fmt.Errorf("apply: %w", err)
	case skip != "":
		return skip, nil
	}
	return "", s.notLeader("apply")
}

func (s *Store) forward(ctx context.Context, addr string, data []byte) (Result, error) {
	if err := s.begin(); err != nil {
		return Result{}, err
	}
	defer s.inflight.Done()
	r, err := s.cfg.Forward(ctx, addr, data)
	if err != nil {
		return r, fmt.Errorf("apply: forward to the leader at %s: %w", addr, err)
	}
	return r, nil
}

// waitApplied waits until this server has applied index, within ctx and
// a few heartbeats: a follower that lags further still returns the
// leader's result.
func (s *Store) waitApplied(ctx context.Context, index uint64) {
	ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.HeartbeatTimeout)
	defer cancel()
	for {
		ch := s.Notify()
		if s.Index() >= index {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			s.log.Debug("a forwarded write is not applied here yet", "index", index, "applied", s.Index())
			return
		}
	}
}

// applyLocal appends an encoded command to the log and waits until it is
// applied.
func (s *Store) applyLocal(ctx context.Context, data []byte) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("apply: %w", err)
	}
	if err := s.begin(); err != nil {
		return Result{}, err
	}
	defer s.inflight.Done()

	f := s.raft.Apply(data, enqueueTimeout(ctx))
	if err := s.await(ctx, f); err != nil {
		if s.cfg.Transport != nil {
			if errors.Is(err, raft.ErrLeadershipLost) {
				return Result{}, errdefs.WithHint(raftError("apply", err),
					"the change may or may not have been applied; read the state to check before retrying")
			}
			return Result{}, s.leaderError("apply", err)
		}
		return Result{}, raftError("apply", err)
	}
	resp, ok := f.Response().(*fsmResponse)
	if !ok {
		return Result{}, fmt.Errorf("apply: unexpected FSM response %T", f.Response())
	}
	return resp.result, resp.err
}

// ApplyCommand is the leader's side of forwarding: it applies a command
// that a follower's Apply encoded and Config.Forward carried here. The
// command is decoded and its ops validated first, so a malformed one costs
// no log entry; then the same bytes are appended (the follower's clock
// stamps the change). On a follower it fails with a NotLeaderError without
// appending anything, so the sender may retry at the leader it names.
func (s *Store) ApplyCommand(ctx context.Context, cmd []byte) (Result, error) {
	if _, err := DecodeCommandOps(cmd); err != nil {
		return Result{}, fmt.Errorf("apply forwarded command: %w", err)
	}
	if !s.IsLeader() {
		return Result{}, s.notLeader("apply forwarded command")
	}
	return s.applyLocal(ctx, cmd)
}
