package main

// The -cluster mode: 3 `gantry server` and 2 `gantry worker` processes,
// each in its own network namespace of an e2e/netns bed (as the e2e
// cluster test starts them), and the figures issue 4 asks for: leader
// failover, worker death to instances running elsewhere, committed writes
// per second through MCP (against one `gantry dev` in the same run), and
// the memory of a server and of a worker.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/e2e/netns"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/state"
)

// clusterOptions are the flags of the -cluster mode.
type clusterOptions struct {
	reps    int           // repetitions of each failure measurement
	clients int           // parallel MCP clients of the write measurement
	writeD  time.Duration // how long each write measurement runs
}

// cnode is one gantry server or worker process in a bed node.
type cnode struct {
	name    string
	node    *netns.Node
	dataDir string
	runDir  string // workers only
	args    []string
	cmd     *exec.Cmd
	done    chan struct{}
}

func (c *cnode) logPath() string { return filepath.Join(c.dataDir, "gantry.log") }

func (c *cnode) start(ctx context.Context, bin string) error {
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Not bound to ctx: the bench kills it itself (SIGKILL is a measurement).
	c.cmd = c.node.Exec(context.WithoutCancel(ctx), append([]string{bin}, c.args...)...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	c.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(c.cmd, c.done)
	return nil
}

// kill9 ends the process with SIGKILL and waits for it.
func (c *cnode) kill9() {
	if c.cmd == nil || c.done == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.done = nil
}

func (c *cnode) pid() int { return c.cmd.Process.Pid }

// health is a server's /healthz: role, leader and voter count.
func (c *cnode) health(ctx context.Context) (role, leader string, voters int, err error) {
	hc := &http.Client{Transport: c.node.HTTPTransport(nil), Timeout: time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:7433/healthz", nil)
	if err != nil {
		return "", "", 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "role":
			role = v
		case "leader":
			leader = v
		case "peer":
			if f := strings.Fields(v); len(f) == 3 && f[2] == "voter" {
				voters++
			}
		}
	}
	return role, leader, voters, nil
}

// waitHealth polls /healthz until cond holds.
func (c *cnode) waitHealth(ctx context.Context, timeout time.Duration, cond func(role, leader string, voters int) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		role, leader, voters, err := c.health(ctx)
		if err == nil && cond(role, leader, voters) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /healthz role %q leader %q voters %d (%v) after %v; its log:\n%s",
				c.name, role, leader, voters, err, timeout, tail(c.logPath(), 3000))
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// session connects to the server's MCP endpoint from inside its node;
// linearizable sets the Gantry-Consistency header on every request.
func (c *cnode) session(ctx context.Context, token string, linearizable bool) (*mcp.ClientSession, error) {
	var rt http.RoundTripper = bearer{token, c.node.HTTPTransport(nil)}
	if linearizable {
		rt = header{"Gantry-Consistency", "linearizable", rt}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-bench-cluster", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: "http://127.0.0.1:7433/mcp", HTTPClient: &http.Client{Transport: rt}}
	return client.Connect(ctx, tr, nil)
}

type header struct {
	key, value string
	next       http.RoundTripper
}

func (h header) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.key, h.value)
	return h.next.RoundTrip(r)
}

// callTool invokes a tool and decodes its structured output into out.
func callTool(ctx context.Context, s *mcp.ClientSession, tool string, args, out any) error {
	g := gantryDev{session: s}
	return g.call(ctx, tool, args, out)
}

// clusterBed is the bed, its processes and the host-side registry.
type clusterBed struct {
	bin      string
	bed      *netns.Bed
	tmp      string
	servers  []*cnode
	workers  []*cnode
	token    string // cluster-admin token, valid on every server
	log      *slog.Logger
	regClose func()
	ref      string
}

func (b *clusterBed) all() []*cnode { return append(append([]*cnode(nil), b.servers...), b.workers...) }

// logs is the tail of every node's log, for a failure.
func (b *clusterBed) logs() string {
	var sb strings.Builder
	for _, c := range b.all() {
		fmt.Fprintf(&sb, "=== %s\n%s\n", c.name, tail(c.logPath(), 2500))
	}
	return sb.String()
}

