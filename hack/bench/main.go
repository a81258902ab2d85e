// Command bench measures Gantry on this machine against raw runc, in one
// run, on one image: submit-to-running latency of one instance, the time to
// bring up 50 instances, and the resident memory of `gantry dev` and of
// each container's gantry-init. It prints the figures as markdown tables
// (scripts/bench.sh appends them to docs/benchmarks.md):
//
//	go run ./hack/bench -gantry bin/gantry
//
// It needs root, runc, the CNI plugins and /usr/bin/busybox. It starts its
// own in-process registry and its own `gantry dev` (own data dir, bridge
// gbench0, subnet 10.92.0.0/24, own run dir), and removes everything it
// created when it ends, fails or is interrupted.
//
// With -cluster it measures a cluster instead (hack/bench/cluster.go): 3
// servers and 2 workers, each in a network namespace of an e2e/netns bed,
// for leader failover, worker death to instances running elsewhere,
// committed writes per second through MCP and memory.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type options struct {
	gantry      string
	busybox     string
	runs        int
	replicas    int
	timeout     time.Duration
	bridge      string
	subnet      string
	ports       string
	keepLog     string
	mcp         bool
	mcpOpts     mcpOptions
	cluster     bool
	clusterOpts clusterOptions
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.gantry, "gantry", "bin/gantry", "the gantry binary to measure (make build)")
	fs.StringVar(&o.busybox, "busybox", "/usr/bin/busybox", "a static busybox for the test image")
	fs.IntVar(&o.runs, "runs", 12, "timed runs of each single-container measurement (at least 10)")
	fs.IntVar(&o.replicas, "replicas", 50, "instances of the bulk start-up measurement")
	fs.DurationVar(&o.timeout, "timeout", 4*time.Minute, "bound on the measurements (cleanup gets 2 more minutes)")
	fs.StringVar(&o.bridge, "bridge", "gbench0", "bridge of the bench's gantry dev (deleted at the end)")
	fs.StringVar(&o.subnet, "subnet", "10.92.0.0/24", "container subnet of the bench's gantry dev")
	fs.StringVar(&o.ports, "port-range", "43000-44999", "dynamic host ports of the bench's gantry dev")
	fs.StringVar(&o.keepLog, "gantry-log", "", "copy gantry dev's debug log to this file at the end")
	fs.BoolVar(&o.mcp, "mcp", false, "measure MCP tool-call latency (a read and a dry-run plan) on a store of -services services instead; needs no root")
	fs.IntVar(&o.mcpOpts.services, "services", 1000, "services in the store of the -mcp measurement")
	fs.IntVar(&o.mcpOpts.calls, "calls", 2000, "timed calls of each tool in the -mcp measurement (list_services gets a tenth)")
	fs.BoolVar(&o.cluster, "cluster", false, "measure a cluster of 3 servers and 2 workers in network namespaces instead: failover, worker death, writes/s, memory")
	fs.IntVar(&o.clusterOpts.reps, "reps", 5, "repetitions of each failure in the -cluster measurement")
	fs.IntVar(&o.clusterOpts.clients, "clients", 8, "parallel MCP clients of the -cluster writes/s measurement")
	fs.DurationVar(&o.clusterOpts.writeD, "write-time", 4*time.Second, "duration of each -cluster writes/s measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.mcp {
		return runMCP(ctx, o.mcpOpts, stdout, stderr)
	}
	if o.cluster {
		return runCluster(ctx, o, stdout, stderr)
	}
	if o.runs < 10 {
		return fmt.Errorf("-runs %d: at least 10 runs are needed for a p90: %w", o.runs, flag.ErrHelp)
	}
	if err := preflight(o); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	// Container inits started by `runc run -d` become the bench's children
	// (not PID 1's), so it can reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	tmp, err := os.MkdirTemp("", "gantry-bench-")
	if err != nil {
		return err
	}
	var figures bytes.Buffer
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()

	g := &gantryDev{
		bin:     o.gantry,
		dataDir: filepath.Join(tmp, "data"),
		runDir:  filepath.Join(tmp, "run"),
		logPath: filepath.Join(tmp, "gantry.log"),
		bridge:  o.bridge,
		subnet:  o.subnet,
		ports:   o.ports,
	}
	b := &baseline{dir: filepath.Join(tmp, "baseline"), log: logger}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer ccancel()
		if err != nil {
			fmt.Fprintf(stderr, "--- last lines of the gantry dev log:\n%s\n", tail(g.logPath, 4000))
		}
		if o.keepLog != "" {
			if data, rerr := os.ReadFile(g.logPath); rerr == nil {
				_ = os.WriteFile(o.keepLog, data, 0o600)
			}
		}
		if cerr := cleanup(cctx, logger, g, b, tmp, o.bridge); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		// The figures go out last: a reader that went away cannot cut
		// the cleanup short.
		if err == nil {
			_, err = stdout.Write(figures.Bytes())
		}
	}()

	ref := strings.TrimPrefix(reg.URL, "http://") + "/bench/busybox:1"
	if err := pushImage(ctx, o.busybox, ref); err != nil {
		return err
	}
	r := &report{runs: o.runs, replicas: o.replicas, loadStart: loadAvg()}
	if err := measure(ctx, logger, g, b, ref, o, r); err != nil {
		if g.cmd != nil && !g.alive() {
			return fmt.Errorf("gantry dev exited during the bench (its log is below): %w", err)
		}
		return err
	}
	r.loadEnd = loadAvg()
	r.write(&figures)
	return nil
}

