package membership

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's Shutdown does not wait for an in-flight probe: it
		// ends when its ack timer fires, up to a (Lifeguard-stretched)
		// probe interval later. Everything else must be gone.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).sendPingAndWaitForAck"),
	)
}

func TestJoinAllSeeEachOtherWithMeta(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "see", 4, withLabel("disk", "ssd"))
	for _, n := range nodes {
		members := n.Members()
		if len(members) != 4 {
			t.Fatalf("%s sees %d members, want 4: %+v", n.Name(), len(members), members)
		}
		for _, mb := range members {
			if mb.State != StateAlive || mb.MetaErr != nil {
				t.Errorf("%s sees %s %s (meta err %v)", n.Name(), mb.Name, mb.State, mb.MetaErr)
			}
			if mb.Meta.Role != RoleWorker || mb.Meta.CPU != 2000 || mb.Meta.Memory != 1<<30 ||
				mb.Meta.Zone != "z1" || mb.Meta.Labels["disk"] != "ssd" || mb.Meta.RPCAddr != "127.0.0.1:7434" {
				t.Errorf("%s sees %s with meta %+v", n.Name(), mb.Name, mb.Meta)
			}
			if mb.Since.IsZero() || !strings.HasPrefix(mb.Addr, "127.0.0.") {
				t.Errorf("%s sees %s with since %v addr %q", n.Name(), mb.Name, mb.Since, mb.Addr)
			}
		}
		// Every node got a join event for every node, itself included.
		for _, other := range nodes {
			n.waitEvent(t, EventJoin, other.Name(), 2*time.Second)
		}
	}
	hosts := map[string]bool{}
	for _, mb := range nodes[0].Members() {
		hosts[strings.Split(mb.Addr, ":")[0]] = true
	}
	if len(hosts) != 4 {
		t.Errorf("members share loopback addresses: %v", hosts)
	}
	if got := nodes[0].Local(); got.Name != "see-0" || got.Addr != nodes[0].Addr() || got.Meta.Labels["disk"] != "ssd" {
		t.Errorf("Local() = %+v", got)
	}
}

func TestUpdateMetaPropagates(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "upd", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	meta := Meta{Role: RoleServer, RPCAddr: "127.0.0.1:17434", RaftAddr: "127.0.0.1:17435", CPU: 4000, Memory: 2 << 30,
		Zone: "z2", Labels: map[string]string{"gpu": "yes"}}
	if err := nodes[2].UpdateMeta(ctx, meta); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[:2] {
		ev := n.waitEvent(t, EventUpdate, "upd-2", 5*time.Second)
		if ev.Member.Meta.Zone != "z2" || ev.Member.Meta.Labels["gpu"] != "yes" || ev.Member.Meta.RaftAddr != "127.0.0.1:17435" {
			t.Errorf("%s update event meta %+v", n.Name(), ev.Member.Meta)
		}
		mb, ok := n.member("upd-2")
		if !ok || mb.Meta.CPU != 4000 || mb.Meta.Role != RoleServer {
			t.Errorf("%s Members has upd-2 = %+v", n.Name(), mb)
		}
	}
	// An invalid update is refused and changes nothing.
	err := nodes[2].UpdateMeta(ctx, Meta{Role: "boss"})
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "role") {
		t.Errorf("UpdateMeta with a bad role: %v", err)
	}
	if got := nodes[2].Local().Meta.Zone; got != "z2" {
		t.Errorf("meta after refused update has zone %q", got)
	}
}

// TestFailureDetectionTime measures how long the survivors take to report a
// node that stopped without leaving. Run it alone to read the figure:
//
//	go test -run TestFailureDetectionTime -v ./membership/
func TestFailureDetectionTime(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "fail", 4)
	victim := nodes[3]
	killed := time.Now()
	victim.stop(t)
	var worst time.Duration
	for _, n := range nodes[:3] {
		n.waitEvent(t, EventFailed, victim.Name(), 8*time.Second)
	}
	for _, n := range nodes[:3] {
		ev := n.waitEvent(t, EventFailed, victim.Name(), 0)
		d := ev.Member.Since.Sub(killed)
		worst = max(worst, d)
		t.Logf("%s declared %s failed after %v", n.Name(), victim.Name(), d.Round(time.Millisecond))
		if ev.Member.State != StateDead {
			t.Errorf("failed event state %s", ev.Member.State)
		}
		if mb, ok := n.member(victim.Name()); !ok || mb.State != StateDead {
			t.Errorf("%s Members has %s = %+v", n.Name(), victim.Name(), mb)
		}
		if c := n.countEvents(EventLeave, victim.Name()); c != 0 {
			t.Errorf("%s got %d leave events for a node that did not leave", n.Name(), c)
		}
	}
	t.Logf("failure detection time (LANProfile, 4 nodes): worst of 3 observers %v", worst.Round(time.Millisecond))
	if worst > 8*time.Second {
		t.Errorf("failure detection took %v, want well under 8s", worst)
	}
}

