// Package e2e runs the real gantry binary (gantry dev) against real runc,
// real CNI plugins, real registries and real network namespaces, and drives
// it through its MCP endpoint and its CLI exactly as users do.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/network"
)

var (
	gantryBin string
	skipAll   string
	devSeq    atomic.Int32
)

func TestMain(m *testing.M) {
	switch {
	case os.Geteuid() != 0:
		skipAll = "end-to-end tests need root (runc, mounts, network namespaces)"
	case !has("runc"):
		skipAll = "runc not installed (make deps installs it)"
	case !exists("/usr/lib/cni/bridge") && !exists("/opt/cni/bin/bridge"):
		skipAll = "CNI plugins not installed (make deps installs containernetworking-plugins)"
	case !exists("/usr/bin/busybox"):
		skipAll = "busybox-static not installed (make deps installs it)"
	}
	code := 0
	if skipAll == "" {
		dir, err := os.MkdirTemp("", "gantry-e2e-bin")
		if err != nil {
			panic(err)
		}
		gantryBin = filepath.Join(dir, "gantry")
		if err := build(gantryBin); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build gantry:", err)
			os.Exit(1)
		}
		code = m.Run()
		os.RemoveAll(dir)
	} else {
		code = m.Run()
	}
	os.Exit(code)
}

func build(out string) error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	initBin := filepath.Join(root, "runtime", "initbin", "gantry-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", initBin, "./cmd/gantry-init")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	cmd = exec.Command("go", "build", "-o", out, "./cmd/gantry")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return nil
}

func emptyDir(p string) bool {
	ents, err := os.ReadDir(p)
	return err != nil || len(ents) == 0
}

func has(bin string) bool { _, err := exec.LookPath(bin); return err == nil }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// dev is one running `gantry dev`.
type dev struct {
	t       *testing.T
	dataDir string
	addr    string
	bridge  string
	subnet  string
	runDir  string
	extra   []string     // more gantry dev flags
	scheme  string       // http or https
	hc      *http.Client // for the readiness probe
	cmd     *exec.Cmd
	session *mcp.ClientSession
	token   string
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newDev allocates a gantry dev on a fresh data dir, with its own bridge,
// subnet, run dir and port range so tests never collide with a user's
// gantry or with another test run. It is not started yet.
func newDev(t *testing.T, extra ...string) *dev {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	n := devSeq.Add(1)
	return &dev{
		t:       t,
		dataDir: t.TempDir(),
		addr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		// Per process too: two test runs on one machine must not share a
		// bridge or subnet (bridge names are at most 15 characters).
		bridge: fmt.Sprintf("ge%d-%d", os.Getpid()%100000, n),
		subnet: fmt.Sprintf("10.91.%d.0/24", (os.Getpid()*7+int(n))%250+1),
		runDir: fmt.Sprintf("/run/gantry-e2e-%d-%d", os.Getpid(), n),
		extra:  extra,
		scheme: "http",
		hc:     &http.Client{Timeout: 5 * time.Second},
	}
}

// startDev starts gantry dev (with extra flags, if any) and connects an
// MCP session to it; everything is removed when the test ends.
func startDev(t *testing.T, extra ...string) *dev {
	t.Helper()
	d := newDev(t, extra...)
	t.Cleanup(d.shutdown)
	d.start()
	return d
}

// start launches the process and connects an MCP session.
func (d *dev) start() {
	d.t.Helper()
	d.launch()
	d.connect()
}

// launch starts the gantry dev process, waits until scheme://addr/healthz
// answers through d.hc, and reads the admin token.
func (d *dev) launch() {
	t := d.t
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dataDir, "gantry.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"dev", "--data-dir", d.dataDir, "--listen", d.addr, "--bridge", d.bridge, "--subnet", d.subnet,
		"--run-dir", d.runDir, "--port-range", "41000-42999", "--log-level", "debug"}, d.extra...)
	d.cmd = exec.Command(gantryBin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group: containers must not die with the test's signals.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := d.hc.Get(d.scheme + "://" + d.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gantry dev did not start (%v):\n%s", err, d.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(d.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func (d *dev) connect() {
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: "http://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{d.token, http.DefaultTransport}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, tr, nil)
	if err != nil {
		d.t.Fatalf("connect MCP: %v\n%s", err, d.log())
	}
	d.session = s
}

func (d *dev) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dataDir, "gantry.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// kill9 kills gantry dev with SIGKILL; its containers keep running.
func (d *dev) kill9() {
	if d.session != nil {
		d.session.Close()
		d.session = nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = d.cmd.Process.Wait()
}

// shutdown removes every service, waits for the cleanup, and stops gantry.
func (d *dev) shutdown() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	if d.session != nil {
		var list api.ServiceList
		if err := d.callErr("list_services", map[string]any{}, &list); err == nil {
			for _, s := range list.Services {
				_ = d.callErr("remove_service", map[string]any{"name": s.Name}, nil)
			}
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) && (len(d.runcContainers()) > 0 || !emptyDir(filepath.Join(d.dataDir, "instances"))) {
				time.Sleep(200 * time.Millisecond)
			}
		}
		d.session.Close()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = d.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
	_ = network.RemoveNetwork(context.Background(), d.bridge, d.subnet)
	_ = syscall.Unmount(filepath.Join(d.runDir, "netns"), syscall.MNT_DETACH)
	_ = os.RemoveAll(d.runDir)
}

// call invokes a tool and decodes its structured output; a tool error
// fails the test.
func (d *dev) call(tool string, args map[string]any, out any) {
	d.t.Helper()
	if err := d.callErr(tool, args, out); err != nil {
		d.t.Fatalf("%s: %v", tool, err)
	}
}

type toolError struct{ text string }

func (e *toolError) Error() string { return e.text }

func (d *dev) callErr(tool string, args map[string]any, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := d.session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return err
	}
	if res.IsError {
		var sb strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				sb.WriteString(tc.Text)
			}
		}
		return &toolError{sb.String()}
	}
	if out != nil {
		raw, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (d *dev) service(name string) api.ServiceStatus {
	d.t.Helper()
	var s api.ServiceStatus
	d.call("get_service", map[string]any{"name": name}, &s)
	return s
}

// waitFor polls get_service until cond holds.
func (d *dev) waitFor(name string, timeout time.Duration, what string, cond func(api.ServiceStatus) bool) api.ServiceStatus {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var s api.ServiceStatus
	for {
		s = d.service(name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(s, "", "  ")
			d.t.Fatalf("timed out after %v waiting for %s: %s\n--- service:\n%s\n--- gantry log:\n%s", timeout, name, what, js, d.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *dev) deploy(specYAML string) api.DeployResult {
	d.t.Helper()
	var r api.DeployResult
	d.call("deploy", map[string]any{"spec_yaml": specYAML}, &r)
	return r
}

// runcContainers lists the container IDs in gantry's runc root.
func (d *dev) runcContainers() []string {
	out, err := exec.Command("runc", "--root", d.runDir+"/runc", "list", "-q").Output()
	if err != nil {
		return nil
	}
	var ids []string
	for _, l := range strings.Fields(string(out)) {
		ids = append(ids, l)
	}
	return ids
}

// cli runs the gantry CLI against this dev.
func (d *dev) cli(args ...string) (string, error) {
	cmd := exec.Command(gantryBin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return b.String(), fmt.Errorf("status %d", resp.StatusCode)
	}
	return b.String(), nil
}
