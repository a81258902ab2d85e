// Package membership is Gantry's gossip membership and failure detection:
// every node (server or worker) runs one Membership, a thin wrapper over
// hashicorp/memberlist (SWIM with the Lifeguard extensions) whose traffic is
// encrypted and authenticated with the cluster gossip key (AES-GCM).
//
// A node gossips a small Meta (role, RPC and Raft addresses, CPU, memory,
// zone, labels) to every other node. Peers notice a node that stops
// answering probes and, with the default LANProfile, declare it failed in
// about 2–4 s. Changes arrive as Events; Members lists the current view.
//
// Events are a hint, not a log: the channel is buffered and an event is
// dropped (counted in Dropped, logged) rather than ever blocking
// memberlist's goroutines. Consumers must therefore also reconcile from
// Members periodically (every few seconds) and treat that as the truth.
package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/memberlist"
)

// State is a member's state as this node sees it.
//
// There is no "suspect": memberlist v0.5.4 keeps a node's suspicion to
// itself (the public Node.State is never filled in), so a suspected node is
// alive here until it refutes or is declared dead.
type State string

// Member states.
const (
	StateAlive State = "alive"
	StateDead  State = "dead" // failed: stopped answering without leaving
	StateLeft  State = "left" // left gracefully
)

// Member is one node of the cluster.
type Member struct {
	Name string
	Addr string // gossip address, host:port
	Meta Meta
	// MetaErr is set when the member's gossiped meta could not be parsed
	// (a much newer or foreign node); Meta is then zero.
	MetaErr error
	State   State
	// Since is when this node saw the member enter State.
	Since time.Time
}

// EventType says what happened to a member.
type EventType int

// Event types.
const (
	EventJoin   EventType = iota + 1 // a node joined, or came back after failing or leaving
	EventLeave                       // a node left gracefully
	EventFailed                      // a node stopped answering and was declared dead
	EventUpdate                      // a node's meta changed

	// EventGone is memberlist's "leave" (a node left or failed), before
	// record tells the two apart; it is never delivered.
	EventGone EventType = -1
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFailed:
		return "failed"
	case EventUpdate:
		return "update"
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// Event is a change of one member.
type Event struct {
	Type   EventType
	Member Member
}

// deadRetention is how long a dead or left member stays in Members, so a
// consumer that reconciles late still sees why a node is gone.
const deadRetention = 24 * time.Hour

// Membership is this node's view of the cluster. Its methods are safe for
// concurrent use.
type Membership struct {
	cfg     Config
	log     *slog.Logger
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	keyMu   sync.Mutex // serialises keyring changes: memberlist's Keyring reads its slice unlocked when changing it

	metaMu  sync.RWMutex
	meta    Meta
	leaving bool   // set by Leave, gossiped in the meta
	enc     []byte // encoded meta and leaving flag, returned to memberlist

	mu           sync.Mutex
	members      map[string]*Member
	events       chan Event
	closed       bool // events is closed
	lastDropWarn time.Time
	dropped      atomic.Uint64

	lifeMu sync.Mutex // serialises Leave and Shutdown
	shut   bool
}

// New starts gossip listeners for this node (TCP and UDP on cfg.Bind). The
// node is alone until Join.
func New(ctx context.Context, cfg Config) (*Membership, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	enc, err := cfg.Meta.encode(false)
	if err != nil {
		return nil, err
	}
	m := &Membership{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.Name),
		meta:    cfg.Meta.clone(),
		enc:     enc,
		members: make(map[string]*Member),
		events:  make(chan Event, cfg.EventBuffer),
	}
	mc, err := m.cfg.memberlistConfig(&delegate{m: m})
	if err != nil {
		return nil, err
	}
	m.keyring = mc.Keyring
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.closeEvents()
		hint := "check that --gossip-addr is an address of this host and its port is free for TCP and UDP"
		if strings.Contains(err.Error(), "private IP") {
			hint = "no private address to advertise: set --advertise to the IP other nodes reach this node at"
		}
		return nil, errdefs.WithHint(fmt.Errorf("membership: start gossip on %q: %v: %w", cfg.Bind, err, errdefs.ErrUnavailable), hint)
	}
	m.ml = ml
	m.log.Debug("gossip started", "addr", m.Addr())
	return m, nil
}

// Addr is the gossip address other nodes reach this node at (host:port,
// with the bound port when Bind asked for port 0).
func (m *Membership) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Name is this node's name.
func (m *Membership) Name() string { return m.cfg.Name }

