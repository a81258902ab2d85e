package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// echo serves TCP and UDP echo on the same port inside a node until the
// test ends.
type echo struct {
	addr string
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup
}

func startEcho(t *testing.T, b *Bed, n *Node) *echo {
	t.Helper()
	ctx := context.Background()
	var ln net.Listener
	var pc net.PacketConn
	var err error
	if n == nil { // the host, on the bed's bridge address
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp4", b.HostIP.String()+":0")
	} else {
		ln, err = n.Listen(ctx, "tcp4", n.IP.String()+":0")
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == nil {
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(ctx, "udp4", ln.Addr().String())
	} else {
		pc, err = n.ListenPacket(ctx, "udp4", ln.Addr().String())
	}
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	e := &echo{addr: ln.Addr().String(), ln: ln, pc: pc}
	var mu sync.Mutex
	var conns []net.Conn
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			e.wg.Add(1)
			go func() { defer e.wg.Done(); _, _ = io.Copy(c, c) }()
		}
	}()
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:k], from)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

// dialer dials from a node, or from the host when n is nil.
func dial(ctx context.Context, n *Node, network, addr string) (net.Conn, error) {
	if n == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return n.DialContext(ctx, network, addr)
}

// reach checks a TCP round trip and a UDP round trip to e from n (nil:
// the host), each within timeout.
func reach(n *Node, e *echo, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, network := range []string{"tcp4", "udp4"} {
		c, err := dial(ctx, n, network, e.addr)
		if err != nil {
			return fmt.Errorf("%s dial: %w", network, err)
		}
		err = roundTrip(c, timeout)
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", network, err)
		}
	}
	return nil
}

func roundTrip(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echo answered %q", line)
	}
	return nil
}

func name(n *Node) string {
	if n == nil {
		return "host"
	}
	return n.String()
}

// probe is one expectation: from (nil: the host) reaches e on node to, or
// (cut) neither TCP nor UDP gets through within a second.
type probe struct {
	from *Node
	e    *echo
	to   *Node
	cut  bool
}

// expect checks the probes at the same time, so a stage of the test takes
// about a second however many cuts it checks.
func expect(t *testing.T, probes ...probe) {
	t.Helper()
	errs := make([]string, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !p.cut {
				if err := reach(p.from, p.e, 2*time.Second); err != nil {
					errs[i] = fmt.Sprintf("%s -> %s: %v, want TCP and UDP through", name(p.from), name(p.to), err)
				}
				return
			}
			for _, network := range []string{"tcp4", "udp4"} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				c, err := dial(ctx, p.from, network, p.e.addr)
				if err == nil {
					err = roundTrip(c, 500*time.Millisecond)
					c.Close()
				}
				cancel()
				if err == nil {
					errs[i] += fmt.Sprintf("%s -> %s over %s got through a partition; ", name(p.from), name(p.to), network)
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}

// A bed's nodes reach each other and the host over TCP and UDP; Partition
// cuts one node off both ways (an established connection stalls too);
// PartitionBetween cuts only the pair; Heal restores; Close leaves nothing.
func TestBedPartitionAndHeal(t *testing.T) {
	t.Parallel()
	b := NewT(t, 3)
	n1, n2, n3 := b.Node(1), b.Node(2), b.Node(3)
	if !b.Subnet.Contains(n1.IP) || !b.Subnet.Contains(b.HostIP) || n1.IP == n2.IP {
		t.Fatalf("addresses: subnet %s host %s nodes %s %s", b.Subnet, b.HostIP, n1.IP, n2.IP)
	}
	e1, e2, e3, eh := startEcho(t, b, n1), startEcho(t, b, n2), startEcho(t, b, n3), startEcho(t, b, nil)

	expect(t,
		probe{from: n2, e: e1, to: n1},
		probe{from: n1, e: e2, to: n2},
		probe{from: nil, e: e1, to: n1},
		probe{from: n1, e: eh, to: nil}, // the host's bridge address
		probe{from: n3, e: e2, to: n2})

	// A connection open before the partition.
	ctx := context.Background()
	old, err := n2.DialContext(ctx, "tcp4", e1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := roundTrip(old, 2*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := b.Partition(ctx, n1); err != nil {
		t.Fatal(err)
	}
	expect(t,
		probe{from: n2, e: e1, to: n1, cut: true},
		probe{from: n1, e: e2, to: n2, cut: true},
		probe{from: nil, e: e1, to: n1, cut: true},
		probe{from: n1, e: eh, to: nil, cut: true},
		probe{from: n1, e: e3, to: n3, cut: true},
		probe{from: n3, e: e2, to: n2}, // the others still talk
		probe{from: n1, e: e1, to: n1}) // and the node to itself
	if err := roundTrip(old, 500*time.Millisecond); err == nil {
		t.Error("an established connection still carried data through a partition")
	}

	if err := b.Heal(ctx, n1); err != nil {
		t.Fatal(err)
	}
	expect(t,
		probe{from: n2, e: e1, to: n1},
		probe{from: n1, e: e2, to: n2},
		probe{from: nil, e: e1, to: n1},
		probe{from: n1, e: eh, to: nil})

	if err := b.PartitionBetween(ctx, n1, n2); err != nil {
		t.Fatal(err)
	}
	expect(t,
		probe{from: n2, e: e1, to: n1, cut: true},
		probe{from: n1, e: e2, to: n2, cut: true},
		probe{from: n3, e: e1, to: n1},
		probe{from: n2, e: e3, to: n3},
		probe{from: nil, e: e1, to: n1})
	if err := b.Heal(ctx, n2); err != nil { // healing either side heals the pair
		t.Fatal(err)
	}
	expect(t,
		probe{from: n2, e: e1, to: n1},
		probe{from: n1, e: e2, to: n2})

	if err := b.PartitionBetween(ctx, n1, n1); err == nil {
		t.Error("PartitionBetween a node and itself: want an error")
	}
	if err := b.Partition(ctx, n3); err != nil { // left for Close
		t.Fatal(err)
	}
	old.Close()
	// Close with the echo sockets still open: they hold no namespace.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	assertGone(t, b.Tag())
}

// Close kills what a node runs, even a process that left the node's
// network namespace and whose parent is gone (as a container is);
// SignalAll stops and continues them all.
func TestCloseKillsProcesses(t *testing.T) {
	t.Parallel()
	b := NewT(t, 1)
	n := b.Node(1)
	ctx := context.Background()
	cmd := n.Exec(ctx, "sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	out, err := n.Run(ctx, "sh", "-c", "unshare --net sleep 301 >/dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pids, err = n.Pids(ctx)
		if err == nil && slices.Contains(pids, cmd.Process.Pid) && slices.Contains(pids, orphan) && len(pids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pids = %v, %v; want [%d %d] (the command itself, and the orphan in its own namespace)", pids, err, cmd.Process.Pid, orphan)
		}
	}
	waitState(t, orphan, "S") // asleep, not still starting
	if err := n.SignalAll(ctx, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, orphan, "T")
	waitState(t, cmd.Process.Pid, "T")
	if err := n.SignalAll(ctx, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitState(t, orphan, "S")

	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("sleep ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleep still runs after Close")
	}
	waitState(t, orphan, "") // gone (or a zombie for init to reap)
	assertGone(t, b.Tag())
}

// procState is the state letter of a process ("" when it is gone or a
// zombie).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) || s[i+2] == 'Z' {
		return ""
	}
	return s[i+2 : i+3]
}

func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); procState(pid) != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d in state %q, want %q", pid, procState(pid), want)
		}
	}
}