func preflight(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark needs root (runc, mounts, network namespaces): run it with sudo")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return errors.New("runc is not installed: make deps installs it")
	}
	for _, p := range []string{o.gantry, o.busybox} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: run make build and make deps", err)
		}
	}
	if exists("/sys/class/net/" + o.bridge) {
		return fmt.Errorf("bridge %s exists already: another bench may be running (or delete it: ip link del %s)", o.bridge, o.bridge)
	}
	return nil
}

func pushImage(ctx context.Context, busybox, ref string) error {
	layer, err := image.BusyboxLayer(ctx, busybox, nil)
	if err != nil {
		return err
	}
	img, err := image.Build([]v1.Layer{layer}, v1.Config{
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"/bin/sh"},
	})
	if err != nil {
		return err
	}
	return image.Push(ctx, img, ref, true)
}

// measure takes every figure, in order: idle memory, single-instance
// latency, the runc baselines, 50 instances and their memory.
func measure(ctx context.Context, logger *slog.Logger, g *gantryDev, b *baseline, ref string, o options, r *report) error {
	logger.Info("starting gantry dev", "data_dir", g.dataDir)
	if err := g.start(ctx); err != nil {
		return err
	}
	logger.Info("gantry dev is up", "pid", g.pid(), "addr", g.addr)
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	var err error
	if r.memIdle, err = readMemory(g.pid()); err != nil {
		return fmt.Errorf("gantry dev memory: %w", err)
	}

	logger.Info("pre-pulling the image", "ref", ref)
	var img api.Image
	if err := g.call(ctx, api.ToolPullImage, map[string]any{"ref": ref}, &img); err != nil {
		return err
	}

	// Single instance, from a cached image. Run 0 is a warm-up (first use
	// of the bridge, iptables chains, page cache) and is not counted; the
	// baseline bundle is copied from it while it runs.
	logger.Info("single-instance latency", "runs", o.runs)
	for i := 0; i <= o.runs; i++ {
		lr, err := latencyRun(ctx, g, fmt.Sprintf("lat%02d", i), ref, func(s api.ServiceStatus) error {
			return copyBundle(ctx, g, b, s, i)
		})
		if err != nil {
			return err
		}
		if i > 0 {
			r.lat = append(r.lat, lr)
		}
	}

	logger.Info("runc baselines", "runs", o.runs)
	for i := 0; i <= o.runs; i++ {
		d, cpu, err := b.runDetached(ctx)
		if err != nil {
			return err
		}
		if i > 0 {
			r.runcRun = append(r.runcRun, d)
			r.runcRunCPU = append(r.runcRunCPU, cpu)
		}
	}
	for i := 0; i <= o.runs; i++ {
		d, cpu, ready, err := b.createStart(ctx)
		if err != nil {
			return err
		}
		if i > 0 {
			r.runcCreateStart = append(r.runcCreateStart, d)
			r.runcCreateStartCPU = append(r.runcCreateStartCPU, cpu)
			if ready > 0 {
				r.initReady = append(r.initReady, ready)
			}
		}
	}
	for i := 0; i < o.runs; i++ {
		d, cpu, err := b.killDeleteMissing(ctx)
		if err != nil {
			return err
		}
		r.runcKillDelete = append(r.runcKillDelete, d)
		r.runcKillDeleteCPU = append(r.runcKillDeleteCPU, cpu)
	}

	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	if r.memBefore, err = readMemory(g.pid()); err != nil {
		return fmt.Errorf("gantry dev memory: %w", err)
	}

	logger.Info("bulk start-up", "replicas", o.replicas)
	if err := bulkRun(ctx, g, ref, o.replicas, r); err != nil {
		return err
	}

	lines, err := readLog(g.logPath)
	if err != nil {
		return fmt.Errorf("read gantry dev log: %w", err)
	}
	r.breakdown(lines)
	return nil
}