// Join contacts the given gossip addresses (host:port; a missing port means
// this node's own gossip port) and syncs state with each one that answers.
// It returns how many answered; an error only when none did: ErrPermission
// when a peer's gossip key differs, ErrUnavailable when none could be
// reached. ctx is checked between addresses; each attempt is bounded by
// the profile's TCPTimeout.
func (m *Membership) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errdefs.WithHint(fmt.Errorf("membership: join: no addresses: %w", errdefs.ErrInvalid),
			"give the gossip address (ip:7436) of at least one node already in the cluster")
	}
	var (
		joined int
		fails  []string // "addr: reason", one per failed address
		keyBad []string // addresses whose peer has another key
		odd    int      // failures that are neither unreachable nor a key mismatch
	)
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			return joined, fmt.Errorf("membership: join: %w", err)
		}
		n, err := m.ml.Join([]string{a})
		joined += n
		if err == nil {
			continue
		}
		msg := joinErrText(err)
		fails = append(fails, msg)
		switch {
		case isKeyErr(msg):
			keyBad = append(keyBad, a)
		case !isConnErr(msg):
			odd++
		}
	}
	if joined > 0 {
		if len(fails) > 0 {
			m.log.Warn("joined the cluster, but some addresses failed", "contacted", joined, "failed", fails)
		} else {
			m.log.Info("joined the cluster", "contacted", joined)
		}
		return joined, nil
	}
	detail := strings.Join(fails, "; ")
	keyHint := "use the cluster's gossip key (<data-dir>/tls/gossip.key on any member; joining with a join token hands it out)"
	switch {
	case len(keyBad) > 0:
		return 0, errdefs.WithHint(fmt.Errorf("membership: join %s: the cluster key differs: this node's gossip key "+
			"cannot decrypt the peer's messages or the peer ours (%s): %w",
			strings.Join(keyBad, ", "), detail, errdefs.ErrPermission), keyHint)
	case odd > 0:
		return 0, errdefs.WithHint(fmt.Errorf("membership: join: a peer answered but the exchange failed (%s): %w",
			detail, errdefs.ErrUnavailable),
			"check that the address is a gantry gossip port (default 7436) and that the gossip key matches; "+keyHint)
	}
	return 0, errdefs.WithHint(fmt.Errorf("membership: join: none of %d address(es) could be reached (%s): %w",
		len(addrs), detail, errdefs.ErrUnavailable),
		"check the addresses and that the gossip port (default 7436) is open for TCP and UDP between the nodes")
}