// Commands a node runs see the node's links in /sys/class/net and the
// host's cgroups (runc needs them), and a mount one makes is still there
// for the next (a restarted worker finds its container mounts), never on
// the host.
func TestExecSysfsCgroupsAndMounts(t *testing.T) {
	t.Parallel()
	b := NewT(t, 1)
	n := b.Node(1)
	ctx := context.Background()
	if out, err := n.Run(ctx, "ip", "-6", "addr"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("IPv6 in a node (a way around partitions): %q, %v", out, err)
	}
	out, err := n.Run(ctx, "ls", "/sys/class/net")
	if err != nil || strings.Fields(out)[0] != "eth0" || strings.Contains(out, b.Bridge) {
		t.Errorf("/sys/class/net in the node: %q, %v; want eth0 and lo only", out, err)
	}
	hostCg, _ := exec.Command("ls", "/sys/fs/cgroup").Output()
	if out, err := n.Run(ctx, "ls", "/sys/fs/cgroup"); err != nil || out != string(hostCg) {
		t.Errorf("/sys/fs/cgroup in the node: %q, %v; want the host's %q", out, err, hostCg)
	}
	dir := t.TempDir()
	if _, err := n.Run(ctx, "mount", "-t", "tmpfs", "gantry-netns-test", dir); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Run(ctx, "grep", "-c", " "+dir+" ", "/proc/self/mountinfo"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("a mount made by one command is gone for the next: %q, %v", out, err)
	}
	if host, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(host), dir) {
		t.Errorf("a node's mount showed on the host")
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b.Tag())
}

