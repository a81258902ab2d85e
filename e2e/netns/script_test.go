package netns

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// scripts/netns.sh, as people and make cluster-demo use it: up is
// idempotent and makes nodes that reach each other, partition and heal cut
// and restore a node, exec runs in a node or says which are up, down
// removes everything (twice is fine).
func TestNetnsScript(t *testing.T) {
	t.Parallel()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	// Names and a /24 of this run only, never a person's gtyc/10.99.0.
	name := "gts"
	for p := os.Getpid(); p > 0; p /= 26 {
		name += string(rune('a' + p%26))
	}
	name = name[:min(len(name), 8)]
	ctx := context.Background()
	unlock, err := lockAlloc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := freeSubnet(name)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	net3 := strings.TrimSuffix(sub.Addr().String(), ".0")
	sh := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{"../../scripts/netns.sh"}, args...)...)
		cmd.Env = append(os.Environ(), "GANTRY_NETNS_NAME="+name, "GANTRY_NETNS_NET="+net3)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := sh("down"); err != nil {
			t.Errorf("netns.sh down: %v\n%s", err, out)
		}
		assertGone(t, name)
	})

	for range 2 {
		out, err := sh("up", "2")
		if err != nil || strings.Count(out, " up\n") != 2 || !strings.Contains(out, net3+".12") {
			t.Fatalf("netns.sh up 2: %v\n%s", err, out)
		}
	}
	if out, err := sh("exec", "1", "ip", "-4", "-o", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(out, net3+".11/24") {
		t.Errorf("exec 1 ip addr: %v\n%s", err, out)
	}
	if out, err := sh("exec", "2", "ls", "/sys/class/net"); err != nil || strings.Fields(out)[0] != "eth0" {
		t.Errorf("exec 2 sees the node's links: %v\n%s", err, out)
	}

	// The script's nodes are nodes like a Bed's: probe them from Go.
	n1 := &Node{Index: 1, NS: name + "-1"}
	n2 := &Node{Index: 2, NS: name + "-2"}
	n1.IP = netip.MustParseAddr(net3 + ".11")
	e1 := startEcho(t, &Bed{}, n1)
	expect(t, probe{from: n2, e: e1, to: n1}, probe{from: nil, e: e1, to: n1})
	if out, err := sh("partition", "1"); err != nil {
		t.Fatalf("partition 1: %v\n%s", err, out)
	}
	if out, err := sh("partition", "1"); err != nil || !strings.Contains(out, "cut off") {
		t.Errorf("partition 1 again: %v\n%s", err, out)
	}
	if out, _ := sh("status"); !strings.Contains(out, "partitioned") {
		t.Errorf("status after partition:\n%s", out)
	}
	expect(t, probe{from: n2, e: e1, to: n1, cut: true})
	if out, err := sh("heal", "1"); err != nil {
		t.Fatalf("heal 1: %v\n%s", err, out)
	}
	expect(t, probe{from: n2, e: e1, to: n1})

	for _, bad := range [][]string{{"exec", "3", "true"}, {"exec", "x", "true"}, {"up"}, {"frobnicate"}, {"exec", "1"}} {
		out, err := sh(bad...)
		if err == nil || !strings.HasPrefix(out, "netns.sh: ") {
			t.Errorf("netns.sh %v: %v, want a clear error:\n%s", bad, err, out)
		}
	}
	if out, _ := sh("exec", "3", "true"); !strings.Contains(out, "up 3") {
		t.Errorf("exec on a missing node does not say how to make it:\n%s", out)
	}

	// A process that left node 1's network namespace, orphaned (as a
	// container is), still goes with down.
	out, err := sh("exec", "1", "sh", "-c", "unshare --net sleep 302 >/dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatalf("exec 1: %v\n%s", err, out)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, orphan, "S")

	if out, err := sh("up", "1"); err != nil || strings.Contains(out, "node 2") || nsExists(name+"-2") {
		t.Errorf("up 1 after up 2 keeps node 2: %v\n%s", err, out)
	}
	if out, err := sh("down"); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("down: %v\n%s", err, out)
	}
	assertGone(t, name)
	waitState(t, orphan, "")
	if out, err := sh("down"); err != nil || !strings.Contains(out, "no nodes") {
		t.Errorf("down again: %v\n%s", err, out)
	}
}
