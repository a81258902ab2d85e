package network

import (
	"encoding/binary"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// A subnet that overlaps another interface's addresses or routes (the
// host's LAN, another gantry's bridge) is refused, naming the interface;
// the network's own bridge does not count.
func TestCheckSubnetFree(t *testing.T) {
	err := checkSubnetFree("gtnone", "127.0.0.0/24")
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "interface lo") {
		t.Errorf("127.0.0.0/24: err = %v, want a conflict naming lo", err)
	}
	if err != nil && strings.Contains(err.Error(), "ip link del") {
		t.Errorf("the hint suggests deleting lo, which is no bridge: %v", err)
	}
	if err := checkSubnetFree("lo", "127.0.0.0/24"); err != nil {
		t.Errorf("own bridge's subnet: %v", err)
	}
	routes, err := ipv4Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.iface == "lo" {
			continue
		}
		err := checkSubnetFree("gtnone", r.dst.String())
		if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "interface "+r.iface) {
			t.Errorf("subnet of the route %s on %s: err = %v, want a conflict naming it", r.dst, r.iface, err)
		}
	}
	// Find a /24 in 10.250.0.0/16 that nothing uses.
	free := ""
	for i := 0; i < 256 && free == ""; i++ {
		cand := &net.IPNet{IP: net.IPv4(10, 250, byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)}
		used := false
		for _, r := range routes {
			used = used || overlaps(cand, r.dst)
		}
		if !used {
			free = cand.String()
		}
	}
	if free == "" {
		t.Skip("no free /24 in 10.250.0.0/16 on this host")
	}
	if err := checkSubnetFree("gtnone", free); err != nil {
		t.Errorf("free subnet %s: %v", free, err)
	}
}

func TestHexIPv4(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the expected values are a little-endian host's")
	}
	// How a little-endian host prints 10.88.0.0 and 192.0.2.1.
	for in, want := range map[string]string{"0000580A": "10.88.0.0", "010200C0": "192.0.2.1"} {
		ip, err := hexIPv4(in)
		if err != nil || ip.String() != want {
			t.Errorf("hexIPv4(%s) = %v, %v; want %s", in, ip, err, want)
		}
	}
}

// An existing interface that is not a bridge (lo, eth0) cannot be the
// network's bridge; a missing one is created later, so it passes.
func TestCheckBridgeName(t *testing.T) {
	if err := checkBridgeName("lo"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("lo: err = %v, want a conflict saying it is not a bridge", err)
	}
	name := "gtbr" + randHex(3)
	if err := checkBridgeName(name); err != nil {
		t.Errorf("missing interface: %v", err)
	}
	requireHost(t)
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	defer exec.Command("ip", "link", "del", name).Run()
	if err := checkBridgeName(name); err != nil {
		t.Errorf("existing bridge %s: %v", name, err)
	}
}