func TestGracefulLeave(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "leave", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nodes[2].Leave(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	nodes[2].stop(t)
	for _, n := range nodes[:2] {
		ev := n.waitEvent(t, EventLeave, "leave-2", 3*time.Second)
		if ev.Member.State != StateLeft {
			t.Errorf("leave event state %s", ev.Member.State)
		}
		if c := n.countEvents(EventFailed, "leave-2"); c != 0 {
			t.Errorf("%s got %d failed events for a node that left", n.Name(), c)
		}
		if mb, _ := n.member("leave-2"); mb.State != StateLeft {
			t.Errorf("%s Members has leave-2 %s", n.Name(), mb.State)
		}
	}
	if err := nodes[2].Leave(ctx, time.Second); !errdefs.IsConflict(err) {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	a := startNode(t, "key-a", true)
	b := startNode(t, "key-b", true, withKey([]byte("another-16b-key!")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := b.Join(ctx, []string{a.Addr()})
	if err == nil || n != 0 {
		t.Fatalf("join with another key: contacted %d, err %v", n, err)
	}
	t.Logf("join error: %v", err)
	if !strings.Contains(err.Error(), "cluster key differs") || !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("join error does not say the key differs: %v", err)
	}
	var he *errdefs.HintError
	if !errors.As(err, &he) || !strings.Contains(he.Hint, "gossip key") {
		t.Errorf("join error has no hint: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := a.alive(); got != 1 {
		t.Errorf("node a sees %d alive members after a foreign join, want 1", got)
	}
}

func TestJoinUnreachable(t *testing.T) {
	t.Parallel()
	a := startNode(t, "unreach-a", true)
	gone := startNode(t, "unreach-gone", true)
	addr := gone.Addr()
	gone.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.Join(ctx, []string{addr})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "could be reached") {
		t.Errorf("join of a closed port: %v", err)
	}
	if _, err := a.Join(ctx, nil); !errdefs.IsInvalid(err) {
		t.Errorf("join of no addresses: %v", err)
	}
	cancelled, stop := context.WithCancel(ctx)
	stop()
	if _, err := a.Join(cancelled, []string{addr}); !errors.Is(err, context.Canceled) {
		t.Errorf("join with a cancelled context: %v", err)
	}
	// One good address is enough; the bad one is only logged.
	b := startNode(t, "unreach-b", true)
	if n, err := a.Join(ctx, []string{addr, b.Addr()}); err != nil || n != 1 {
		t.Errorf("join with one good address: contacted %d, err %v", n, err)
	}
}

func TestRejoinAfterFailure(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "rejoin", 3)
	addr := nodes[2].Addr()
	nodes[2].stop(t)
	for _, n := range nodes[:2] {
		n.waitEvent(t, EventFailed, "rejoin-2", 8*time.Second)
	}
	back := startNode(t, "rejoin-2", true, withBind(addr), withLabel("gen", "2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := back.Join(ctx, []string{nodes[0].Addr()}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, n.Name()+" sees rejoin-2 join twice", func() bool {
			return n.countEvents(EventJoin, "rejoin-2") == 2
		})
		waitFor(t, 5*time.Second, n.Name()+" sees rejoin-2 alive with new meta", func() bool {
			mb, ok := n.member("rejoin-2")
			return ok && mb.State == StateAlive && mb.Meta.Labels["gen"] == "2"
		})
	}
	waitFor(t, 5*time.Second, "the returned node sees all", func() bool { return back.alive() == 3 })
}

func TestEventsNeverBlock(t *testing.T) {
	t.Parallel()
	// The first node's events are never read and its buffer holds one.
	stuck := startNode(t, "block-0", false, withBuffer(1))
	others := []*node{startNode(t, "block-1", true), startNode(t, "block-2", true), startNode(t, "block-3", true)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range others {
		if _, err := n.Join(ctx, []string{stuck.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := others[0].UpdateMeta(ctx, Meta{Role: RoleWorker, CPU: int64(1000 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Memberlist kept working through the full channel: the stuck node
	// converges, and reconciling from Members gives the truth.
	waitFor(t, 5*time.Second, "the stuck node sees every node and the last meta", func() bool {
		mb, ok := stuck.member("block-1")
		return stuck.alive() == 4 && ok && mb.Meta.CPU == 1002
	})
	if stuck.Dropped() == 0 {
		t.Errorf("no events dropped with a one-slot buffer nobody reads")
	}
	t.Logf("dropped %d events", stuck.Dropped())
}

// TestPeerWithUnreadableMeta joins a plain memberlist node (same key) that
// gossips meta Gantry cannot parse: it is listed with MetaErr, no panic.
func TestPeerWithUnreadableMeta(t *testing.T) {
	t.Parallel()
	a := startNode(t, "foreign-a", true)
	mc := memberlist.DefaultLocalConfig()
	mc.Name = "foreign-b"
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = "127.0.0.1", 0, 0
	mc.SecretKey = testKey
	mc.Delegate = rawMeta([]byte{9, '{'})
	mc.Logger = newStdLogger(testLogger(t))
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a lists foreign-b", func() bool { _, ok := a.member("foreign-b"); return ok })
	mb, _ := a.member("foreign-b")
	if mb.MetaErr == nil || !strings.Contains(mb.MetaErr.Error(), "version 9") || mb.State != StateAlive {
		t.Errorf("foreign member = %+v", mb)
	}
	ev := a.waitEvent(t, EventJoin, "foreign-b", time.Second)
	if ev.Member.MetaErr == nil {
		t.Errorf("join event of a foreign member has no MetaErr")
	}
}

type rawMeta []byte

func (r rawMeta) NodeMeta(int) []byte           { return r }
func (rawMeta) NotifyMsg([]byte)                {}
func (rawMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (rawMeta) LocalState(bool) []byte          { return nil }
func (rawMeta) MergeRemoteState([]byte, bool)   {}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	nodes := cluster(t, "rot", 3)
	newKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.UseKey(newKey); !errdefs.IsNotFound(err) {
			t.Errorf("UseKey before InstallKey: %v", err)
		}
	}
	for _, step := range []func(*node) error{
		func(n *node) error { return n.InstallKey(newKey) },
		func(n *node) error { return n.UseKey(newKey) },
		func(n *node) error { return n.RemoveKey(testKey) },
	} {
		for _, n := range nodes {
			if err := step(n); err != nil {
				t.Fatalf("%s: %v", n.Name(), err)
			}
		}
	}
	for _, n := range nodes {
		keys := n.Keys()
		if len(keys) != 1 || string(keys[0]) != string(newKey) {
			t.Errorf("%s keys after rotation: %d keys", n.Name(), len(keys))
		}
		if err := n.RemoveKey(newKey); !errdefs.IsConflict(err) {
			t.Errorf("removing the primary key: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The cluster still works with the new key only.
	fresh := startNode(t, "rot-new", true, withKey(newKey))
	if _, err := fresh.Join(ctx, []string{nodes[1].Addr()}); err != nil {
		t.Fatalf("node with the new key: %v", err)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" sees the new node", func() bool { return n.alive() == 4 })
	}
	old := startNode(t, "rot-old", true)
	if _, err := old.Join(ctx, []string{nodes[0].Addr()}); err == nil || !strings.Contains(err.Error(), "cluster key differs") {
		t.Errorf("node with the removed key joined: %v", err)
	}
}

func TestConfigRefused(t *testing.T) {
	t.Parallel()
	base := func() Config {
		return Config{Name: "cfg", Bind: "127.0.0.1:0", Key: testKey, Meta: Meta{Role: RoleServer}}
	}
	big := map[string]string{}
	for i := range 40 {
		big[strings.Repeat("k", 5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = strings.Repeat("v", 10)
	}
	cases := []struct {
		name, want string
		mod        func(*Config)
	}{
		{"empty key", "head -c 32 /dev/urandom", func(c *Config) { c.Key = nil }},
		{"short key", "want 16, 24 or 32", func(c *Config) { c.Key = []byte("short") }},
		{"no name", "unique --name", func(c *Config) { c.Name = "" }},
		{"bad role", `role "boss" is unknown`, func(c *Config) { c.Meta.Role = "boss" }},
		{"raft on worker", "only servers", func(c *Config) { c.Meta = Meta{Role: RoleWorker, RaftAddr: "10.0.0.1:7435"} }},
		{"bad rpc addr", "host:port", func(c *Config) { c.Meta.RPCAddr = "nope" }},
		{"meta too big", "gossip limit", func(c *Config) { c.Meta.Labels = big }},
		{"bind hostname", "not an IP", func(c *Config) { c.Bind = "localhost:0" }},
		{"bad profile", "LANProfile", func(c *Config) { c.Profile = Profile{ProbeInterval: time.Second} }},
	}
	for _, tc := range cases {
		cfg := base()
		tc.mod(&cfg)
		m, err := New(context.Background(), cfg)
		if err == nil {
			_ = m.Shutdown()
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want invalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
