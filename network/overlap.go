package network

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
)

// checkSubnetFree refuses a subnet that overlaps an IPv4 address or route
// of any interface but bridge. The bridge plugin would give the bridge the
// subnet's first address and add a route for the subnet, taking traffic
// away from that interface: with the host's own LAN (or another gantry's
// subnet) the host or the other containers lose connectivity.
func checkSubnetFree(bridge, subnet string) error {
	_, want, err := net.ParseCIDR(subnet)
	if err != nil {
		return fmt.Errorf("network: Subnet %q: %v: %w", subnet, err, errdefs.ErrInvalid)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("network: list interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		if ifc.Name == bridge {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue // the interface went away meanwhile
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && overlaps(want, ipn) {
				return subnetTaken(subnet, ipn.String(), ifc.Name)
			}
		}
	}
	routes, err := ipv4Routes()
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.iface != bridge && overlaps(want, r.dst) {
			return subnetTaken(subnet, "the route to "+r.dst.String(), r.iface)
		}
	}
	return nil
}

// checkBridgeName refuses an existing interface that is not a bridge as
// the network's bridge: --bridge eth0 would otherwise pass every check
// (its own subnet is skipped as "ours"), get gantry's iptables rules, and
// only fail at the first container.
func checkBridgeName(bridge string) error {
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		return nil // created at the first attachment
	}
	if _, err := os.Stat("/sys/class/net/" + bridge + "/bridge"); err == nil {
		return nil
	}
	return errdefs.WithHint(fmt.Errorf("network: interface %s exists and is not a bridge: %w", bridge, errdefs.ErrConflict),
		"pass the name of a bridge for gantry's containers that no other interface uses, e.g. --bridge gantry0; gantry creates it")
}

func subnetTaken(subnet, what, iface string) error {
	hint := "choose a free --subnet (the host's routes: ip -4 route)"
	if _, err := os.Stat("/sys/class/net/" + iface + "/bridge"); err == nil {
		hint += fmt.Sprintf("; if %s is a bridge left by an earlier gantry, remove it with: ip link del %s", iface, iface)
	}
	return errdefs.WithHint(fmt.Errorf("network: subnet %s overlaps %s on interface %s: %w", subnet, what, iface, errdefs.ErrConflict), hint)
}

func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

type route struct {
	iface string
	dst   *net.IPNet
}

// ipv4Routes reads the main table's IPv4 routes from /proc/net/route,
// leaving out default routes (which overlap everything by design).
//
// It reads /proc/thread-self, not /proc/net (= /proc/self/net): the latter
// shows the network namespace of the thread-group leader, and the leader
// may be a thread that netns creation left inside an instance's namespace
// (a locked thread that exits is parked, not killed, when it is the main
// thread). The calling thread is locked so that it stays the one read.
func ipv4Routes() ([]route, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		return nil, fmt.Errorf("network: read routes: %w", err)
	}
	defer f.Close()
	var out []route
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] == "Iface" {
			continue
		}
		dst, err1 := hexIPv4(fields[1])
		mask, err2 := hexIPv4(fields[7])
		if err1 != nil || err2 != nil {
			continue
		}
		m := net.IPMask(mask)
		if ones, _ := m.Size(); ones == 0 {
			continue
		}
		out = append(out, route{iface: fields[0], dst: &net.IPNet{IP: dst.Mask(m), Mask: m}})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("network: read routes: %w", err)
	}
	return out, nil
}

// hexIPv4 decodes an address as /proc/net/route prints it: the address's
// four bytes read as a host-order integer, in hex.
func hexIPv4(s string) (net.IP, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return nil, fmt.Errorf("bad address %q", s)
	}
	ip := make(net.IP, 4)
	binary.NativeEndian.PutUint32(ip, binary.BigEndian.Uint32(b))
	return ip, nil
}
