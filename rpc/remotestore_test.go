package rpc

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

func openRemote(t *testing.T, cl *Client, cache string) *RemoteStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := OpenRemoteStore(ctx, RemoteStoreConfig{Client: cl, Node: "n1", CacheFile: cache, Wait: time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	return rs
}

func ids(insts []*state.Instance) []string {
	var out []string
	for _, in := range insts {
		out = append(out, in.ID)
	}
	return out
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("Notify did not fire: %s", what)
	}
}

func TestRemoteStoreStaticStability(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), service("db"), instance("web-0-a", "web", "n1", 0), instance("db-0-c", "db", "n2", 0))
	cache := filepath.Join(t.TempDir(), "worker", "assignment.json")
	cl := c.client(t, RoleWorker, "n1")
	ctx := context.Background()
	rs := openRemote(t, cl, cache)

	insts, index := rs.Instances(state.InstanceFilter{Node: "n1"})
	if len(insts) != 1 || insts[0].ID != "web-0-a" || index == 0 {
		t.Fatalf("first snapshot: %v at %d, want web-0-a", ids(insts), index)
	}
	if _, err := rs.Service("web"); err != nil {
		t.Error(err)
	}
	if _, err := rs.Service("db"); !errdefs.IsNotFound(err) {
		t.Errorf("another node's service: err = %v, want ErrNotFound", err)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file: %v, %v; want mode 0600", fi, err)
	}

	// Notify fires on a new snapshot.
	ch := rs.Notify()
	mustApply(t, c.st, instance("web-1-b", "web", "n1", 1))
	waitClosed(t, ch, "new instance on n1")
	if got, _ := rs.Instances(state.InstanceFilter{}); len(got) != 2 {
		t.Errorf("after a new instance: %v, want 2", ids(got))
	}

	// Online, a status goes straight to the leader.
	idx, err := rs.Apply(ctx, state.SetInstanceStatus{ID: "web-0-a", Status: state.InstanceStatus{State: state.StateRunning, PID: 1}})
	if err != nil || idx == 0 {
		t.Fatalf("online apply = %d, %v", idx, err)
	}
	if in, _ := c.st.Instance("web-0-a"); in.PID != 1 {
		t.Errorf("online status not applied: %+v", in.InstanceStatus)
	}

	eventually(t, 5*time.Second, "the snapshot with the status", func() bool { return rs.Index() >= idx })

	// All servers stop: the assignment stays, statuses are queued, the
	// latest per instance winning.
	c.srv.stop()
	eventually(t, 10*time.Second, "the store to notice the servers are gone", func() bool { return !rs.Online() })
	if got, _ := rs.Instances(state.InstanceFilter{Node: "n1"}); len(got) != 2 {
		t.Fatalf("offline: %v, want the 2 known instances kept", ids(got))
	}
	for pid := 2; pid <= 3; pid++ {
		idx, err := rs.Apply(ctx, state.SetInstanceStatus{ID: "web-0-a", Status: state.InstanceStatus{State: state.StateRunning, PID: pid}},
			state.AppendEvent{Event: state.Event{Type: "Started", Node: "n1", Instance: "web-0-a"}})
		if err != nil || idx != 0 {
			t.Fatalf("offline apply = %d, %v; want queued (0, nil)", idx, err)
		}
	}
	if n := rs.Queued(); n != 3 {
		t.Errorf("queued = %d, want 1 status and 2 events", n)
	}
	if in, _ := rs.Instances(state.InstanceFilter{Service: "web"}); in[0].PID != 3 {
		t.Errorf("a queued status does not show in reads: %+v", in[0].InstanceStatus)
	}

	// The worker restarts while the servers are still down: it starts from
	// its disk cache.
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
	rs2 := openRemote(t, cl, cache)
	got, index2 := rs2.Instances(state.InstanceFilter{Node: "n1"})
	if len(got) != 2 || index2 < index || got[0].PID != 1 {
		t.Fatalf("restarted from cache: %v at %d (pid %d), want both instances as last seen", ids(got), index2, got[0].PID)
	}
	if _, err := rs2.Service("web"); err != nil {
		t.Errorf("service from cache: %v", err)
	}
	if idx, err := rs2.Apply(ctx, state.SetInstanceStatus{ID: "web-0-a", Status: state.InstanceStatus{State: state.StateRunning, PID: 4}}); err != nil || idx != 0 {
		t.Fatalf("apply while cut off after restart = %d, %v; want queued", idx, err)
	}
	if rs2.Online() {
		t.Error("restarted store claims to be online with no server")
	}

	// The servers return on the same address: the queue is flushed and the
	// next snapshot includes it.
	ch = rs2.Notify()
	c.srv.start(c.srv.addr)
	eventually(t, 15*time.Second, "the queued status to reach the state", func() bool {
		in, _ := c.st.Instance("web-0-a")
		return rs2.Queued() == 0 && in.PID == 4
	})
	waitClosed(t, ch, "snapshot after the servers returned")
	eventually(t, 5*time.Second, "a snapshot with the flushed status", func() bool {
		in, _ := rs2.Instances(state.InstanceFilter{Service: "web"})
		return rs2.Online() && in[0].PID == 4 && rs2.Index() >= c.st.Index()-1
	})
	// No leftover temporary files beside the cache.
	if err := rs2.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(cache))
	if len(ents) != 1 {
		t.Errorf("cache dir holds %d entries, want only the cache", len(ents))
	}
}

