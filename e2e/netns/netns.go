// Package netns is a multi-node test bed on one machine: each node is a
// Linux network namespace with a veth to a shared bridge on the host, so
// that a test can run real gantry processes as separate nodes, cut one off
// (Partition), cut two apart (PartitionBetween), heal them, and kill every
// process of a node.
//
// Nodes reach each other and the host (the bridge address, their default
// gateway) over IPv4 (IPv6 is off in nodes); they have no route beyond the
// host. What a node starts through Exec, containers included, is tracked
// in a cgroup of its own (see cgroupDir), so KillAll and Close end it all,
// as a machine losing power would. Every name a Bed creates
// carries its tag (prefix, the creating process's ID and a sequence
// number), so Sweep can remove what a crashed run left behind without
// touching a bed of a process that still runs.
//
// Each node also has a mount namespace of its own, made once and kept
// (like the network namespace) under /run/gantry-netns: in it /sys is the
// node's (so /sys/class/net lists the node's links) with the host's
// cgroup hierarchies bound under /sys/fs/cgroup (so runc works). Commands
// from Node.Exec run there, and what a process mounts there (container
// root filesystems, network namespace files) outlives it, so a worker
// killed and started again in the same node finds its mounts, as on a
// real machine. (ip netns exec is not used: its fresh /sys hides the
// cgroup mounts, and its mounts die with each process.) Files are the
// host's, /run included: give each gantry in a node its own --data-dir,
// --run-dir and --bridge (gantry dev locks /run/gantry-bridges/BRIDGE).
//
// It needs root, iproute2 (ip), util-linux (nsenter, unshare) and
// iptables; Available says what is missing, and NewT skips the test then.
package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// DefaultPrefix starts the names of the beds NewT creates.
const DefaultPrefix = "gtb"

// MaxNodes bounds the nodes of one bed (one base-36 digit in veth names).
const MaxNodes = 35

// commentPrefix marks host iptables rules a bed adds: "gantry-netns:TAG".
const commentPrefix = "gantry-netns:"

var seq atomic.Int32

// Bed is a bridge on the host and its nodes. Its methods are safe for
// concurrent use.
type Bed struct {
	// Bridge is the host bridge's interface name.
	Bridge string
	// Subnet is the nodes' /24; HostIP (its .1) is on the bridge.
	Subnet netip.Prefix
	HostIP netip.Addr
	// Nodes are numbered from 1: Nodes[0].Index == 1.
	Nodes []*Node

	tag string
	log *slog.Logger

	mu      sync.Mutex
	fwdRule []string // host FORWARD rule spec (without -A/-D), if added
	cuts    []cut    // partition rules installed inside nodes
	closed  bool
}

// Node is one network namespace of a bed.
type Node struct {
	Index int        // 1-based
	NS    string     // network namespace name (ip netns)
	IP    netip.Addr // address of its eth0 on the bed's subnet
	Veth  string     // host side of its veth, a port of the bridge
	// MountNS is the file that holds the node's mount namespace.
	MountNS string
	bed     *Bed
	cgroup  string // the node's cgroup (see cgroupDir), or "" untracked
}

// cut is one partition rule pair installed in node's namespace; peer is
// nil when the node is cut off from everything.
type cut struct {
	node, peer *Node
}

// Available returns nil when beds can be made here, or why not.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "nsenter", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not installed (apt-get install iproute2 iptables util-linux): %w", bin, err)
		}
	}
	return nil
}

// NewT makes a bed of n nodes for a test, first sweeping what crashed
// runs left behind, and closes it when the test ends. It skips the test
// when Available fails and fails it when the bed cannot be made.
func NewT(t testing.TB, n int) *Bed {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("netns bed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := Sweep(ctx, DefaultPrefix, log); err != nil {
		t.Logf("netns: sweeping leftovers: %v", err)
	}
	b, err := New(ctx, DefaultPrefix, n, log)
	if err != nil {
		t.Fatalf("netns bed: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("netns: close bed %s: %v", b.tag, err)
		}
	})
	return b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// New makes a bed of n nodes whose names start with prefix (1 to 4