func runCluster(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	co := o.clusterOpts
	if co.reps < 1 || co.clients < 1 {
		return fmt.Errorf("-reps %d, -clients %d: want at least 1 of each", co.reps, co.clients)
	}
	if err := netns.Available(); err != nil {
		return fmt.Errorf("the cluster bench needs network namespaces: %w", err)
	}
	if _, err := os.Stat(o.gantry); err != nil {
		return fmt.Errorf("%w: run make build", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := netns.Sweep(ctx, "gbc", logger); err != nil {
		logger.Warn("sweeping what an earlier cluster bench left", "err", err)
	}
	tmp, err := os.MkdirTemp("", "gantry-bench-cluster-")
	if err != nil {
		return err
	}
	b := &clusterBed{bin: o.gantry, tmp: tmp, log: logger}
	var figures bytes.Buffer
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer ccancel()
		if err != nil && b.bed != nil {
			fmt.Fprintf(stderr, "--- last lines of the node logs:\n%s\n", b.logs())
		}
		if cerr := b.cleanup(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		if err == nil {
			_, err = stdout.Write(figures.Bytes())
		}
	}()
	if b.bed, err = netns.New(ctx, "gbc", 5, logger); err != nil {
		return err
	}
	if err := b.startAll(ctx, o.busybox); err != nil {
		return err
	}
	r := &clusterReport{reps: co.reps, clients: co.clients, writeD: co.writeD, loadStart: loadAvg()}
	if err := b.measure(ctx, co, r); err != nil {
		return err
	}
	// The single `gantry dev` baseline of the write measurement, started
	// after the cluster figures so it does not share the CPUs with them.
	g := &gantryDev{bin: o.gantry, dataDir: filepath.Join(tmp, "dev-data"), runDir: filepath.Join(tmp, "dev-run"),
		logPath: filepath.Join(tmp, "dev.log"), bridge: "gbenchc0", subnet: "10.93.0.0/24", ports: "45000-45999"}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer ccancel()
		if cerr := cleanupDev(cctx, logger, g); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup of gantry dev: %w", cerr))
		}
	}()
	logger.Info("writes/s against one gantry dev")
	if err := g.start(ctx); err != nil {
		return err
	}
	devTok, err := os.ReadFile(filepath.Join(g.dataDir, "admin.token"))
	if err != nil {
		return err
	}
	dial := func(ctx context.Context, _ int) (*mcp.ClientSession, error) {
		client := mcp.NewClient(&mcp.Implementation{Name: "gantry-bench-cluster", Version: "1"}, nil)
		tr := &mcp.StreamableClientTransport{Endpoint: "http://" + g.addr + "/mcp",
			HTTPClient: &http.Client{Transport: bearer{strings.TrimSpace(string(devTok)), http.DefaultTransport}}}
		return client.Connect(ctx, tr, nil)
	}
	if r.devWrites, err = writeRate(ctx, dial, co, "dev"); err != nil {
		return err
	}
	r.loadEnd = loadAvg()
	r.write(&figures)
	return nil
}

