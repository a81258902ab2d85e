package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/raft"
)

// Multi-server tests: real raft on disk in temp dirs, real TLS over TCP on
// 127.0.0.1 with ports the kernel picks. Forwarding calls the leader's
// ApplyCommand in-process (the rpc package carries it over HTTPS).

const clusterWait = 8 * time.Second

type testNode struct {
	id         string
	addr       string
	dir        string
	store      *Store
	trans      raft.Transport // until opened
	closeTrans io.Closer
}

type testGroup struct {
	t  testing.TB
	ca *testCA

	mu     sync.Mutex
	byAddr map[string]*testNode
	nodes  []*testNode
	// hook, when set, answers a forwarded write instead of the leader
	// (handled false: pass it on).
	hook func(addr string) (r Result, err error, handled bool)
}

func newTestGroup(t testing.TB) *testGroup {
	return &testGroup{t: t, ca: newTestCA(t, "gantry test CA"), byAddr: map[string]*testNode{}}
}

// forward is Config.Forward for the group: a direct call of the leader's
// ApplyCommand.
func (g *testGroup) forward(ctx context.Context, addr string, cmd []byte) (Result, error) {
	g.mu.Lock()
	var s *Store
	if n := g.byAddr[addr]; n != nil {
		s = n.store
	}
	hook := g.hook
	g.mu.Unlock()
	if hook != nil {
		if r, err, handled := hook(addr); handled {
			return r, err
		}
	}
	if s == nil {
		return Result{}, fmt.Errorf("no server at %s (nothing sent): %w", addr, ErrNotLeader)
	}
	return s.ApplyCommand(ctx, cmd)
}

// addNode starts a transport for a new server; open opens its store.
func (g *testGroup) addNode(id string) *testNode {
	t := g.t
	t.Helper()
	server, client := tlsPair(g.ca, g.ca.issue(t, id))
	trans, closer, err := NewTransport("127.0.0.1:0", "", server, client, testLogger(t).With("node", id))
	if err != nil {
		t.Fatalf("NewTransport(%s): %v", id, err)
	}
	t.Cleanup(func() { closer.Close() })
	n := &testNode{id: id, addr: string(trans.LocalAddr()), dir: t.TempDir(), trans: trans, closeTrans: closer}
	g.mu.Lock()
	g.byAddr[n.addr] = n
	g.nodes = append(g.nodes, n)
	g.mu.Unlock()
	return n
}

func (g *testGroup) open(n *testNode, mod ...func(*Config)) {
	t := g.t
	t.Helper()
	cfg := Config{
		DataDir: n.dir, NodeID: n.id, Logger: testLogger(t).With("node", n.id),
		Transport: n.trans, Forward: g.forward,
	}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", n.id, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close(%s): %v", n.id, err)
		}
	})
	g.mu.Lock()
	n.store = s
	g.mu.Unlock()
}

// restart stops a server (store, then transport) and starts it again on the
// same data dir and address, as a rolling restart does.
func (g *testGroup) restart(n *testNode) {
	t := g.t
	t.Helper()
	g.mu.Lock()
	s := n.store
	n.store = nil
	g.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Errorf("Close(%s): %v", n.id, err)
	}
	n.closeTrans.Close()
	server, client := tlsPair(g.ca, g.ca.issue(t, n.id))
	trans, closer, err := NewTransport(n.addr, "", server, client, testLogger(t).With("node", n.id))
	if err != nil {
		t.Fatalf("NewTransport(%s) again: %v", n.id, err)
	}
	t.Cleanup(func() { closer.Close() })
	n.trans, n.closeTrans = trans, closer
	g.open(n) // the stored configuration wins: no bootstrap settings needed
}

// peers is the bootstrap list of the given nodes.
func peersOf(nodes ...*testNode) []Peer {
	var ps []Peer
	for _, n := range nodes {
		ps = append(ps, Peer{ID: n.id, Addr: n.addr})
	}
	return ps
}

// newGroup forms a group of n servers from a peers list and waits for a
// leader.
func newGroup(t testing.TB, n int) *testGroup {
	g := newTestGroup(t)
	var nodes []*testNode
	for i := range n {
		nodes = append(nodes, g.addNode(fmt.Sprintf("srv-%d", i+1)))
	}
	peers := peersOf(nodes...)
	start := time.Now()
	for _, nd := range nodes {
		g.open(nd, func(c *Config) { c.Peers = peers })
	}
	g.leader(nil)
	t.Logf("%d servers elected a leader in %v", n, time.Since(start).Round(time.Millisecond))
	return g
}

