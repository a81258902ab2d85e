package network

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestPublishedPortsAndTeardown(t *testing.T) {
	t.Parallel()
	requireHost(t, "nsenter", "/usr/bin/busybox")
	env := newTestEnv(t)
	ctx := context.Background()

	used := map[int]bool{}
	portA, err := AllocatePort(used, 20000, 29999, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	used[portA] = true
	portB, err := AllocatePort(used, 20000, 29999, "tcp") // the dynamic-port case
	if err != nil {
		t.Fatal(err)
	}
	if portB == portA {
		t.Fatalf("AllocatePort returned used port %d", portB)
	}

	idA, idB := testID(), testID()
	start := time.Now()
	a, err := env.m.Setup(ctx, idA, []PortMapping{{Name: "http", HostPort: portA, ContainerPort: 8080, Protocol: "tcp"}})
	if err != nil {
		t.Fatalf("Setup A: %v", err)
	}
	t.Logf("Setup took %v", time.Since(start))
	b, err := env.m.Setup(ctx, idB, []PortMapping{{Name: "http", HostPort: portB, ContainerPort: 8080}})
	if err != nil {
		t.Fatalf("Setup B: %v", err)
	}
	if a.IP == b.IP || a.IP == "" {
		t.Fatalf("bad IPs: %q and %q", a.IP, b.IP)
	}
	_, subnet, _ := net.ParseCIDR(env.opts.Subnet)
	if !subnet.Contains(net.ParseIP(a.IP)) || !subnet.Contains(net.ParseIP(a.Gateway)) {
		t.Fatalf("IP %s / gateway %s outside %s", a.IP, a.Gateway, env.opts.Subnet)
	}
	if a.NetNS != filepath.Join(env.opts.NetNSDir, idA) || !isNetNS(a.NetNS) {
		t.Fatalf("NetNS %q is not a mounted namespace", a.NetNS)
	}
	if len(b.Ports) != 1 || b.Ports[0].Protocol != "tcp" || b.Ports[0].Name != "http" {
		t.Fatalf("ports not normalised: %+v", b.Ports)
	}

	startHTTPD(t, a.NetNS, "page A")
	startHTTPD(t, b.NetNS, "page B")

	if got := fetch(t, fmt.Sprintf("http://127.0.0.1:%d/", portA)); got != "page A" {
		t.Errorf("127.0.0.1:%d served %q, want page A", portA, got)
	}
	if got := fetch(t, fmt.Sprintf("http://127.0.0.1:%d/", portB)); got != "page B" {
		t.Errorf("127.0.0.1:%d served %q, want page B", portB, got)
	}
	if ip := hostIP(); ip != "" {
		if got := fetch(t, fmt.Sprintf("http://%s:%d/", ip, portA)); got != "page A" {
			t.Errorf("%s:%d served %q, want page A", ip, portA, got)
		}
		if got := fetch(t, fmt.Sprintf("http://%s:%d/", ip, portB)); got != "page B" {
			t.Errorf("%s:%d served %q, want page B", ip, portB, got)
		}
	} else {
		t.Log("host has no non-loopback IPv4 address; skipped that check")
	}
	// Straight to the instance IP from the host, over the bridge.
	if got := fetch(t, fmt.Sprintf("http://%s:8080/", b.IP)); got != "page B" {
		t.Errorf("%s:8080 served %q, want page B", b.IP, got)
	}
	// Instance to instance, and loopback inside an instance.
	out, err := nsExec(a.NetNS, "/usr/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:8080/", b.IP))
	if err != nil || out != "page B" {
		t.Errorf("wget from A to B: %q, %v", out, err)
	}
	out, err = nsExec(b.NetNS, "/usr/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")
	if err != nil || out != "page B" {
		t.Errorf("wget over lo inside B: %q, %v", out, err)
	}

	// Published ports seen from inside an instance: its own (hairpin, back
	// through the bridge) and another's, on the gateway address.
	out, err = nsExec(a.NetNS, "/usr/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/", a.Gateway, portA))
	if err != nil || out != "page A" {
		t.Errorf("hairpin wget from A to %s:%d: %q, %v", a.Gateway, portA, out, err)
	}
	out, err = nsExec(a.NetNS, "/usr/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/", a.Gateway, portB))
	if err != nil || out != "page B" {
		t.Errorf("wget from A to %s:%d: %q, %v", a.Gateway, portB, out, err)
	}

	// Setup again with the same ports returns the same attachment.
	again, err := env.m.Setup(ctx, idA, []PortMapping{{Name: "http", HostPort: portA, ContainerPort: 8080}})
	if err != nil || again.IP != a.IP {
		t.Fatalf("repeated Setup: %+v, %v", again, err)
	}
	// Other ports for an attached id, or another id's host port: conflict.
	if _, err := env.m.Setup(ctx, idA, nil); !errdefs.IsConflict(err) {
		t.Errorf("Setup with other ports: want ErrConflict, got %v", err)
	}
	if _, err := env.m.Setup(ctx, testID(), []PortMapping{{HostPort: portA, ContainerPort: 80}}); !errdefs.IsConflict(err) {
		t.Errorf("Setup on a taken host port: want ErrConflict, got %v", err)
	}

	ids, err := env.m.List(ctx)
	if err != nil || strings.Join(ids, ",") != strings.Join(sortedIDs(idA, idB), ",") {
		t.Fatalf("List = %v, %v; want %s and %s", ids, err, idA, idB)
	}

	start = time.Now()
	if err := env.m.Teardown(ctx, idA); err != nil {
		t.Fatalf("Teardown A: %v", err)
	}
	t.Logf("Teardown took %v", time.Since(start))
	env.assertGone(t, idA, a.IP)
	if err := env.m.Teardown(ctx, idA); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if _, err := env.m.Attachment(ctx, idA); !errdefs.IsNotFound(err) {
		t.Errorf("Attachment after Teardown: want ErrNotFound, got %v", err)
	}

	// Restart: a new Manager adopts B, then tears it down.
	m2 := env.restart(t)
	got, err := m2.Attachment(ctx, idB)
	if err != nil {
		t.Fatalf("Attachment after restart: %v", err)
	}
	if got.IP != b.IP || got.Gateway != b.Gateway || got.NetNS != b.NetNS ||
		len(got.Ports) != 1 || got.Ports[0] != b.Ports[0] {
		t.Errorf("Attachment after restart = %+v, want %+v", got, b)
	}
	if got := fetch(t, fmt.Sprintf("http://127.0.0.1:%d/", portB)); got != "page B" {
		t.Errorf("after restart 127.0.0.1:%d served %q", portB, got)
	}
	if err := m2.Teardown(ctx, idB); err != nil {
		t.Fatalf("Teardown after restart: %v", err)
	}
	env.assertGone(t, idB, b.IP)

	// The released addresses are usable again.
	c, err := m2.Setup(ctx, idA, nil)
	if err != nil {
		t.Fatalf("Setup after Teardown: %v", err)
	}
	if err := m2.Teardown(ctx, idA); err != nil {
		t.Fatal(err)
	}
	env.assertGone(t, idA, c.IP)
}