// latencyRun deploys a 1-replica service and polls get_service every 5 ms
// until its instance is running; then calls during(s), removes the service
// and waits until its container, directory and netns are gone.
func latencyRun(ctx context.Context, g *gantryDev, name, ref string, during func(api.ServiceStatus) error) (latRun, error) {
	var lr latRun
	lr.t0 = time.Now()
	if err := g.deploy(ctx, name, ref, 1); err != nil {
		return lr, err
	}
	lr.deployed = time.Now()
	s, err := g.waitService(ctx, name, 5*time.Millisecond, 30*time.Second, func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].State == "running"
	})
	lr.running = time.Now()
	if err != nil {
		return lr, err
	}
	lr.id = s.Instances[0].ID
	for _, ev := range s.Events {
		if ev.Type == "Deployed" && lr.deployEv.IsZero() {
			lr.deployEv = ev.Time
		}
		if ev.Instance != lr.id {
			continue
		}
		switch ev.Type {
		case "Scheduled":
			lr.scheduled = ev.Time
		case "Started":
			lr.started = ev.Time
		}
	}
	if err := during(s); err != nil {
		return lr, err
	}
	if err := g.remove(ctx, name, []string{lr.id}, 30*time.Second); err != nil {
		return lr, err
	}
	return lr, nil
}

// copyBundle prepares the baseline from the first instance's bundle.
func copyBundle(ctx context.Context, g *gantryDev, b *baseline, s api.ServiceStatus, run int) error {
	if run != 0 {
		return nil
	}
	in := s.Instances[0]
	instDir := filepath.Join(g.dataDir, "instances", in.ID)
	cfg, err := os.ReadFile(filepath.Join(instDir, "bundle", "config.json"))
	if err != nil {
		return fmt.Errorf("read the config.json gantry generated: %w", err)
	}
	layers, err := layerDirs(filepath.Join(g.dataDir, "images"), in.ImageDigest)
	if err != nil {
		return err
	}
	return b.prepare(ctx, cfg, instDir, layers)
}