func (g *testGroup) live(skip *testNode) []*testNode {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*testNode
	for _, n := range g.nodes {
		if n != skip && n.store != nil {
			out = append(out, n)
		}
	}
	return out
}

// leader waits until exactly one of the open servers (but skip) leads and
// all of them know it.
func (g *testGroup) leader(skip *testNode) *testNode {
	g.t.Helper()
	var ld *testNode
	waitFor(g.t, clusterWait, "one leader known to all servers", func() bool {
		ld = nil
		for _, n := range g.live(skip) {
			if n.store.IsLeader() {
				if ld != nil {
					return false
				}
				ld = n
			}
		}
		if ld == nil {
			return false
		}
		for _, n := range g.live(skip) {
			if id, _ := n.store.Leader(); id != ld.id {
				return false
			}
		}
		return true
	})
	return ld
}

func (g *testGroup) follower(skip *testNode) *testNode {
	for _, n := range g.live(skip) {
		if !n.store.IsLeader() {
			return n
		}
	}
	g.t.Fatal("no follower")
	return nil
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterPeersForwardAndBarrier(t *testing.T) {
	g := newGroup(t, 3)
	ld := g.leader(nil)
	fol := g.follower(nil)
	ctx := ctxTimeout(t, clusterWait)

	peers, err := fol.store.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, p := range peers {
		if p.Suffrage != "voter" {
			t.Errorf("peer %+v is not a voter", p)
		}
		if p.Leader {
			leaders++
			if p.ID != ld.id || p.Addr != ld.addr {
				t.Errorf("leader peer %+v, want %s at %s", p, ld.id, ld.addr)
			}
		}
	}
	if len(peers) != 3 || leaders != 1 {
		t.Errorf("peers = %+v, want 3 voters and one leader", peers)
	}

	// A write on a follower is forwarded, and the follower reads it at once.
	idx, err := fol.store.Apply(ctx, PutService{Service: Service{Spec: webSpec("busybox:1.36", 2)}})
	if err != nil {
		t.Fatalf("Apply on a follower: %v", err)
	}
	if svc, err := fol.store.Service("web"); err != nil || svc.CreateIndex != idx {
		t.Errorf("follower reads its own write: %+v, %v (want create index %d)", svc, err, idx)
	}
	for _, n := range g.live(nil) {
		waitFor(t, clusterWait, n.id+" applies the write", func() bool {
			svc, err := n.store.Service("web")
			return err == nil && svc.Spec.Image == "busybox:1.36"
		})
	}

	// Consistent reads: on the leader only.
	if err := ld.store.Barrier(ctx); err != nil {
		t.Errorf("Barrier on the leader: %v", err)
	}
	if ld.store.Index() < idx {
		t.Errorf("leader index %d after Barrier, want >= %d", ld.store.Index(), idx)
	}
	err = fol.store.Barrier(ctx)
	if !errors.Is(err, ErrNotLeader) || !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), ld.id) {
		t.Errorf("Barrier on a follower: %v, want not-leader naming %s", err, ld.id)
	}
	var nl *NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderAddr != ld.addr {
		t.Errorf("Barrier on a follower: %#v, want a NotLeaderError with the leader's address %s", err, ld.addr)
	}

	// The leader's side of forwarding refuses what it should.
	cmd, err := encodeCommand(time.Now(), []Op{PutNode{Node: Node{ID: "n1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fol.store.ApplyCommand(ctx, cmd); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ApplyCommand on a follower: %v, want ErrNotLeader", err)
	}
	if _, err := ld.store.ApplyCommand(ctx, []byte("junk")); !errdefs.IsInvalid(err) {
		t.Errorf("ApplyCommand(junk): %v, want invalid", err)
	}
	bad, _ := encodeCommand(time.Now(), []Op{DeleteService{}})
	if _, err := ld.store.ApplyCommand(ctx, bad); !errdefs.IsInvalid(err) {
		t.Errorf("ApplyCommand(invalid op): %v, want invalid", err)
	}
	if r, err := ld.store.ApplyCommand(ctx, cmd); err != nil || r.Index <= idx {
		t.Errorf("ApplyCommand on the leader: %+v, %v", r, err)
	}
	// Forwarding retries once, and only a write that surely was not
	// appended: at most once.
	calls := 0
	setHook := func(h func(addr string) (Result, error, bool)) {
		g.mu.Lock()
		defer g.mu.Unlock()
		calls = 0
		g.hook = h
	}
	setHook(func(string) (Result, error, bool) {
		calls++
		if calls == 1 {
			return Result{}, fmt.Errorf("rpc: %w", &NotLeaderError{Op: "apply", LeaderID: ld.id, LeaderAddr: ld.addr}), true
		}
		return Result{}, nil, false
	})
	if _, err := fol.store.Apply(ctx, PutNode{Node: Node{ID: "retried"}}); err != nil || calls != 2 {
		t.Errorf("a write refused as not-leader: %v after %d calls, want success after 2", err, calls)
	}
	setHook(func(string) (Result, error, bool) {
		calls++
		return Result{}, errors.New("connection reset after the request was sent"), true
	})
	if _, err := fol.store.Apply(ctx, PutNode{Node: Node{ID: "maybe"}}); err == nil || errors.Is(err, ErrNotLeader) || calls != 1 {
		t.Errorf("a write that may have reached the leader: %v after %d calls, want its error after 1 call", err, calls)
	}
	setHook(func(string) (Result, error, bool) {
		calls++
		return Result{}, fmt.Errorf("nothing sent: %w", ErrNotLeader), true
	})
	if _, err := fol.store.Apply(ctx, PutNode{Node: Node{ID: "never"}}); !errors.Is(err, ErrNotLeader) || calls != 2 {
		t.Errorf("a write refused twice: %v after %d calls, want not-leader after 2 calls", err, calls)
	}
	setHook(nil)

	// The FSM's own errors come back through forwarding.
	if _, err := fol.store.Apply(ctx, DeleteService{Name: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("forwarded delete of a missing service: %v, want not found", err)
	}
}

func TestClusterFailover(t *testing.T) {
	for _, how := range []string{"store closed", "transport closed"} {
		t.Run(how, func(t *testing.T) {
			g := newGroup(t, 3)
			old := g.leader(nil)
			writer := g.follower(nil)

			var (
				mu    sync.Mutex
				acked []string
				fails int
			)
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("w-%d", i)
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					_, err := writer.store.Apply(ctx, PutNode{Node: Node{ID: id}})
					cancel()
					mu.Lock()
					if err == nil {
						acked = append(acked, id)
					} else {
						fails++
					}
					mu.Unlock()
				}
			}()
			defer func() { close(stop); <-done }()

			waitFor(t, clusterWait, "20 writes before the failure", func() bool { return count() >= 20 })
			t.Logf("cutting off the leader %s at %s", old.id, old.addr)
			start := time.Now()
			switch how {
			case "store closed":
				if err := old.store.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			default:
				old.closeTrans.Close()
			}
			ld := g.leader(old)
			took := time.Since(start)
			t.Logf("new leader %s after %v", ld.id, took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("failover took %v", took)
			}
			before := count()
			waitFor(t, clusterWait, "20 writes after the failover", func() bool { return count() >= before+20 })
			close(stop)
			<-done
			stop = make(chan struct{})
			done = make(chan struct{})
			close(done)

			if how == "transport closed" {
				waitFor(t, clusterWait, "the cut-off leader steps down", func() bool { return !old.store.IsLeader() })
			}
			ctx := ctxTimeout(t, clusterWait)
			if err := ld.store.Barrier(ctx); err != nil {
				t.Fatalf("Barrier: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d writes acknowledged, %d failed", len(acked), fails)
			for _, n := range g.live(old) {
				waitFor(t, clusterWait, n.id+" has every acknowledged write", func() bool {
					for _, id := range acked {
						if _, err := n.store.Node(id); err != nil {
							return false
						}
					}
					return true
				})
			}
		})
	}
}

func TestClusterRollingRestart(t *testing.T) {
	g := newGroup(t, 3)
	var (
		mu    sync.Mutex
		acked []string
	)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			live := g.live(nil)
			n := live[i%len(live)]
			g.mu.Lock()
			s := n.store
			g.mu.Unlock()
			if s == nil {
				continue
			}
			id := fmt.Sprintf("r-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := s.Apply(ctx, PutNode{Node: Node{ID: id}})
			cancel()
			if err == nil {
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }

	// Followers first, the leader last, like an operator would.
	order := []*testNode{}
	ld := g.leader(nil)
	for _, n := range g.live(ld) {
		order = append(order, n)
	}
	order = append(order, ld)
	for _, n := range order {
		before := count()
		waitFor(t, clusterWait, "writes before restarting "+n.id, func() bool { return count() >= before+5 })
		g.restart(n)
		g.leader(nil)
		ld := g.leader(nil)
		waitFor(t, clusterWait, n.id+" catches up after its restart", func() bool {
			return n.store.Index() >= ld.store.Index()
		})
	}
	before := count()
	waitFor(t, clusterWait, "writes after the restarts", func() bool { return count() >= before+5 })
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes acknowledged across 3 restarts", len(acked))
	for _, n := range g.live(nil) {
		waitFor(t, clusterWait, n.id+" has every acknowledged write", func() bool {
			for _, id := range acked {
				if _, err := n.store.Node(id); err != nil {
					return false
				}
			}
			return true
		})
	}
}

func TestClusterJoinAddVoterRemovePeer(t *testing.T) {
	g := newTestGroup(t)
	n1, n2, n3 := g.addNode("one"), g.addNode("two"), g.addNode("three")
	g.open(n1) // no peers, no join: a single voter that leads at once
	if !n1.store.IsLeader() {
		t.Fatal("a single voter does not lead after Open")
	}
	g.open(n2, func(c *Config) { c.Join = true })
	g.open(n3, func(c *Config) { c.Join = true; c.Forward = nil })
	if n2.store.IsLeader() || n3.store.IsLeader() {
		t.Fatal("a joining server leads")
	}
	ctx := ctxTimeout(t, clusterWait)
	apply(t, n1.store, PutService{Service: Service{Spec: webSpec("busybox:1.36", 1)}})

	for _, n := range []*testNode{n2, n3} {
		if err := n1.store.AddVoter(ctx, n.id, n.addr); err != nil {
			t.Fatalf("AddVoter(%s): %v", n.id, err)
		}
	}
	for _, n := range []*testNode{n2, n3} {
		if err := n.store.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, clusterWait, n.id+" catches up", func() bool { _, err := n.store.Service("web"); return err == nil })
	}
	// A follower's view of the configuration catches up too.
	waitFor(t, clusterWait, "two sees three peers", func() bool {
		peers, err := n2.store.Peers(ctx)
		return err == nil && len(peers) == 3
	})

	// A follower with no Forward names the leader.
	_, err := n3.store.Apply(ctx, PutNode{Node: Node{ID: "x"}})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), `"one"`) {
		t.Errorf("Apply on a follower without Forward: %v, want unavailable naming the leader", err)
	}
	if err := n2.store.AddVoter(ctx, "four", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), `"one"`) {
		t.Errorf("AddVoter on a follower: %v, want not-leader naming one", err)
	}
	if err := n1.store.AddVoter(ctx, "four", "0.0.0.0:7435"); !errdefs.IsInvalid(err) {
		t.Errorf("AddVoter with an unroutable address: %v, want invalid", err)
	}

	// Writes forwarded from a joined server.
	idx, err := n2.store.Apply(ctx, PutNode{Node: Node{ID: "from-two"}})
	if err != nil {
		t.Fatalf("Apply on a joined follower: %v", err)
	}

	if err := n1.store.RemovePeer(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("RemovePeer(nope): %v, want not found", err)
	}
	if err := n1.store.RemovePeer(ctx, n3.id); err != nil {
		t.Fatalf("RemovePeer: %v", err)
	}
	peers, err := n1.store.Peers(ctx)
	if err != nil || len(peers) != 2 || peers[0].ID != "one" || peers[1].ID != "two" {
		t.Errorf("Peers after removing three = %+v, %v", peers, err)
	}
	// Two voters still commit.
	if i, err := n2.store.Apply(ctx, PutNode{Node: Node{ID: "after-remove"}}); err != nil || i <= idx {
		t.Errorf("Apply after RemovePeer: %d, %v", i, err)
	}
}