func sortedIDs(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}

// TestTeardownAfterNetNSVanished simulates a reboot that emptied /run: the
// namespace is gone but the cache, the IP and the iptables rules are not.
func TestTeardownAfterNetNSVanished(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := context.Background()
	id := testID()
	port, err := AllocatePort(nil, 30000, 39999, "udp")
	if err != nil {
		t.Fatal(err)
	}
	att, err := env.m.Setup(ctx, id, []PortMapping{{HostPort: port, ContainerPort: 53, Protocol: "UDP"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := removeNetNS(att.NetNS); err != nil {
		t.Fatal(err)
	}
	m2 := env.restart(t)
	if _, err := m2.Attachment(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("Attachment with its netns gone: want ErrNotFound, got %v", err)
	}
	ids, err := m2.List(ctx)
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("List = %v, %v; want [%s]", ids, err, id)
	}
	if err := m2.Teardown(ctx, id); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	env.assertGone(t, id, att.IP)
	if ids, _ := m2.List(ctx); len(ids) != 0 {
		t.Errorf("List after Teardown = %v", ids)
	}
}

// TestSetupReplacesIncomplete: a netns file without a cache entry (a crash
// mid-Setup) is cleaned up and replaced.
func TestSetupReplacesIncomplete(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := context.Background()
	id := testID()
	if err := createNetNS(filepath.Join(env.opts.NetNSDir, id)); err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Attachment(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("Attachment of a bare netns: want ErrNotFound, got %v", err)
	}
	if ids, _ := env.m.List(ctx); len(ids) != 1 || ids[0] != id {
		t.Errorf("List = %v, want [%s]", ids, id)
	}
	port, err := AllocatePort(nil, 30000, 39999, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	att, err := env.m.Setup(ctx, id, []PortMapping{{HostPort: port, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}

	// A corrupt cache entry: Attachment reports it, Setup replaces the
	// attachment, and Teardown still removes every rule (the portmap DEL
	// has no port list then; the sweep catches its chains).
	if err := os.WriteFile(filepath.Join(env.opts.CacheDir, "results", env.opts.NetworkName+"-"+id+"-eth0"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Attachment(ctx, id); err == nil {
		t.Error("Attachment with a corrupt cache: want an error")
	}
	att2, err := env.m.Setup(ctx, id, nil)
	if err != nil {
		t.Fatalf("Setup over a corrupt cache: %v", err)
	}
	env.assertGone(t, id+"-none", att.IP)
	if err := env.m.Teardown(ctx, id); err != nil {
		t.Fatal(err)
	}
	env.assertGone(t, id, att2.IP)
}

func TestConcurrentSetupTeardown(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := context.Background()
	const n = 6
	var mu sync.Mutex
	used := map[int]bool{}
	ips := map[string]string{}
	var wg sync.WaitGroup
	errc := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		mu.Lock()
		p, err := AllocatePort(used, 40000, 49999, "tcp")
		used[p] = true
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := testID()
			att, err := env.m.Setup(ctx, id, []PortMapping{{HostPort: p, ContainerPort: 80}, {HostPort: p, ContainerPort: 53, Protocol: "udp"}})
			if err != nil {
				errc <- fmt.Errorf("setup %s: %w", id, err)
				return
			}
			mu.Lock()
			ips[id] = att.IP
			mu.Unlock()
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ip := range ips {
		if seen[ip] {
			t.Errorf("IP %s handed out twice", ip)
		}
		seen[ip] = true
	}
	for id := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := env.m.Teardown(ctx, id); err != nil {
				errc <- fmt.Errorf("teardown %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for id, ip := range ips {
		env.assertGone(t, id, ip)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	m := &Manager{} // validation happens before any use of the Manager
	ctx := context.Background()
	for _, id := range []string{"", "../x", "a/b", "-x", "x y", strings.Repeat("a", maxIDLen+1)} {
		if _, err := m.Setup(ctx, id, nil); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "id") {
			t.Errorf("Setup(%q): want ErrInvalid naming id, got %v", id, err)
		}
		if err := m.Teardown(ctx, id); !errdefs.IsInvalid(err) {
			t.Errorf("Teardown(%q): want ErrInvalid, got %v", id, err)
		}
	}
	cases := []struct {
		p    PortMapping
		want string
	}{
		{PortMapping{HostPort: 0, ContainerPort: 80}, "hostPort"},
		{PortMapping{HostPort: 65536, ContainerPort: 80}, "hostPort"},
		{PortMapping{Name: "web", HostPort: 80, ContainerPort: 0}, "ports[0] (web).containerPort"},
		{PortMapping{HostPort: 80, ContainerPort: 70000}, "containerPort"},
		{PortMapping{HostPort: 80, ContainerPort: 80, Protocol: "sctp"}, "protocol"},
	}
	for _, c := range cases {
		_, err := m.Setup(ctx, "ok-id", []PortMapping{c.p})
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Setup with %+v: want ErrInvalid naming %s, got %v", c.p, c.want, err)
		}
	}
	_, err := m.Setup(ctx, "ok-id", []PortMapping{{HostPort: 80, ContainerPort: 80}, {HostPort: 80, ContainerPort: 81, Protocol: "TCP"}})
	if !errdefs.IsInvalid(err) {
		t.Errorf("duplicate host port: want ErrInvalid, got %v", err)
	}

	for _, o := range []Options{
		{Subnet: "10.0.0.0"}, {Subnet: "fd00::/64"}, {Subnet: "10.0.0.0/30"},
		{Bridge: "a-very-long-bridge-name"}, {NetworkName: "bad/name"}, {CacheDir: "relative"},
	} {
		if _, err := New(ctx, o); !errdefs.IsInvalid(err) {
			t.Errorf("New(%+v): want ErrInvalid, got %v", o, err)
		}
	}
}

func TestNewReportsMissingPlugins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := New(context.Background(), Options{PluginDirs: []string{dir}, CacheDir: dir})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "containernetworking-plugins") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want ErrUnavailable naming the package and %s, got %v", dir, err)
	}
}

func TestNewPreparesHost(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("ip_forward = %q, %v", b, err)
	}
	guard := append([]string{"-w", "-C"}, localnetGuardRule(env.opts.Bridge)...)
	id := testID()
	if _, err := env.m.Setup(context.Background(), id, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := runIPTables(context.Background(), "iptables", guard...); err != nil {
		t.Errorf("127.0.0.0/8 guard rule missing while an instance is attached: %v", err)
	}
	if err := env.m.Teardown(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// New on an already prepared dir must not stack another bind mount.
	env.restart(t)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts := 0
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == env.opts.NetNSDir {
			mounts++
			if !strings.Contains(line, "shared:") {
				t.Errorf("netns dir not shared: %s", line)
			}
		}
	}
	if mounts != 1 {
		t.Errorf("netns dir %s is mounted %d times, want 1", env.opts.NetNSDir, mounts)
	}
}

func TestSplitSaveLine(t *testing.T) {
	t.Parallel()
	line := `-A POSTROUTING -s 10.89.1.2/32 -m comment --comment "name: \"gantry\" id: \"nt-1\"" -j CNI-abc`
	got, err := splitSaveLine(line)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-A", "POSTROUTING", "-s", "10.89.1.2/32", "-m", "comment", "--comment", `name: "gantry" id: "nt-1"`, "-j", "CNI-abc"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if !ruleMatches(got, map[string]bool{}, `id: "nt-1"`) || ruleMatches(got, map[string]bool{}, `id: "nt-2"`) {
		t.Error("ruleMatches on the comment is wrong")
	}
	if _, err := splitSaveLine(`-A X --comment "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
	if c := chainName("DN-", "gantry", "x"); len(c) != 28 || !strings.HasPrefix(c, "CNI-DN-") {
		t.Errorf("chain name %q", c)
	}
}

func TestAllocatePort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if busy >= 65535 {
		t.Skip("listener got the top port")
	}
	// Range [busy, busy+1]: busy is bound, so only busy+1 can come back,
	// unless it is in used.
	p, err := AllocatePort(nil, busy, busy+1, "tcp")
	if err == nil && p != busy+1 {
		t.Errorf("AllocatePort returned %d; %d is bound", p, busy)
	}
	if _, err := AllocatePort(map[int]bool{busy + 1: true}, busy, busy+1, "tcp"); !errdefs.IsUnavailable(err) {
		t.Errorf("all ports taken: want ErrUnavailable, got %v", err)
	}
	if _, err := AllocatePort(nil, 10, 5, "tcp"); !errdefs.IsInvalid(err) {
		t.Errorf("lo > hi: want ErrInvalid, got %v", err)
	}
	if _, err := AllocatePort(nil, 0, 5, "tcp"); !errdefs.IsInvalid(err) {
		t.Errorf("port 0: want ErrInvalid, got %v", err)
	}
	if _, err := AllocatePort(nil, 5, 6, "icmp"); !errdefs.IsInvalid(err) {
		t.Errorf("bad proto: want ErrInvalid, got %v", err)
	}
	if p, err := AllocatePort(nil, 40000, 40100, "udp"); err != nil || p < 40000 || p > 40100 {
		t.Errorf("udp: %d, %v", p, err)
	}
}

func BenchmarkSetupTeardown(b *testing.B) {
	env := newTestEnv(b)
	ctx := context.Background()
	var setup, teardown time.Duration
	for i := 0; i < b.N; i++ {
		id := testID()
		t0 := time.Now()
		if _, err := env.m.Setup(ctx, id, []PortMapping{{HostPort: 50000 + i%10000, ContainerPort: 80}}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := env.m.Teardown(ctx, id); err != nil {
			b.Fatal(err)
		}
		setup += t1.Sub(t0)
		teardown += time.Since(t1)
	}
	b.ReportMetric(float64(setup.Milliseconds())/float64(b.N), "setup-ms/op")
	b.ReportMetric(float64(teardown.Milliseconds())/float64(b.N), "teardown-ms/op")
}

// The network's masquerade and guard rules exist exactly while instances
// are attached: none after New on an idle network, one of each from the
// first Setup on (also across a restart), none after the last Teardown,
// back on the next Setup; RemoveNetwork takes them away with the bridge.
func TestNetworkRulesFollowAttachments(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	save := func() string {
		out, err := exec.Command("iptables-save").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	masq := "gantry: masquerade " + env.opts.Bridge
	guard := "-i " + env.opts.Bridge + " "
	want := func(when string, n int) {
		t.Helper()
		out := save()
		if got := strings.Count(out, masq); got != n {
			t.Fatalf("%s: %d masquerade rules, want %d", when, got, n)
		}
		if got := strings.Count(out, guard); got != n {
			t.Fatalf("%s: %d guard rules, want %d", when, got, n)
		}
	}
	want("after New with nothing attached", 0)
	a, b := testID(), testID()
	att, err := env.m.Setup(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	want("after the first Setup", 1)
	if strings.Contains(save(), att.IP+"/32") {
		t.Fatalf("no per-instance rule expected for %s:\n%s", att.IP, save())
	}
	if _, err := env.m.Setup(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	want("after a second Setup", 1)
	m2 := env.restart(t) // instances survive a restart, and so do the rules
	want("after a restart with instances attached", 1)
	if err := m2.Teardown(ctx, a); err != nil {
		t.Fatal(err)
	}
	want("while one instance is still attached", 1)
	if err := m2.Teardown(ctx, b); err != nil {
		t.Fatal(err)
	}
	want("after the last Teardown", 0)
	if _, err := New(ctx, env.opts); err != nil {
		t.Fatal(err)
	}
	want("after a restart with nothing attached", 0)
	if _, err := m2.Setup(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	want("after attaching again", 1)
	if err := m2.Teardown(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Rules a crashed run left behind are removed at the next start.
	if err := installNetworkRules(ctx, env.opts.Bridge, env.opts.Subnet); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, env.opts); err != nil {
		t.Fatal(err)
	}
	want("after a start on leftovers", 0)
	if err := RemoveNetwork(ctx, env.opts.Bridge, env.opts.Subnet); err != nil {
		t.Fatal(err)
	}
	if out := save(); strings.Contains(out, masq) || strings.Contains(out, guard) {
		t.Fatalf("rules left after RemoveNetwork:\n%s", out)
	}
	if _, err := os.Stat("/sys/class/net/" + env.opts.Bridge); err == nil {
		t.Fatal("bridge left after RemoveNetwork")
	}
}

// A host port some program listens on (here on 127.0.0.1 only, like
// gantry's own endpoint) cannot be published: the DNAT rule would take its
// connections over.
func TestCheckHostPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if err := CheckHostPort(busy, "tcp"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "in use by a program on this host") {
		t.Errorf("port %d with a listener: err = %v, want a conflict", busy, err)
	}
	u, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := CheckHostPort(u.LocalAddr().(*net.UDPAddr).Port, "UDP"); !errdefs.IsConflict(err) {
		t.Errorf("udp port in use: err = %v, want a conflict", err)
	}
	free, err := AllocatePort(nil, 40000, 40999, "tcp")
	if err != nil {
		t.Skip(err)
	}
	if err := CheckHostPort(free, ""); err != nil {
		t.Errorf("free port %d: %v", free, err)
	}
}

// The longest instance id the controller makes (a 63-character service
// name, slot 999, a 6-character suffix) attaches, publishes and tears down.
func TestLongestInstanceID(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	ctx := context.Background()
	id := strings.Repeat("l", 59) + randHex(2) + "-999-" + randHex(3)
	if len(id) != 74 {
		t.Fatalf("test id is %d characters", len(id))
	}
	port, err := AllocatePort(nil, 20000, 29999, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	a, err := env.m.Setup(ctx, id, []PortMapping{{Name: "http", HostPort: port, ContainerPort: 8080}})
	if err != nil {
		t.Fatalf("Setup of a %d-character id: %v", len(id), err)
	}
	if a.IP == "" || len(a.Ports) != 1 {
		t.Fatalf("attachment %+v", a)
	}
	if err := env.m.Teardown(ctx, id); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	if out, _ := exec.Command("iptables-save", "-t", "nat").Output(); strings.Contains(string(out), id) {
		t.Errorf("rules for %s left after teardown", id)
	}
}

// A full subnet says so, with ErrUnavailable and a hint to widen it,
// instead of blaming the CNI plugins.
func TestSubnetFull(t *testing.T) {
	t.Parallel()
	requireHost(t)
	suffix := randHex(4)
	root := filepath.Join("/run", "gantry-nettest-"+suffix)
	opts := Options{
		CacheDir:    filepath.Join(t.TempDir(), "cni"),
		NetNSDir:    filepath.Join(root, "netns"),
		Bridge:      "gt" + suffix,
		Subnet:      fmt.Sprintf("10.90.%d.0/29", subnetSeq.Add(1)%256), // 5 addresses besides the gateway
		NetworkName: "nt" + suffix,
	}
	m, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		ids, _ := m.List(ctx)
		for _, id := range ids {
			if err := m.Teardown(ctx, id); err != nil {
				t.Errorf("cleanup teardown %s: %v", id, err)
			}
		}
		if err := RemoveNetwork(ctx, opts.Bridge, opts.Subnet); err != nil {
			t.Errorf("remove network: %v", err)
		}
		_ = exec.Command("umount", "-l", opts.NetNSDir).Run()
		_ = os.RemoveAll(root)
	})
	var full error
	for i := 0; i < 8 && full == nil; i++ {
		_, full = m.Setup(ctx, testID(), nil)
	}
	if !errdefs.IsUnavailable(full) || !strings.Contains(full.Error(), "is full") || !strings.Contains(full.Error(), "--subnet") {
		t.Errorf("setup past the subnet's size: %v, want ErrUnavailable saying the subnet is full", full)
	}
}