func TestRemoteStoreNeedsCacheOrServer(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cl := NewClient([]string{dead}, ca.clientTLS(ca.issue(t, RoleWorker, "n1")), testLogger(t))
	defer cl.Close()
	_, err = OpenRemoteStore(context.Background(), RemoteStoreConfig{Client: cl, Node: "n1", CacheFile: filepath.Join(t.TempDir(), "a.json")})
	if !errdefs.IsUnavailable(err) {
		t.Errorf("open with no cache and no server: err = %v, want ErrUnavailable", err)
	}
}

func TestRemoteStoreDropsRefusedQueuedWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), instance("web-0-a", "web", "n1", 0), instance("web-1-b", "web", "n2", 1))
	cl := c.client(t, RoleWorker, "n1")
	rs := openRemote(t, cl, filepath.Join(t.TempDir(), "a.json"))
	ctx := context.Background()

	c.srv.stop()
	eventually(t, 10*time.Second, "offline", func() bool { return !rs.Online() })
	// Queued together: one the servers will refuse (another node's
	// instance), one they take.
	run := state.InstanceStatus{State: state.StateRunning}
	for _, id := range []string{"web-1-b", "web-0-a"} {
		if _, err := rs.Apply(ctx, state.SetInstanceStatus{ID: id, Status: run}); err != nil {
			t.Fatal(err)
		}
	}
	c.srv.start(c.srv.addr)
	eventually(t, 15*time.Second, "the queue to drain", func() bool { return rs.Queued() == 0 })
	if in, _ := c.st.Instance("web-0-a"); in.State != state.StateRunning {
		t.Errorf("own status lost with the refused one: %+v", in.InstanceStatus)
	}
	if in, _ := c.st.Instance("web-1-b"); in.State != state.StatePending {
		t.Errorf("another node's instance was changed: %+v", in.InstanceStatus)
	}
}

func TestRemoteStoreQueueBounds(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), instance("web-0-a", "web", "n1", 0))
	ctx := context.Background()
	rs, err := OpenRemoteStore(ctx, RemoteStoreConfig{Client: c.client(t, RoleWorker, "n1"), Node: "n1",
		CacheFile: filepath.Join(t.TempDir(), "a.json"), Wait: time.Second, MaxQueuedEvents: 3, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	c.srv.stop()
	eventually(t, 10*time.Second, "offline", func() bool { return !rs.Online() })
	for i := range 5 {
		_, err := rs.Apply(ctx, state.AppendEvent{Event: state.Event{Type: "Tick", Node: "n1", Message: strconv.Itoa(i)}},
			state.PutNode{Node: state.Node{ID: "n1", CPU: int64(i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := rs.Queued(); n != 4 {
		t.Errorf("queued = %d, want the 3 newest events and 1 node record", n)
	}
	// Only a worker's own reports are queued; anything else fails.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := rs.Apply(short, service("x")); err == nil {
		t.Error("a service write succeeded with no server")
	}
	c.srv.start(c.srv.addr)
	eventually(t, 15*time.Second, "the queue flushed", func() bool { return rs.Queued() == 0 })
	var ticks []string
	for _, e := range c.st.Events(state.EventFilter{}) {
		if e.Type == "Tick" {
			ticks = append(ticks, e.Message)
		}
	}
	if strings.Join(ticks, ",") != "2,3,4" {
		t.Errorf("events after the flush = %v, want the 3 newest in order", ticks)
	}
	if n, err := c.st.Node("n1"); err != nil || n.CPU != 4 {
		t.Errorf("node after the flush = %+v, %v; want the latest record", n, err)
	}
}
