package membership

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey is a fixed AES-256 gossip key for tests.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// tlog is an io.Writer onto t.Log that goes quiet once the test is over:
// memberlist's goroutines may log a line after Shutdown returns.
type tlog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &tlog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// node is a started Membership and the events it has delivered so far.
type node struct {
	*Membership
	mu     sync.Mutex
	events []Event
	done   chan struct{} // closed when Events is closed and drained
}

type nodeOpt func(*Config)

func withKey(k []byte) nodeOpt  { return func(c *Config) { c.Key = k } }
func withBind(a string) nodeOpt { return func(c *Config) { c.Bind = a } }
func withBuffer(n int) nodeOpt  { return func(c *Config) { c.EventBuffer = n } }
func withLabel(k, v string) nodeOpt {
	return func(c *Config) { c.Meta.Labels = map[string]string{k: v} }
}

// startNode starts a node on a random 127.0.0.1 port and shuts it down when
// the test ends. Unless drain is false, a goroutine (stopped by Shutdown
// closing Events) records its events.
func startNode(t *testing.T, name string, drain bool, opts ...nodeOpt) *node {
	t.Helper()
	cfg := Config{
		Name:   name,
		Bind:   "127.0.0.1:0",
		Key:    testKey,
		Logger: testLogger(t),
		Meta: Meta{
			Role:    RoleWorker,
			RPCAddr: "127.0.0.1:7434",
			CPU:     2000,
			Memory:  1 << 30,
			Zone:    "z1",
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	n := &node{Membership: m, done: make(chan struct{})}
	if drain {
		go func() {
			defer close(n.done)
			for ev := range m.Events() {
				n.mu.Lock()
				n.events = append(n.events, ev)
				n.mu.Unlock()
			}
		}()
	} else {
		close(n.done)
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop shuts the node down (no leave) and waits for its event reader.
func (n *node) stop(t *testing.T) {
	t.Helper()
	if err := n.Shutdown(); err != nil {
		t.Errorf("shutdown %s: %v", n.Name(), err)
	}
	<-n.done
}

// firstEvent returns the time of the first recorded event of type typ for
// member name, waiting up to timeout.
func (n *node) waitEvent(t *testing.T, typ EventType, name string, timeout time.Duration) Event {
	t.Helper()
	var got Event
	defer func() {
		if t.Failed() {
			n.mu.Lock()
			t.Logf("%s events: %+v", n.Name(), n.events)
			n.mu.Unlock()
		}
	}()
	waitFor(t, timeout, fmt.Sprintf("%s sees %s %s", n.Name(), typ, name), func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, ev := range n.events {
			if ev.Type == typ && ev.Member.Name == name {
				got = ev
				return true
			}
		}
		return false
	})
	return got
}

// countEvents counts recorded events of type typ for member name.
func (n *node) countEvents(typ EventType, name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, ev := range n.events {
		if ev.Type == typ && ev.Member.Name == name {
			c++
		}
	}
	return c
}

// member returns name as n sees it.
func (n *node) member(name string) (Member, bool) {
	for _, mb := range n.Members() {
		if mb.Name == name {
			return mb, true
		}
	}
	return Member{}, false
}

// alive counts the alive members n sees.
func (n *node) alive() int {
	c := 0
	for _, mb := range n.Members() {
		if mb.State == StateAlive {
			c++
		}
	}
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cluster starts count nodes named prefix-0.. on 127.0.0.2.. and joins them all through
// the first; it waits until every node sees every other one alive.
func cluster(t *testing.T, prefix string, count int, opts ...nodeOpt) []*node {
	t.Helper()
	nodes := make([]*node, count)
	for i := range nodes {
		// Each node on its own loopback address, as on separate hosts.
		o := append([]nodeOpt{withBind(fmt.Sprintf("127.0.0.%d:0", 2+i))}, opts...)
		nodes[i] = startNode(t, fmt.Sprintf("%s-%d", prefix, i), true, o...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range nodes[1:] {
		if got, err := n.Join(ctx, []string{nodes[0].Addr()}); err != nil || got != 1 {
			t.Fatalf("%s join: contacted %d, err %v", n.Name(), got, err)
		}
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" sees all nodes alive", func() bool { return n.alive() == count })
	}
	return nodes
}