// Sweep removes a dead run's namespace, links and host rule, and leaves a
// live process's bed alone.
func TestSweepRemovesLeftovers(t *testing.T) {
	t.Parallel()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	live := NewT(t, 1)
	dead := 4194000 // above the usual pid_max; checked below
	for alive(dead) {
		dead--
	}
	tag := DefaultPrefix + pad36(dead, 5) + "zz"
	ctx := context.Background()
	steps := [][]string{
		{"ip", "netns", "add", tag + "-1"},
		{"ip", "link", "add", tag + "br", "type", "bridge"},
		{"ip", "link", "add", tag + "v1", "type", "veth", "peer", "name", "eth0", "netns", tag + "-1"},
		{"iptables", "-A", "FORWARD", "-i", tag + "br", "-o", tag + "br", "-m", "comment", "--comment", commentPrefix + tag, "-j", "ACCEPT"},
	}
	t.Cleanup(func() { // in case Sweep fails
		_ = removeMountNS(ctx, mountDir+"/"+tag+"-1")
		_ = run(ctx, "ip", "netns", "del", tag+"-1")
		_ = run(ctx, "ip", "link", "del", tag+"br")
		_ = run(ctx, "iptables", "-D", "FORWARD", "-i", tag+"br", "-o", tag+"br", "-m", "comment", "--comment", commentPrefix+tag, "-j", "ACCEPT")
	})
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	if err := makeMountNS(ctx, &Node{NS: tag + "-1", MountNS: mountDir + "/" + tag + "-1"}); err != nil {
		t.Fatal(err)
	}
	if live.Node(1).cgroup != "" { // the hierarchy is mounted while live's node exists
		if err := os.Mkdir(cgroupDir+"/"+tag+"-1", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A name that only looks like a bed's is never touched.
	if _, ok := tagOf(DefaultPrefix, "gtbench0"); ok {
		t.Error("tagOf accepted gtbench0")
	}
	if err := Sweep(ctx, DefaultPrefix, nil); err != nil {
		t.Fatal(err)
	}
	assertGone(t, tag)
	if !nsExists(live.Node(1).NS) || !linkExists(live.Bridge) {
		t.Error("Sweep removed the bed of a live process")
	}
	if err := Sweep(ctx, "Bad!", nil); err == nil {
		t.Error("Sweep with an invalid prefix: want an error")
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, "toolongprefix", 1, nil); err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("long prefix: %v", err)
	}
	if _, err := New(ctx, "gtb", 0, nil); err == nil {
		t.Error("0 nodes: want an error")
	}
	if _, err := New(ctx, "gtb", MaxNodes+1, nil); err == nil {
		t.Error("too many nodes: want an error")
	}
}

// assertGone fails the test if anything named for tag is left: a
// namespace, a link or a host iptables rule.
func assertGone(t *testing.T, tag string) {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), tag) {
		t.Errorf("namespace left behind:\n%s", out)
	}
	out, _ = exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(out), tag) {
		t.Errorf("link left behind:\n%s", out)
	}
	out, _ = exec.Command("iptables-save").Output()
	if strings.Contains(string(out), tag) {
		t.Errorf("iptables rule left behind:\n%s", out)
	}
	for _, f := range []string{"/run/netns/" + tag + "-1", mountDir + "/" + tag + "-1"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), tag) {
		t.Errorf("mount left behind:\n%s", b)
	}
	if _, err := os.Stat(cgroupDir + "/" + tag + "-1"); err == nil {
		t.Errorf("cgroup %s/%s-1 left behind", cgroupDir, tag)
	}
}

// helperEnv makes the test binary a process that builds a bed, starts a
// sleep in node 1, prints the bed's tag and waits to be killed.
const helperEnv = "GANTRY_NETNS_CRASH_HELPER"

func TestCrashHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestSweepAfterACrash")
	}
	ctx := context.Background()
	b, err := New(ctx, DefaultPrefix, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Node(1).Exec(ctx, "sleep", "303").Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Partition(ctx, b.Node(2)); err != nil {
		t.Fatal(err)
	}
	fmt.Println("bed", b.Tag())
	time.Sleep(time.Minute)
}

// A test run killed with SIGKILL leaves its bed behind (namespaces, links,
// mounts, host rule, cgroup and a process in a node); the next run's
// Sweep removes all of it.
func TestSweepAfterACrash(t *testing.T) {
	t.Parallel()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	tag, ok := strings.CutPrefix(strings.TrimSpace(line), "bed ")
	if err != nil || !ok {
		t.Fatalf("the helper did not make a bed: %q, %v", line, err)
	}
	ctx := context.Background()
	if !nsExists(tag+"-1") || !linkExists(tag+"br") {
		t.Fatalf("the crashed run left nothing to sweep")
	}
	left, err := nodePids(ctx, tag+"-1", cgroupDir+"/"+tag+"-1")
	if err != nil || len(left) != 1 {
		t.Fatalf("the crashed run's sleep: %v, %v", left, err)
	}
	if err := Sweep(ctx, DefaultPrefix, nil); err != nil {
		t.Fatal(err)
	}
	assertGone(t, tag)
	if _, err := os.Stat(cgroupDir + "/" + tag + "-2"); err == nil {
		t.Error("the crashed run's node 2 cgroup is left")
	}
	waitState(t, left[0], "")
}
