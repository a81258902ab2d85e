package network

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
)

// AllocatePort picks a host port in [lo, hi] for proto (tcp or udp) that is
// not in used and can be bound on 0.0.0.0 right now. Published ports are
// DNAT rules, not sockets, so the caller must put every host port already
// published by an attachment into used; the bind test only finds ports held
// by other programs. The search starts at a random port so that concurrent
// callers rarely pick the same one.
func AllocatePort(used map[int]bool, lo, hi int, proto string) (int, error) {
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return 0, fmt.Errorf("network: protocol %q must be tcp or udp: %w", proto, errdefs.ErrInvalid)
	}
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, fmt.Errorf("network: port range %d-%d must lie within 1-65535 with lo <= hi: %w", lo, hi, errdefs.ErrInvalid)
	}
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		p := lo + (start+i)%n
		if used[p] {
			continue
		}
		if bindable(p, proto) {
			return p, nil
		}
	}
	return 0, errdefs.WithHint(
		fmt.Errorf("network: no free %s host port in %d-%d: %w", proto, lo, hi, errdefs.ErrUnavailable),
		"widen the dynamic port range or free some ports")
}

// CheckHostPort returns an ErrConflict error when a program on the host
// already listens on port for proto (tcp or udp). Publishing it anyway
// would not fail: the DNAT rule would silently take over that program's
// connections (sshd's, or gantry's own endpoint's).
func CheckHostPort(port int, proto string) error {
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "tcp"
	}
	if bindable(port, proto) {
		return nil
	}
	return errdefs.WithHint(fmt.Errorf("network: host port %d/%s is in use by a program on this host: %w", port, proto, errdefs.ErrConflict),
		"pick another host_port (ss -ltnup lists the ports in use), or leave host_port out to get a free dynamic port")
}

func bindable(port int, proto string) bool {
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	if proto == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
