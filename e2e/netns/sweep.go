package netns

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// lockFile serializes subnet choice between processes making beds.
const lockFile = "/run/lock/gantry-netns.lock"

func lockAlloc(ctx context.Context) (func(), error) {
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("netns: lock %s: %w", lockFile, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("netns: waiting for %s: %w", lockFile, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freeSubnet picks a /24 in 10.200.0.0–10.255.255.0 that no host route
// overlaps, starting at a place that depends on tag so that concurrent
// runs rarely try the same ones.
func freeSubnet(tag string) (netip.Prefix, error) {
	used, err := hostRoutes()
	if err != nil {
		return netip.Prefix{}, err
	}
	h := fnv.New32a()
	h.Write([]byte(tag))
	const span = 56 * 256
	start := int(h.Sum32() % span)
	for i := 0; i < span; i++ {
		k := (start + i) % span
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + k/256), byte(k % 256), 0}), 24)
		free := true
		for _, u := range used {
			if u.Bits() > 0 && u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("netns: no free /24 in 10.200.0.0/8..10.255.255.0: every one overlaps a host route: %w", errdefs.ErrUnavailable)
}

// hostRoutes reads the IPv4 routes of the main table from /proc/net/route.
func hostRoutes() ([]netip.Prefix, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("netns: read the host's routes: %w", err)
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[0] == "Iface" {
			continue
		}
		dst, err1 := hex.DecodeString(fs[1])
		mask, err2 := hex.DecodeString(fs[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		// The kernel prints the words in host (little-endian) order.
		var d, m [4]byte
		binary.BigEndian.PutUint32(d[:], binary.LittleEndian.Uint32(dst))
		binary.BigEndian.PutUint32(m[:], binary.LittleEndian.Uint32(mask))
		bits := 0
		for _, x := range m {
			for ; x&0x80 != 0; x <<= 1 {
				bits++
			}
		}
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), bits).Masked())
	}
	return out, sc.Err()
}

// Sweep removes what beds named with prefix left behind when the process
// that made them is gone (a crashed or killed test run): namespaces (after
// killing their processes), links and host iptables rules. Beds of live
// processes, this one's included, are left alone.
func Sweep(ctx context.Context, prefix string, log *slog.Logger) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	stale := func(name string) bool {
		tag, ok := tagOf(prefix, name)
		if !ok {
			return false
		}
		pid, err := strconv.ParseInt(tag[len(prefix):len(prefix)+5], 36, 64)
		return err == nil && !alive(int(pid))
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if stale(e.Name()) {
				log.Info("netns: removing a stale namespace", "ns", e.Name())
				if err := removeNS(ctx, e.Name(), filepath.Join(cgroupDir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if ents, err := os.ReadDir(cgroupDir); err == nil {
		for _, e := range ents {
			if e.IsDir() && stale(e.Name()) {
				dir := filepath.Join(cgroupDir, e.Name())
				log.Info("netns: removing a stale cgroup", "cgroup", dir)
				if err := errors.Join(killAll(ctx, e.Name(), dir), removeCgroup(ctx, dir)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if ents, err := os.ReadDir(mountDir); err == nil {
		for _, e := range ents {
			if stale(e.Name()) {
				log.Info("netns: removing a stale mount namespace", "file", e.Name())
				if err := removeMountNS(ctx, mountDir+"/"+e.Name()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if ents, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range ents {
			if stale(e.Name()) {
				log.Info("netns: removing a stale link", "link", e.Name())
				if err := run(ctx, "ip", "link", "del", e.Name()); err != nil && linkExists(e.Name()) {
					errs = append(errs, err)
				}
			}
		}
	}
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "filter").Output()
	if err != nil {
		errs = append(errs, fmt.Errorf("iptables-save: %w", err))
	}
	for _, line := range strings.Split(string(out), "\n") {
		// Our comments have no spaces; iptables-save quotes them anyway.
		fs := strings.Fields(strings.ReplaceAll(line, `"`, ""))
		if len(fs) < 2 || fs[0] != "-A" || !strings.Contains(line, commentPrefix) {
			continue
		}
		for i, f := range fs {
			if i > 0 && fs[i-1] == "--comment" && strings.HasPrefix(f, commentPrefix) && stale(strings.TrimPrefix(f, commentPrefix)) {
				log.Info("netns: removing a stale host rule", "rule", line)
				if err := run(ctx, append([]string{"iptables", "-D"}, fs[1:]...)...); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// tagOf returns the bed tag of a name a bed with this prefix makes (the
// tag itself, TAG+"br", TAG+"v"+digit, TAG+"-"+number), or false for any
// other name.
func tagOf(prefix, name string) (string, bool) {
	n := len(prefix) + 7
	if !strings.HasPrefix(name, prefix) || len(name) < n || !isBase36(name[len(prefix):n]) {
		return "", false
	}
	tag, rest := name[:n], name[n:]
	switch {
	case rest == "" || rest == "br":
	case len(rest) == 2 && rest[0] == 'v' && isBase36(rest[1:]):
	case len(rest) >= 2 && rest[0] == '-' && strings.Trim(rest[1:], "0123456789") == "":
	default:
		return "", false
	}
	return tag, true
}

func isBase36(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdefghijklmnopqrstuvwxyz") == ""
}

// alive reports whether a process with this ID exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