// startAll starts the registry, the bootstrap server, two joining
// servers and two workers, and waits until all are in.
func (b *clusterBed) startAll(ctx context.Context, busybox string) error {
	bed := b.bed
	ln, err := net.Listen("tcp", net.JoinHostPort(bed.HostIP.String(), "0"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.regClose = func() { _ = srv.Close() }
	reg := ln.Addr().String()
	b.ref = reg + "/bench/cluster:1"
	if err := pushImage(ctx, busybox, b.ref); err != nil {
		return err
	}
	for i := range 5 {
		name := fmt.Sprintf("s%d", i+1)
		if i >= 3 {
			name = fmt.Sprintf("w%d", i-2)
		}
		c := &cnode{name: name, node: bed.Node(i + 1), dataDir: filepath.Join(b.tmp, name)}
		if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
			return err
		}
		if i < 3 {
			b.servers = append(b.servers, c)
		} else {
			c.runDir = "/run/gantry-" + bed.Tag() + "-" + name
			b.workers = append(b.workers, c)
		}
	}
	common := func(c *cnode) []string {
		return []string{"--data-dir", c.dataDir, "--name", c.name, "--advertise", c.node.IP.String(), "--log-level", "debug"}
	}
	first := b.servers[0]
	joinAddr := net.JoinHostPort(first.node.IP.String(), "7434")
	first.args = append([]string{"server", "--bootstrap"}, common(first)...)
	b.log.Info("starting the cluster", "bed", bed.Tag())
	if err := first.start(ctx, b.bin); err != nil {
		return err
	}
	if err := first.waitHealth(ctx, 30*time.Second, func(role, _ string, _ int) bool { return role == "leader" }); err != nil {
		return err
	}
	read := func(f string) (string, error) {
		data, err := os.ReadFile(filepath.Join(first.dataDir, f))
		return strings.TrimSpace(string(data)), err
	}
	serverTok, err := read("server-join.token")
	if err != nil {
		return err
	}
	workerTok, err := read("worker-join.token")
	if err != nil {
		return err
	}
	if b.token, err = read("cluster-admin.token"); err != nil {
		return err
	}
	for _, s := range b.servers[1:] {
		s.args = append([]string{"server", "--join", joinAddr, "--token", serverTok}, common(s)...)
		if err := s.start(ctx, b.bin); err != nil {
			return err
		}
	}
	for _, s := range b.servers {
		if err := s.waitHealth(ctx, 30*time.Second, func(_, leader string, voters int) bool { return voters == 3 && leader != "" }); err != nil {
			return err
		}
	}
	for _, w := range b.workers {
		w.args = append([]string{"worker", "--join", joinAddr, "--token", workerTok, "--insecure-registry", reg,
			"--bridge", "g" + bed.Tag() + w.name, "--subnet", "10.78.0.0/24", "--run-dir", w.runDir, "--port-range", "41000-42999"}, common(w)...)
		if err := w.start(ctx, b.bin); err != nil {
			return err
		}
	}
	return b.waitNodes(ctx, 30*time.Second, func(st map[string]string) bool {
		return st["w1"] == "ready" && st["w2"] == "ready"
	})
}

// leader returns the server that leads, as s1..s3 see it.
func (b *clusterBed) leader(ctx context.Context) (*cnode, error) {
	for _, s := range b.servers {
		_, leader, _, err := s.health(ctx)
		if err != nil || leader == "" {
			continue
		}
		for _, l := range b.servers {
			if l.name == leader {
				return l, nil
			}
		}
	}
	return nil, errors.New("no server names a leader")
}

// anyServer runs fn with a session to the first server it can reach.
func (b *clusterBed) withSession(ctx context.Context, fn func(*mcp.ClientSession) error) error {
	var errs []error
	for _, s := range b.servers {
		if s.done == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cs, err := s.session(cctx, b.token, false)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = fn(cs)
		cs.Close()
		return err
	}
	return fmt.Errorf("no server answers MCP: %w", errors.Join(errs...))
}

// waitNodes polls list_nodes until cond holds on node name → status.
func (b *clusterBed) waitNodes(ctx context.Context, timeout time.Duration, cond func(map[string]string) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		st := map[string]string{}
		err := b.withSession(ctx, func(cs *mcp.ClientSession) error {
			var nl api.NodeList
			if err := callTool(ctx, cs, api.ToolListNodes, map[string]any{}, &nl); err != nil {
				return err
			}
			for _, n := range nl.Nodes {
				st[n.Name] = n.Status
			}
			return nil
		})
		if err == nil && cond(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes %v (%v) after %v", st, err, timeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *clusterBed) cleanup(ctx context.Context) error {
	var errs []error
	if b.bed != nil && len(b.servers) > 0 {
		// Remove the services so the workers stop their containers.
		_ = b.withSession(ctx, func(cs *mcp.ClientSession) error {
			var list api.ServiceList
			if err := callTool(ctx, cs, api.ToolListServices, map[string]any{}, &list); err != nil {
				return err
			}
			for _, s := range list.Services {
				_ = callTool(ctx, cs, api.ToolRemoveService, map[string]any{"name": s.Name}, nil)
			}
			return nil
		})
		for _, w := range b.workers {
			for end := time.Now().Add(20 * time.Second); w.done != nil && len(runcList(ctx, filepath.Join(w.runDir, "runc"))) > 0 && time.Now().Before(end); {
				_ = sleep(ctx, 200*time.Millisecond)
			}
		}
	}
	for _, c := range b.all() {
		c.kill9()
	}
	if b.bed != nil {
		for _, n := range b.bed.Nodes {
			_ = n.KillAll(ctx)
		}
	}
	for _, w := range b.workers {
		root := filepath.Join(w.runDir, "runc")
		if err := forceRemove(ctx, root, runcList(ctx, root)); err != nil {
			errs = append(errs, err)
		}
		_ = syscall.Unmount(filepath.Join(w.runDir, "netns"), syscall.MNT_DETACH)
		if err := unmountUnder(w.dataDir); err != nil {
			errs = append(errs, err)
		}
		_ = os.RemoveAll(w.runDir)
		_ = os.Remove("/run/gantry-bridges/g" + b.bed.Tag() + w.name + ".lock")
	}
	if b.bed != nil {
		if err := b.bed.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if b.regClose != nil {
		b.regClose()
	}
	if err := unmountUnder(b.tmp); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// cleanupDev removes the baseline gantry dev's services (none run a
// container), stops it and removes its bridge and run dir.
func cleanupDev(ctx context.Context, logger *slog.Logger, g *gantryDev) error {
	var errs []error
	if g.alive() && g.session != nil {
		errs = append(errs, g.removeAll(ctx))
	}
	g.stop()
	if g.cmd != nil {
		root := g.runcRoot()
		errs = append(errs, forceRemove(ctx, root, runcList(ctx, root)))
		_ = syscall.Unmount(filepath.Join(g.runDir, "netns"), syscall.MNT_DETACH)
		_ = os.RemoveAll(g.runDir)
		if exists("/sys/class/net/" + g.bridge) {
			if out, err := exec.CommandContext(ctx, "ip", "link", "del", g.bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", g.bridge, err, out))
			}
		}
		_ = removeGuardRule(ctx, g.bridge)
		_ = os.Remove("/run/gantry-bridges/" + g.bridge + ".lock")
	}
	logger.Debug("gantry dev baseline removed")
	return errors.Join(errs...)
}

// writeRate runs co.clients MCP clients for co.writeD, each scaling a
// service of its own between 1 and 2 replicas; the services ask for more
// CPU than any node has, so no instance is placed and no container runs:
// what is timed is the tool call and its committed Raft write.
func writeRate(ctx context.Context, dial func(context.Context, int) (*mcp.ClientSession, error), co clusterOptions, tag string) (float64, error) {
	sessions := make([]*mcp.ClientSession, co.clients)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i := range sessions {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := dial(cctx, i)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("connect write client %d: %w", i, err)
		}
		sessions[i] = s
		spec := map[string]any{"name": fmt.Sprintf("w%s%d", tag, i), "image": "bench/none:1", "replicas": 0,
			"resources": map[string]any{"cpu": "500", "memory": "16Mi"}}
		if err := callTool(ctx, s, api.ToolDeploy, map[string]any{"spec": spec}, nil); err != nil {
			return 0, fmt.Errorf("deploy the write-bench service: %w", err)
		}
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(sessions))
	start := time.Now()
	end := start.Add(co.writeD)
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 1; time.Now().Before(end); k++ {
				if err := callTool(ctx, s, api.ToolScaleService, map[string]any{"name": fmt.Sprintf("w%s%d", tag, i), "replicas": 1 + k%2}, nil); err != nil {
					errs[i] = err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("scale_service: %w", err)
	}
	for i, s := range sessions {
		_ = callTool(ctx, s, api.ToolRemoveService, map[string]any{"name": fmt.Sprintf("w%s%d", tag, i)}, nil)
	}
	return float64(n.Load()) / took.Seconds(), nil
}

// clusterReport holds the figures of one -cluster run.
type clusterReport struct {
	reps, clients      int
	writeD             time.Duration
	failover, failLead []time.Duration // linearizable read answered / /healthz names a leader
	moved, detected    []time.Duration // instances running elsewhere / node marked down
	leaderWrites       float64
	spreadWrites       float64
	devWrites          float64
	serverMem, workMem memory
	workerInstances    int
	loadStart, loadEnd string
}

// measure takes the cluster figures: failover, worker death, writes/s
// through MCP and memory.
func (b *clusterBed) measure(ctx context.Context, co clusterOptions, r *clusterReport) error {
	for i := range co.reps {
		if err := b.failover(ctx, i, r); err != nil {
			return err
		}
	}
	if err := b.workerDeaths(ctx, co.reps, r); err != nil {
		return err
	}
	l, err := b.leader(ctx)
	if err != nil {
		return err
	}
	b.log.Info("writes/s through the leader's MCP endpoint", "leader", l.name)
	dialOn := func(pick func(int) *cnode) func(context.Context, int) (*mcp.ClientSession, error) {
		return func(ctx context.Context, i int) (*mcp.ClientSession, error) {
			return pick(i).session(ctx, b.token, false)
		}
	}
	if r.leaderWrites, err = writeRate(ctx, dialOn(func(int) *cnode { return l }), co, "lead"); err != nil {
		return err
	}
	b.log.Info("writes/s spread over the three servers")
	if r.spreadWrites, err = writeRate(ctx, dialOn(func(i int) *cnode { return b.servers[i%3] }), co, "all"); err != nil {
		return err
	}
	return nil
}

// failover kills the leader with SIGKILL and times how long until a
// surviving server answers a linearizable read (a fresh MCP session, every
// request with Gantry-Consistency: linearizable), then brings it back.
func (b *clusterBed) failover(ctx context.Context, rep int, r *clusterReport) error {
	l, err := b.leader(ctx)
	if err != nil {
		return err
	}
	var others []*cnode
	for _, s := range b.servers {
		if s != l {
			others = append(others, s)
		}
	}
	b.log.Info("failover: SIGKILL of the leader", "rep", rep+1, "leader", l.name)
	l.kill9()
	killed := time.Now()
	// Both probes poll every survivor at once, so a read blocked on a
	// server without a leader does not delay the other.
	var lead, took time.Duration
	var leadErr, readErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		lead, leadErr = firstSuccess(ctx, others, killed, func(ctx context.Context, s *cnode) bool {
			_, leader, _, err := s.health(ctx)
			return err == nil && leader != "" && leader != l.name
		})
	}()
	go func() {
		defer wg.Done()
		took, readErr = firstSuccess(ctx, others, killed, func(ctx context.Context, s *cnode) bool {
			cs, err := s.session(ctx, b.token, true)
			if err != nil {
				return false
			}
			defer cs.Close()
			var nl api.NodeList
			return callTool(ctx, cs, api.ToolListNodes, map[string]any{}, &nl) == nil
		})
	}()
	wg.Wait()
	if err := errors.Join(leadErr, readErr); err != nil {
		return fmt.Errorf("after SIGKILL of the leader %s: %w", l.name, err)
	}
	r.failover, r.failLead = append(r.failover, took), append(r.failLead, lead)
	b.log.Info("failover", "rep", rep+1, "linearizable_read_after", took.Round(time.Millisecond), "leader_named_after", lead.Round(time.Millisecond))
	// It comes back (no token: it has its certificate) and is a voter again.
	l.args = withoutToken(l.args)
	if err := l.start(ctx, b.bin); err != nil {
		return err
	}
	for _, s := range b.servers {
		if err := s.waitHealth(ctx, 30*time.Second, func(_, leader string, voters int) bool { return voters == 3 && leader != "" }); err != nil {
			return err
		}
	}
	return sleep(ctx, time.Second) // let it catch up before the next kill
}

// firstSuccess runs probe against every server in parallel (each attempt
// bounded to 1 s, 10 ms apart) and returns how long after since the first
// one succeeded; it gives up after 30 s.
func firstSuccess(ctx context.Context, servers []*cnode, since time.Time, probe func(context.Context, *cnode) bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	first := make(chan time.Duration, len(servers))
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				actx, acancel := context.WithTimeout(ctx, time.Second)
				ok := probe(actx, s)
				acancel()
				if ok {
					first <- time.Since(since)
					return
				}
				_ = sleep(ctx, 10*time.Millisecond)
			}
		}()
	}
	var d time.Duration
	var err error
	select {
	case d = <-first:
	case <-ctx.Done():
		err = fmt.Errorf("no server answered within 30 s: %w", ctx.Err())
	}
	cancel()
	wg.Wait()
	return d, err
}