func TestClusterBootstrapExpect(t *testing.T) {
	g := newTestGroup(t)
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, g.addNode(fmt.Sprintf("exp-%d", i)))
	}
	for _, n := range nodes {
		g.open(n, func(c *Config) { c.BootstrapExpect = 3 })
	}
	ctx := ctxTimeout(t, clusterWait)
	if err := nodes[0].store.BootstrapCluster(ctx, peersOf(nodes[:2]...)); !errdefs.IsInvalid(err) {
		t.Errorf("BootstrapCluster with 2 of 3: %v, want invalid", err)
	}
	// Every server bootstraps with the same list, at the same time.
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.store.BootstrapCluster(ctx, peersOf(nodes...))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("BootstrapCluster on %s: %v", nodes[i].id, err)
		}
	}
	ld := g.leader(nil)
	if err := ld.store.BootstrapCluster(ctx, peersOf(nodes...)); err != nil {
		t.Errorf("BootstrapCluster again: %v, want nil (already bootstrapped)", err)
	}
	apply(t, g.follower(nil).store, PutNode{Node: Node{ID: "n"}})
}

func TestClusterTransferLeadership(t *testing.T) {
	g := newGroup(t, 3)
	ld := g.leader(nil)
	target := g.follower(nil)
	ctx := ctxTimeout(t, clusterWait)

	if err := target.store.TransferLeadership(ctx, ""); !errors.Is(err, ErrNotLeader) {
		t.Errorf("TransferLeadership on a follower: %v, want not leader", err)
	}
	if err := ld.store.TransferLeadership(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("TransferLeadership to nope: %v, want not found", err)
	}
	if err := ld.store.TransferLeadership(ctx, target.id); err != nil {
		t.Fatalf("TransferLeadership(%s): %v", target.id, err)
	}
	if got := g.leader(nil); got != target {
		t.Errorf("leader after transfer is %s, want %s", got.id, target.id)
	}
	if err := target.store.TransferLeadership(ctx, ""); err != nil {
		t.Fatalf("TransferLeadership(any): %v", err)
	}
	if got := g.leader(nil); got == target {
		t.Errorf("leader after transfer to any is still %s", got.id)
	}
	apply(t, target.store, PutNode{Node: Node{ID: "after-transfers"}})
}

