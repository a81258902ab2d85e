package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// gantryDev is one `gantry dev` child process and an MCP session to it.
// It has a run dir of its own (--run-dir: runc root and network
// namespaces), so it neither sees nor touches the containers of any other
// gantry dev on the machine.
type gantryDev struct {
	bin     string
	dataDir string
	runDir  string // --run-dir
	logPath string
	addr    string
	bridge  string
	subnet  string
	ports   string

	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	session *mcp.ClientSession
	seen    map[string]bool // every instance ID the bench has observed
}

var errExited = errors.New("gantry dev exited")

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs gantry dev, waits for /healthz and connects the MCP client.
func (g *gantryDev) start(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	g.addr = addr
	if g.seen == nil {
		g.seen = map[string]bool{}
	}
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	g.cmd = exec.Command(g.bin, "dev", "--data-dir", g.dataDir, "--run-dir", g.runDir, "--listen", g.addr,
		"--bridge", g.bridge, "--subnet", g.subnet, "--port-range", g.ports, "--log-level", "debug")
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C meant for the bench must not reach
	// it before the bench has removed its services.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", g.bin, err)
	}
	g.done = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.done) }()

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + g.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-g.done:
			return fmt.Errorf("gantry dev exited during start-up; see %s:\n%s", g.logPath, tail(g.logPath, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gantry dev did not answer /healthz within 30s; see %s", g.logPath)
		}
	}
	tok, err := os.ReadFile(filepath.Join(g.dataDir, "admin.token"))
	if err != nil {
		return fmt.Errorf("read admin token: %w", err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-bench", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: "http://" + g.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{strings.TrimSpace(string(tok)), http.DefaultTransport}}}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := client.Connect(cctx, tr, nil)
	if err != nil {
		return fmt.Errorf("connect to the MCP endpoint of gantry dev: %w", err)
	}
	g.session = s
	return nil
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

func (g *gantryDev) pid() int { return g.cmd.Process.Pid }

// runcRoot is gantry dev's runc root.
func (g *gantryDev) runcRoot() string { return filepath.Join(g.runDir, "runc") }

// call invokes a tool and decodes its structured output into out.
func (g *gantryDev) call(ctx context.Context, tool string, args any, out any) error {
	if g.session == nil {
		return errors.New("no MCP session")
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := g.session.CallTool(cctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return fmt.Errorf("%s: %w", tool, err)
	}
	if res.IsError {
		var sb strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				sb.WriteString(tc.Text)
			}
		}
		return fmt.Errorf("%s: %s", tool, sb.String())
	}
	if out == nil {
		return nil
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func (g *gantryDev) deploy(ctx context.Context, name, ref string, replicas int) error {
	spec := map[string]any{
		"name":     name,
		"image":    ref,
		"command":  []string{"/bin/sleep", "100000"},
		"replicas": replicas,
		"stop":     map[string]any{"signal": "SIGTERM", "grace": "2s"},
	}
	return g.call(ctx, api.ToolDeploy, map[string]any{"spec": spec}, nil)
}

func (g *gantryDev) service(ctx context.Context, name string) (api.ServiceStatus, error) {
	var s api.ServiceStatus
	err := g.call(ctx, api.ToolGetService, map[string]any{"name": name}, &s)
	for _, in := range s.Instances {
		g.seen[in.ID] = true
	}
	return s, err
}

// waitService polls get_service every interval until cond holds.
func (g *gantryDev) waitService(ctx context.Context, name string, interval, timeout time.Duration, cond func(api.ServiceStatus) bool) (api.ServiceStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := g.service(ctx, name)
		if err == nil && cond(s) {
			return s, nil
		}
		if !g.alive() {
			return s, fmt.Errorf("service %s: gantry dev exited: %w", name, errExited)
		}
		if time.Now().After(deadline) {
			js, _ := json.Marshal(s)
			return s, fmt.Errorf("service %s: condition not reached within %v (last error %v); last status: %s", name, timeout, err, js)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// remove removes a service and waits until none of its instances has a
// container, a directory or a network namespace left.
func (g *gantryDev) remove(ctx context.Context, name string, ids []string, timeout time.Duration) error {
	if err := g.call(ctx, api.ToolRemoveService, map[string]any{"name": name}, nil); err != nil {
		return err
	}
	return g.waitGone(ctx, ids, timeout)
}

// waitGone waits until the given instances are fully cleaned up.
func (g *gantryDev) waitGone(ctx context.Context, ids []string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := g.leftovers(ctx, ids)
		if len(left) == 0 {
			return nil
		}
		if !g.alive() {
			return fmt.Errorf("%w with instances left: %s", errExited, strings.Join(left, ", "))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instances not cleaned up within %v: %s", timeout, strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// leftovers names what remains of the given instances: runc containers,
// instance directories, network namespace files.
func (g *gantryDev) leftovers(ctx context.Context, ids []string) []string {
	ctrs := map[string]bool{}
	for _, c := range runcList(ctx, g.runcRoot()) {
		ctrs[c] = true
	}
	var left []string
	for _, id := range ids {
		if ctrs[id] {
			left = append(left, "container "+id)
		}
		if exists(filepath.Join(g.dataDir, "instances", id)) {
			left = append(left, "directory of "+id)
		}
		if exists(filepath.Join(g.runDir, "netns", id)) {
			left = append(left, "netns of "+id)
		}
	}
	return left
}

// removeAll removes every service and waits until all instances the bench
// has seen are cleaned up.
func (g *gantryDev) removeAll(ctx context.Context) error {
	var list api.ServiceList
	if err := g.call(ctx, api.ToolListServices, map[string]any{}, &list); err != nil {
		return err
	}
	var errs []error
	for _, s := range list.Services {
		for _, in := range s.Instances {
			g.seen[in.ID] = true
		}
		if err := g.call(ctx, api.ToolRemoveService, map[string]any{"name": s.Name}, nil); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, g.waitGone(ctx, g.seenIDs(), 90*time.Second))
	return errors.Join(errs...)
}

func (g *gantryDev) seenIDs() []string {
	ids := make([]string, 0, len(g.seen))
	for id := range g.seen {
		ids = append(ids, id)
	}
	return ids
}

// stop sends SIGTERM and waits; SIGKILL after 15s.
func (g *gantryDev) stop() {
	if g.session != nil {
		_ = g.session.Close()
		g.session = nil
	}
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

func (g *gantryDev) alive() bool {
	if g.done == nil {
		return false
	}
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// runcList lists the container IDs in a runc root.
func runcList(ctx context.Context, root string) []string {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "runc", "--root", root, "list", "-q").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// runcPID returns the host PID of a container's init.
func runcPID(ctx context.Context, root, id string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "runc", "--root", root, "state", id).Output()
	if err != nil {
		return 0, fmt.Errorf("runc state %s: %w", id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, fmt.Errorf("runc state %s: %w", id, err)
	}
	return st.Pid, nil
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
