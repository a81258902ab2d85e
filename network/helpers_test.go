package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var subnetSeq atomic.Int32

func init() {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	subnetSeq.Store(int32(b[0]))
}

// requireHost skips the test unless it runs as root on a host with the CNI
// plugins, iptables and the given binaries.
func requireHost(tb testing.TB, bins ...string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces, bridges and iptables rules")
	}
	if err := checkHost(DefaultPluginDirs); err != nil {
		tb.Skipf("needs CNI plugins and iptables: %v", err)
	}
	for _, b := range append([]string{"iptables-save", "ip"}, bins...) {
		if _, err := exec.LookPath(b); err != nil {
			tb.Skipf("needs %s on PATH", b)
		}
	}
}

// testEnv is a Manager on a bridge, subnet and directories of its own.
type testEnv struct {
	opts Options
	m    *Manager
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	requireHost(tb)
	suffix := randHex(4)
	root := filepath.Join("/run", "gantry-nettest-"+suffix)
	opts := Options{
		CacheDir:    filepath.Join(tb.TempDir(), "cni"),
		NetNSDir:    filepath.Join(root, "netns"),
		Bridge:      "gt" + suffix,
		Subnet:      fmt.Sprintf("10.89.%d.0/24", subnetSeq.Add(1)%256),
		NetworkName: "nt" + suffix,
		Logger:      slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	m, err := New(context.Background(), opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	env := &testEnv{opts: opts, m: m}
	tb.Cleanup(func() {
		ctx := context.Background()
		ids, _ := env.m.List(ctx)
		for _, id := range ids {
			if err := env.m.Teardown(ctx, id); err != nil {
				tb.Errorf("cleanup teardown %s: %v", id, err)
			}
		}
		if err := RemoveNetwork(ctx, opts.Bridge, opts.Subnet); err != nil {
			tb.Errorf("remove network: %v", err)
		}
		_ = unix.Unmount(opts.NetNSDir, unix.MNT_DETACH)
		_ = os.RemoveAll(root)
	})
	return env
}

// restart returns a fresh Manager over the same directories, as after a
// gantry restart.
func (e *testEnv) restart(tb testing.TB) *Manager {
	tb.Helper()
	m, err := New(context.Background(), e.opts)
	if err != nil {
		tb.Fatalf("New after restart: %v", err)
	}
	e.m = m
	return m
}

func testID() string { return "nt-" + randHex(5) }

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startHTTPD serves body on port 8080 inside the namespace at nsPath with
// busybox httpd, until the test ends.
func startHTTPD(t *testing.T, nsPath, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+nsPath, "/usr/bin/busybox", "httpd", "-f", "-p", "8080", "-h", dir)
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start httpd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// fetch GETs url, retrying for a few seconds while the server starts.
func fetch(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			err = fmt.Errorf("status %s, read err %v", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostIP returns a non-loopback IPv4 address of the host outside the 10.88/15
// ranges used for instance networks, or "" when there is none.
func hostIP() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	_, inst, _ := net.ParseCIDR("10.88.0.0/15")
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || inst.Contains(ipn.IP) || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			return ipn.IP.String()
		}
	}
	return ""
}

// assertGone checks that nothing of id (address ip) is left on the host.
func (e *testEnv) assertGone(t *testing.T, id, ip string) {
	t.Helper()
	path := filepath.Join(e.opts.NetNSDir, id)
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("netns file %s still exists", path)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), path) {
		t.Errorf("netns %s still in /proc/self/mountinfo", path)
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	ipRE := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(ip) + `($|[^0-9])`)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, id) || (ip != "" && ipRE.MatchString(line)) {
			t.Errorf("iptables rule left for %s (%s): %s", id, ip, line)
		}
	}
	if ip != "" {
		if _, err := os.Stat(filepath.Join(e.m.ipamDir(), ip)); err == nil {
			t.Errorf("host-local still holds %s", ip)
		}
	}
}

// nsExec runs a command inside the namespace at nsPath.
func nsExec(nsPath string, args ...string) (string, error) {
	// busybox wget -T crashes in Debian's busybox-static 1.35; bound the
	// command from here instead.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath}, args...)...).CombinedOutput()
	return string(out), err
}