// lower-case letters). On error nothing of it is left. log may be nil.
func New(ctx context.Context, prefix string, n int, log *slog.Logger) (*Bed, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if n < 1 || n > MaxNodes {
		return nil, fmt.Errorf("netns: %d nodes: want 1 to %d: %w", n, MaxNodes, errdefs.ErrInvalid)
	}
	if err := Available(); err != nil {
		return nil, fmt.Errorf("netns: %w: %w", err, errdefs.ErrUnavailable)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tag := prefix + pad36(os.Getpid(), 5) + pad36(int(seq.Add(1))%(36*36), 2)
	b := &Bed{Bridge: tag + "br", tag: tag, log: log.With("bed", tag)}
	if err := b.create(ctx, n); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := b.Close(cctx); cerr != nil {
			b.log.Warn("netns: cleanup after a failed create", "err", cerr)
		}
		return nil, err
	}
	b.log.Debug("netns: bed up", "bridge", b.Bridge, "subnet", b.Subnet, "nodes", n)
	return b, nil
}

// Tag is the string every name of this bed starts with.
func (b *Bed) Tag() string { return b.tag }

func (b *Bed) create(ctx context.Context, n int) error {
	unlock, err := lockAlloc(ctx)
	if err != nil {
		return err
	}
	// The lock spans choosing the subnet and putting it on the bridge, so
	// two beds made at once (in two processes) never pick the same one.
	err = func() error {
		defer unlock()
		sub, err := freeSubnet(b.tag)
		if err != nil {
			return err
		}
		b.Subnet = sub
		b.HostIP = sub.Addr().Next()
		return runAll(ctx,
			[]string{"ip", "link", "add", b.Bridge, "type", "bridge"},
			[]string{"ip", "addr", "add", b.HostIP.String() + "/24", "dev", b.Bridge},
			[]string{"ip", "link", "set", b.Bridge, "up"})
	}()
	if err != nil {
		return err
	}
	// With br_netfilter loaded, frames crossing the bridge go through the
	// host's FORWARD chain, where another tool's DROP policy or rule would
	// cut nodes apart: accept traffic between the bed's own ports first.
	if bridgeNF() {
		spec := []string{"FORWARD", "-i", b.Bridge, "-o", b.Bridge, "-m", "comment", "--comment", commentPrefix + b.tag, "-j", "ACCEPT"}
		if err := run(ctx, append([]string{"iptables", "-I"}, spec...)...); err != nil {
			return err
		}
		b.mu.Lock()
		b.fwdRule = spec
		b.mu.Unlock()
	}
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-%d", b.tag, i)
		nd := &Node{Index: i, NS: ns, Veth: b.tag + "v" + strconv.FormatInt(int64(i), 36), MountNS: mountDir + "/" + ns, bed: b}
		a := b.Subnet.Addr().As4()
		a[3] = byte(10 + i)
		nd.IP = netip.AddrFrom4(a)
		b.mu.Lock()
		b.Nodes = append(b.Nodes, nd)
		b.mu.Unlock()
		if err := runAll(ctx,
			[]string{"ip", "netns", "add", nd.NS},
			[]string{"ip", "link", "add", nd.Veth, "type", "veth", "peer", "name", "eth0", "netns", nd.NS},
			[]string{"ip", "link", "set", nd.Veth, "master", b.Bridge, "up"},
			[]string{"ip", "-n", nd.NS, "link", "set", "lo", "up"},
			[]string{"ip", "-n", nd.NS, "addr", "add", nd.IP.String() + "/24", "dev", "eth0"},
			[]string{"ip", "-n", nd.NS, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", nd.NS, "route", "add", "default", "via", b.HostIP.String()}); err != nil {
			return err
		}
		// IPv4 only: no IPv6 (link-local addresses come by themselves)
		// that could carry traffic around the partition rules.
		if err := nd.Do(func() error { return disableIPv6() }); err != nil {
			return err
		}
		// The cgroup first: the mount namespace copies the host's mounts,
		// the hierarchy's included, when it is made.
		if err := makeCgroup(ctx, nd); err != nil {
			return err
		}
		if err := makeMountNS(ctx, nd); err != nil {
			return err
		}
	}
	return nil
}