// bulkRun deploys one service with n replicas, times it to running == n,
// measures memory after a settle, then removes it.
func bulkRun(ctx context.Context, g *gantryDev, ref string, n int, r *report) error {
	const name = "bulk"
	cpu0, err := readCPU(g.pid())
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := g.deploy(ctx, name, ref, n); err != nil {
		return err
	}
	var first time.Duration
	s, err := g.waitService(ctx, name, 20*time.Millisecond, 150*time.Second, func(s api.ServiceStatus) bool {
		if first == 0 && s.Running > 0 {
			first = time.Since(t0)
		}
		return s.Running == n
	})
	if err != nil {
		return err
	}
	r.bulk, r.bulkFirst = time.Since(t0), first
	cpu1, err := readCPU(g.pid())
	if err != nil {
		return err
	}
	r.bulkCPU = cpuTimes{self: cpu1.self - cpu0.self, children: cpu1.children - cpu0.children}
	var ids []string
	for _, in := range s.Instances {
		ids = append(ids, in.ID)
	}
	r.bulkIDs = ids
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	if r.memBulk, err = readMemory(g.pid()); err != nil {
		return fmt.Errorf("gantry dev memory: %w", err)
	}
	for _, id := range ids {
		pid, err := runcPID(ctx, g.runcRoot(), id)
		if err != nil {
			return err
		}
		m, err := readMemory(pid)
		if err != nil {
			return fmt.Errorf("gantry-init of %s: %w", id, err)
		}
		r.initMem = append(r.initMem, m)
	}
	t1 := time.Now()
	if err := g.remove(ctx, name, ids, 120*time.Second); err != nil {
		return err
	}
	r.bulkRemove = time.Since(t1)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// cleanup leaves the machine as it was: services removed through Gantry,
// gantry dev stopped, and whatever is still left (after a crash of either
// side) removed by hand.
func cleanup(ctx context.Context, logger *slog.Logger, g *gantryDev, b *baseline, tmp, bridge string) error {
	var errs []error
	if g.alive() {
		if err := g.removeAll(ctx); err != nil {
			errs = append(errs, err)
		}
		g.stop()
	}
	if g.seen != nil && len(g.leftovers(ctx, g.seenIDs())) > 0 && ctx.Err() == nil {
		// Gantry cleans up after itself when restarted on its data dir.
		logger.Warn("instances left over; restarting gantry dev once to remove them")
		if err := g.start(ctx); err == nil {
			if err := g.removeAll(ctx); err != nil {
				errs = append(errs, err)
			}
		} else {
			errs = append(errs, err)
		}
		g.stop()
	}
	if g.seen != nil {
		errs = append(errs, forceRemove(ctx, g.runcRoot(), g.seenIDs()))
	}
	if err := b.cleanup(ctx); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, unmountUnder(tmp))
	if exists("/sys/class/net/" + bridge) {
		if out, err := exec.CommandContext(ctx, "ip", "link", "del", bridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", bridge, err, out))
		}
	}
	errs = append(errs, removeGuardRule(ctx, bridge))
	if err := os.RemoveAll(tmp); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeGuardRule deletes the INPUT rule gantry dev installs for its bridge
// (no access to the host's 127.0.0.0/8 from instances) and leaves in place
// when it stops.
func removeGuardRule(ctx context.Context, bridge string) error {
	rule := []string{"INPUT", "-i", bridge, "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
		"-m", "comment", "--comment", "gantry: no localnet access from instances",
		"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"}
	for i := 0; i < 5; i++ {
		if exec.CommandContext(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...).Run() != nil {
			return nil // not (or no longer) there
		}
		if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -D %s: %w: %s", strings.Join(rule, " "), err, out)
		}
	}
	return nil
}

// forceRemove deletes the containers of the given instances that survived
// everything else (their mounts and network namespaces are under the
// bench's temporary directory: unmountUnder removes them).
func forceRemove(ctx context.Context, root string, ids []string) error {
	var errs []error
	have := map[string]bool{}
	for _, c := range runcList(ctx, root) {
		have[c] = true
	}
	for _, id := range ids {
		if !have[id] {
			continue
		}
		if out, err := exec.CommandContext(ctx, "runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", id, err, out))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	var errs []error
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", points[i], err))
		}
	}
	return errors.Join(errs...)
}