func TestConfigModes(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Second)
	ca := newTestCA(t, "ca")
	server, client := tlsPair(ca, ca.issue(t, "n"))
	tr, closer, err := NewTransport("127.0.0.1:0", "", server, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	self := Peer{ID: "n", Addr: string(tr.LocalAddr())}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"peers without transport", Config{Peers: []Peer{self}}, "network transport"},
		{"join without transport", Config{Join: true}, "network transport"},
		{"peers and join", Config{Peers: []Peer{self}, Join: true, Transport: tr}, "only one"},
		{"peers without self", Config{Peers: []Peer{{ID: "m", Addr: "127.0.0.1:9"}}, Transport: tr}, "do not include"},
		{"duplicate peer", Config{Peers: []Peer{self, self}, Transport: tr}, "twice"},
		{"unroutable peer", Config{Peers: []Peer{self, {ID: "m", Addr: "0.0.0.0:9"}}, Transport: tr}, "not routable"},
	} {
		tc.cfg.DataDir, tc.cfg.NodeID, tc.cfg.Logger = t.TempDir(), "n", testLogger(t)
		s, err := Open(ctx, tc.cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestClusterOpenDoesNotWaitForQuorum(t *testing.T) {
	g := newTestGroup(t)
	nodes := []*testNode{g.addNode("q-1"), g.addNode("q-2"), g.addNode("q-3")}
	peers := peersOf(nodes...)
	start := time.Now()
	g.open(nodes[0], func(c *Config) { c.Peers = peers })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Open of one server of three took %v, want it not to wait for a quorum", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := nodes[0].store.WaitLeader(ctx); !errdefs.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLeader alone: %v, want unavailable after the deadline", err)
	}
	if _, err := nodes[0].store.Apply(ctx, PutNode{Node: Node{ID: "x"}}); !errdefs.IsUnavailable(err) {
		t.Errorf("Apply without a quorum: %v, want unavailable", err)
	}
	// The others come up later; the group forms and the write goes through.
	for _, n := range nodes[1:] {
		g.open(n, func(c *Config) { c.Peers = peers })
	}
	g.leader(nil)
	apply(t, nodes[0].store, PutNode{Node: Node{ID: "y"}})
}