// Node returns node i (1-based); it panics when there is none, like an
// index out of range.
func (b *Bed) Node(i int) *Node { return b.Nodes[i-1] }

// Exec returns a command that runs args inside the node's network and
// mount namespaces and its cgroup (through nsenter and sh, which execute
// args in place: the command's process is the program itself, so
// signalling it signals the program). It starts in the test's working
// directory (cmd.Dir is not honoured: entering a mount namespace resets
// it). The command is killed when ctx ends, like exec.CommandContext;
// what it started lives on until KillAll or Close.
func (n *Node) Exec(ctx context.Context, args ...string) *exec.Cmd {
	wd, err := os.Getwd()
	if err != nil {
		wd = "/"
	}
	pre := []string{"--net=/run/netns/" + n.NS, "--mount=" + n.MountNS, "--wd=" + wd, "--"}
	if n.cgroup != "" {
		pre = append(pre, "sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, n.cgroup)
	}
	return exec.CommandContext(ctx, "nsenter", append(pre, args...)...)
}

// Run runs args inside the node's namespace and returns their combined
// output.
func (n *Node) Run(ctx context.Context, args ...string) (string, error) {
	out, err := n.Exec(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), n.NS, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// String is the node's namespace name and address.
func (n *Node) String() string { return n.NS + "(" + n.IP.String() + ")" }

// Pids lists the node's processes: those Exec started and their
// descendants (containers included), and any other in its network
// namespace.
func (n *Node) Pids(ctx context.Context) ([]int, error) {
	return nodePids(ctx, n.NS, n.cgroup)
}

// KillAll kills every process of the node (see Pids) with SIGKILL, as a
// machine that loses power, and waits (up to ctx) until none is left.
func (n *Node) KillAll(ctx context.Context) error {
	return killAll(ctx, n.NS, n.cgroup)
}

// SignalAll sends sig to every process of the node: SIGSTOP freezes a
// node as a long pause would, SIGCONT wakes it.
func (n *Node) SignalAll(ctx context.Context, sig syscall.Signal) error {
	pids, err := n.Pids(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("netns: signal %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Partition cuts the node off: no IP packet (TCP, UDP or anything else)
// crosses its eth0 in either direction, including packets its containers
// route through it, until Heal. Established connections stall as on a
// real network failure; nothing is reset. The rules live inside the
// node's namespace (raw PREROUTING and mangle POSTROUTING, tables nothing
// else there uses), so a program's own filter rules cannot let traffic
// around them.
func (b *Bed) Partition(ctx context.Context, n *Node) error {
	return b.addCut(ctx, cut{node: n})
}

// PartitionBetween cuts traffic between two nodes in both directions; both
// keep talking to the host and to the other nodes.
func (b *Bed) PartitionBetween(ctx context.Context, x, y *Node) error {
	if x == y {
		return fmt.Errorf("netns: partition %s from itself: %w", x, errdefs.ErrInvalid)
	}
	return b.addCut(ctx, cut{node: x, peer: y})
}

// Heal removes every cut that involves the node: Partition of it and
// PartitionBetween it and any other node.
func (b *Bed) Heal(ctx context.Context, n *Node) error {
	b.mu.Lock()
	var keep, drop []cut
	for _, c := range b.cuts {
		if c.node == n || c.peer == n {
			drop = append(drop, c)
		} else {
			keep = append(keep, c)
		}
	}
	b.cuts = keep
	b.mu.Unlock()
	var errs []error
	for _, c := range drop {
		for _, r := range c.rules() {
			if err := run(ctx, c.iptables("-D", r)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (b *Bed) addCut(ctx context.Context, c cut) error {
	b.mu.Lock()
	for _, have := range b.cuts {
		if have == c {
			b.mu.Unlock()
			return nil
		}
	}
	b.mu.Unlock()
	var done [][]string
	for _, r := range c.rules() {
		if err := run(ctx, c.iptables("-I", r)...); err != nil {
			for _, d := range done {
				_ = run(context.WithoutCancel(ctx), c.iptables("-D", d)...)
			}
			return err
		}
		done = append(done, r)
	}
	b.mu.Lock()
	b.cuts = append(b.cuts, c)
	b.mu.Unlock()
	return nil
}

// iptables is the command that adds (-I) or deletes (-D) rule r of the
// cut inside its node.
func (c cut) iptables(op string, r []string) []string {
	return append([]string{"ip", "netns", "exec", c.node.NS, "iptables", "-t", r[0], op}, r[1:]...)
}

// rules are the iptables rule specs (table, chain, match, target) of a cut.
func (c cut) rules() [][]string {
	in := []string{"raw", "PREROUTING", "-i", "eth0"}
	out := []string{"mangle", "POSTROUTING", "-o", "eth0"}
	if c.peer != nil {
		in = append(in, "-s", c.peer.IP.String()+"/32")
		out = append(out, "-d", c.peer.IP.String()+"/32")
	}
	return [][]string{append(in, "-j", "DROP"), append(out, "-j", "DROP")}
}

// Close kills every process in the nodes' namespaces and removes the
// namespaces, veths, bridge and host rules. It does what it can after a
// half-made bed or a failed test, and a second call does nothing.
func (b *Bed) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	nodes, fwd := append([]*Node(nil), b.Nodes...), b.fwdRule
	b.cuts = nil
	b.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if err := removeNS(ctx, n.NS, n.cgroup); err != nil {
			errs = append(errs, err)
		}
		if err := removeCgroup(ctx, n.cgroup); err != nil {
			errs = append(errs, err)
		}
		if err := removeMountNS(ctx, n.MountNS); err != nil {
			errs = append(errs, err)
		}
		if linkExists(n.Veth) {
			if err := run(ctx, "ip", "link", "del", n.Veth); err != nil && linkExists(n.Veth) {
				errs = append(errs, err)
			}
		}
	}
	if fwd != nil {
		if err := run(ctx, append([]string{"iptables", "-D"}, fwd...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if linkExists(b.Bridge) {
		if err := run(ctx, "ip", "link", "del", b.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeNS kills the node's processes and deletes its network namespace.
// Its veth goes with it once no process holds it.
func removeNS(ctx context.Context, ns, cgroup string) error {
	kerr := killAll(ctx, ns, cgroup)
	if !nsExists(ns) {
		return kerr
	}
	if err := run(ctx, "ip", "netns", "del", ns); err != nil && nsExists(ns) {
		return errors.Join(kerr, err)
	}
	return kerr
}

func nodePids(ctx context.Context, ns, cgroup string) ([]int, error) {
	a, err := nsPids(ctx, ns)
	if err != nil {
		return nil, err
	}
	b, err := cgroupPids(cgroup)
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var out []int
	for _, p := range append(a, b...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func killAll(ctx context.Context, ns, cgroup string) error {
	for {
		pids, err := nodePids(ctx, ns, cgroup)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if p == os.Getpid() {
				// Never this process: it is listed when a thread that
				// entered the namespace (Node.Do) could not leave it.
				return fmt.Errorf("netns: this process (%d) is in %s: %w", p, ns, errdefs.ErrConflict)
			}
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns: processes %v in %s outlived SIGKILL: %w", pids, ns, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func nsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).CombinedOutput()
	if err != nil {
		if !nsExists(ns) {
			return nil, nil
		}
		return nil, fmt.Errorf("ip netns pids %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

func nsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// disableIPv6 turns IPv6 off in the calling thread's network namespace
// (/proc/sys/net is the reader's), if the kernel has it at all.
func disableIPv6() error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", []byte("1"), 0o644)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: disable IPv6: %w", err)
	}
	return nil
}

func bridgeNF() bool {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func runAll(ctx context.Context, cmds ...[]string) error {
	for _, c := range cmds {
		if err := run(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

func checkPrefix(p string) error {
	if len(p) < 1 || len(p) > 4 || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") != "" {
		return errdefs.WithHint(fmt.Errorf("netns: prefix %q: %w", p, errdefs.ErrInvalid),
			"use 1 to 4 lower-case letters: interface names are at most 15 characters")
	}
	return nil
}

// pad36 writes v in base 36, zero-padded to width digits.
func pad36(v, width int) string {
	s := strconv.FormatInt(int64(v), 36)
	for len(s) < width {
		s = "0" + s
	}
	return s
}