// workerDeaths runs a 3-replica service and, reps times, kills every
// process of the worker that runs it (containers included, as a machine
// losing power), timing until list_nodes says the worker is down (gossip
// failure detection) and until 3 instances run on the other worker.
func (b *clusterBed) workerDeaths(ctx context.Context, reps int, r *clusterReport) error {
	cs, err := b.servers[0].session(ctx, b.token, false)
	if err != nil {
		return err
	}
	defer cs.Close()
	spec := map[string]any{"name": "moving", "image": b.ref, "command": []string{"/bin/sleep", "3600"}, "replicas": 3,
		"resources": map[string]any{"cpu": "100m", "memory": "16Mi"}, "stop": map[string]any{"signal": "SIGKILL", "grace": "1s"}}
	if err := callTool(ctx, cs, api.ToolDeploy, map[string]any{"spec": spec}, nil); err != nil {
		return fmt.Errorf("deploy the 3-replica service: %w", err)
	}
	service := func() (api.ServiceStatus, error) {
		var st api.ServiceStatus
		err := callTool(ctx, cs, api.ToolGetService, map[string]any{"name": "moving"}, &st)
		return st, err
	}
	waitService := func(timeout time.Duration, what string, cond func(api.ServiceStatus) bool) (api.ServiceStatus, error) {
		deadline := time.Now().Add(timeout)
		for {
			st, err := service()
			if err == nil && cond(st) {
				return st, nil
			}
			if time.Now().After(deadline) {
				return st, fmt.Errorf("service moving: %s not reached after %v (%+v, %v)", what, timeout, st, err)
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return st, err
			}
		}
	}
	st, err := waitService(60*time.Second, "3 running", func(s api.ServiceStatus) bool { return s.Running == 3 })
	if err != nil {
		return err
	}
	for rep := range reps {
		on := runningOn(st)
		victim, survivor := b.workers[0], b.workers[1]
		if on[victim.name] == 0 {
			victim, survivor = survivor, victim
		}
		b.log.Info("worker death: every process of the worker killed", "rep", rep+1, "worker", victim.name, "instances", on[victim.name])
		if err := victim.node.KillAll(ctx); err != nil {
			return err
		}
		killed := time.Now()
		<-victim.done
		victim.done = nil
		var down time.Duration
		for {
			if down == 0 {
				var nl api.NodeList
				if err := callTool(ctx, cs, api.ToolListNodes, map[string]any{}, &nl); err == nil {
					for _, n := range nl.Nodes {
						if n.Name == victim.name && n.Status == "down" {
							down = time.Since(killed)
						}
					}
				}
			}
			st, err = service()
			if err == nil && runningOn(st)[survivor.name] == 3 {
				break
			}
			if time.Since(killed) > 60*time.Second {
				return fmt.Errorf("3 instances not running on %s 60s after %s died: %+v, %v", survivor.name, victim.name, st, err)
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		moved := time.Since(killed)
		r.moved, r.detected = append(r.moved, moved), append(r.detected, down)
		b.log.Info("worker death", "rep", rep+1, "running_elsewhere_after", moved.Round(time.Millisecond), "marked_down_after", down.Round(time.Millisecond))
		if rep == reps-1 {
			// Memory with the 3 instances on the survivor, after a settle.
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
			if r.workMem, err = readMemory(survivor.pid()); err != nil {
				return err
			}
			r.workerInstances = len(runcList(ctx, filepath.Join(survivor.runDir, "runc")))
			l, err := b.leader(ctx)
			if err != nil {
				return err
			}
			if r.serverMem, err = readMemory(l.pid()); err != nil {
				return err
			}
		}
		// The dead worker comes back; the next round kills the survivor.
		victim.args = withoutToken(victim.args)
		if err := victim.start(ctx, b.bin); err != nil {
			return err
		}
		if err := b.waitNodes(ctx, 30*time.Second, func(st map[string]string) bool { return st[victim.name] == "ready" }); err != nil {
			return err
		}
		if st, err = waitService(30*time.Second, "3 instances, all running", func(s api.ServiceStatus) bool {
			return len(s.Instances) == 3 && s.Running == 3
		}); err != nil {
			return err
		}
	}
	return nil
}

// runningOn counts the running instances per node.
func runningOn(s api.ServiceStatus) map[string]int {
	m := map[string]int{}
	for _, in := range s.Instances {
		if in.State == "running" {
			m[in.Node]++
		}
	}
	return m
}

// withoutToken drops --token and its value: a restart needs none.
func withoutToken(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--token" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func maxOf(xs []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func (r *clusterReport) write(w io.Writer) {
	hb := state.DefaultClusterHeartbeatTimeout
	election := 2 * hb // state.Open: ElectionTimeout is 2× the heartbeat timeout with a network transport
	lan := membership.LANProfile()
	fmt.Fprintf(w, "### Cluster: 3 servers, 2 workers (`bench -cluster`)\n\n")
	fmt.Fprintf(w, "Each `gantry server` and `gantry worker` in its own network namespace (e2e/netns bed, veth to one bridge), mutual TLS and gossip over the bridge, default settings; %d repetitions of each failure. Load average %s at the start, %s at the end.\n\n", r.reps, r.loadStart, r.loadEnd)
	fmt.Fprintf(w, "| measurement | median | max | baseline (same run / configured) | ratio (median / baseline) |\n|---|---:|---:|---|---:|\n")
	fmt.Fprintf(w, "| leader SIGKILL → a linearizable read answered by a survivor | %s | %s | raft heartbeat timeout %v (election timeout %v) | %.1f× (%.1f× election) |\n",
		ms(median(r.failover)), ms(maxOf(r.failover)), hb, election, ratio(median(r.failover), hb), ratio(median(r.failover), election))
	fmt.Fprintf(w, "| leader SIGKILL → a survivor's /healthz names the new leader | %s | %s | raft heartbeat timeout %v | %.1f× |\n",
		ms(median(r.failLead)), ms(maxOf(r.failLead)), hb, ratio(median(r.failLead), hb))
	fmt.Fprintf(w, "| worker killed (all its processes) → 3 instances running on the other worker | %s | %s | goal 5 s | %.2f× (goal %s) |\n",
		ms(median(r.moved)), ms(maxOf(r.moved)), ratio(median(r.moved), 5*time.Second), verdict(maxOf(r.moved) < 5*time.Second))
	fmt.Fprintf(w, "| worker killed → `list_nodes` says it is down (gossip failure detection) | %s | %s | memberlist probe %v, suspicion %d× | moving takes %.2f× detection |\n",
		ms(median(r.detected)), ms(maxOf(r.detected)), lan.ProbeInterval, lan.SuspicionMult, ratio(median(r.moved), median(r.detected)))
	fmt.Fprintf(w, "\n| committed writes through MCP (`scale_service`, %d parallel clients, %v each) | writes/s | vs one `gantry dev` |\n|---|---:|---:|\n", r.clients, r.writeD)
	fmt.Fprintf(w, "| 3 servers, every client on the leader | %.0f | %.2f× |\n", r.leaderWrites, r.leaderWrites/r.devWrites)
	fmt.Fprintf(w, "| 3 servers, clients spread over the three (2 in 3 forwarded) | %.0f | %.2f× |\n", r.spreadWrites, r.spreadWrites/r.devWrites)
	fmt.Fprintf(w, "| one `gantry dev` (single voter), same run | %.0f | 1× |\n", r.devWrites)
	fmt.Fprintf(w, "\n| memory | VmRSS | PSS |\n|---|---:|---:|\n")
	fmt.Fprintf(w, "| a server (the leader, after the failovers and the worker deaths) | %s | %s |\n", mib(r.serverMem.rss), mib(r.serverMem.pss))
	fmt.Fprintf(w, "| a worker running %d instances | %s | %s |\n", r.workerInstances, mib(r.workMem.rss), mib(r.workMem.pss))
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