// joinErrText flattens memberlist's multierror ("1 error occurred:\n\t* ...")
// into one line per address.
func joinErrText(err error) string {
	var me interface{ WrappedErrors() []error }
	if errors.As(err, &me) {
		parts := make([]string, 0, len(me.WrappedErrors()))
		for _, e := range me.WrappedErrors() {
			parts = append(parts, strings.TrimPrefix(e.Error(), "failed to join "))
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

// Members returns every node this node knows of, itself included: alive
// ones, and dead or left ones for a day after they went.
func (m *Membership) Members() []Member {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for name, rec := range m.members {
		if (rec.State == StateDead || rec.State == StateLeft) && now.Sub(rec.Since) > deadRetention {
			delete(m.members, name)
			continue
		}
		out = append(out, rec.clone())
	}
	return out
}

// Local returns this node as a Member.
func (m *Membership) Local() Member {
	m.metaMu.RLock()
	meta := m.meta
	m.metaMu.RUnlock()
	return Member{Name: m.cfg.Name, Addr: m.Addr(), Meta: meta.clone(), State: StateAlive}
}

// Events returns the change feed, this node's own join first. It is closed
// by Shutdown. Events are
// dropped (see Dropped) when the consumer falls behind by more than
// Config.EventBuffer; reconcile from Members periodically.
func (m *Membership) Events() <-chan Event { return m.events }

// Dropped is the number of events dropped because the Events buffer was
// full.
func (m *Membership) Dropped() uint64 { return m.dropped.Load() }

// HealthScore is Lifeguard's view of how well this node keeps up with the
// protocol: 0 is healthy, higher means probes and timeouts are stretched
// because this node is slow.
func (m *Membership) HealthScore() int { return m.ml.GetHealthScore() }

// UpdateMeta replaces this node's meta and gossips it. It waits (until ctx's
// deadline, default 5s) for the update to go out to at least one peer.
func (m *Membership) UpdateMeta(ctx context.Context, meta Meta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.metaMu.Lock()
	enc, err := meta.encode(m.leaving)
	if err != nil {
		m.metaMu.Unlock()
		return err
	}
	m.meta, m.enc = meta.clone(), enc
	m.metaMu.Unlock()
	if err := m.ml.UpdateNode(ctxTimeout(ctx, 5*time.Second)); err != nil {
		return fmt.Errorf("membership: meta updated locally but not yet sent to a peer (it spreads with the next gossip): %v: %w",
			err, errdefs.ErrUnavailable)
	}
	return nil
}

// Leave tells the cluster this node is leaving, so peers record it as left
// (EventLeave) instead of failed, and waits up to timeout (or ctx's
// deadline, if sooner) for the message to go out. Call Shutdown after.
func (m *Membership) Leave(ctx context.Context, timeout time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shut {
		return fmt.Errorf("membership: leave after shutdown: %w", errdefs.ErrConflict)
	}
	if t := ctxTimeout(ctx, timeout); timeout <= 0 || t < timeout {
		timeout = t
	}
	deadline := time.Now().Add(timeout)
	// First gossip the leaving flag, so peers can tell the leave message
	// that follows from a failure (see wireMeta).
	m.metaMu.Lock()
	enc, err := m.meta.encode(true)
	if err == nil {
		m.leaving, m.enc = true, enc
	}
	m.metaMu.Unlock()
	if err == nil {
		if err := m.ml.UpdateNode(timeout / 2); err != nil {
			m.log.Warn("leaving: the leaving flag did not reach a peer in time; some may record a failure", "err", err)
		}
	}
	if err := m.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("membership: leave: %v (peers will notice the node failed instead): %w", err, errdefs.ErrUnavailable)
	}
	m.log.Info("left the cluster")
	return nil
}

// Shutdown stops gossip without telling anyone: peers see the node fail.
// It closes the Events channel. Safe to call more than once.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shut {
		return nil
	}
	m.shut = true
	err := m.ml.Shutdown()
	m.closeEvents()
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

func (m *Membership) closeEvents() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.events)
	}
}

// record applies a change reported by memberlist and emits its event. It is
// called on memberlist's goroutines, with memberlist's node lock held: it
// must never block.
func (m *Membership) record(t EventType, n *memberlist.Node) {
	now := time.Now()
	mb, leaving := memberFromNode(n, now)
	switch {
	case t == EventGone && leaving:
		t, mb.State = EventLeave, StateLeft
	case t == EventGone:
		t, mb.State = EventFailed, StateDead
	case mb.MetaErr != nil:
		m.log.Warn("peer gossips meta this node cannot read", "peer", n.Name, "err", mb.MetaErr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.members[n.Name]; ok && old.State == mb.State {
		mb.Since = old.Since
	}
	m.members[n.Name] = &mb
	if m.closed || (t == EventUpdate && leaving) {
		return // the leaving flag is no news: the leave event follows
	}
	select {
	case m.events <- Event{Type: t, Member: mb.clone()}:
	default:
		total := m.dropped.Add(1)
		if now.Sub(m.lastDropWarn) >= 10*time.Second {
			m.lastDropWarn = now
			m.log.Warn("membership event dropped: the consumer is not keeping up (it should reconcile from Members)",
				"event", t.String(), "peer", n.Name, "dropped_total", total)
		}
	}
}

// clone copies mb so callers may change what they get.
func (mb Member) clone() Member {
	mb.Meta = mb.Meta.clone()
	return mb
}

// memberFromNode copies n (memberlist reuses it) as an alive Member and
// reports whether its meta carries the leaving flag.
func memberFromNode(n *memberlist.Node, now time.Time) (Member, bool) {
	mb := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		State: StateAlive,
		Since: now,
	}
	var leaving bool
	mb.Meta, leaving, mb.MetaErr = decodeMeta(n.Meta)
	if mb.MetaErr != nil {
		mb.MetaErr = fmt.Errorf("member %q: %w", n.Name, mb.MetaErr)
	}
	return mb, leaving
}

// delegate is what memberlist calls back into; kept apart so these methods
// are not part of Membership's API.
type delegate struct{ m *Membership }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.metaMu.RLock()
	defer d.m.metaMu.RUnlock()
	if len(d.m.enc) > limit { // cannot happen: encode enforces MaxMetaSize
		return nil
	}
	return append([]byte(nil), d.m.enc...)
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.m.record(EventJoin, n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.record(EventUpdate, n) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.m.record(EventGone, n) }
