package cluster

// `gantry worker`: a node that runs instances. It joins with a worker join
// token (or reuses its certificate), gossips its CPU, memory, zone and
// labels, registers its node record, and runs worker.Worker over the RPC
// remote store, whose last assignment is cached on disk: with no server
// reachable the worker keeps its containers running and removes nothing.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/rpc"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
	"github.com/gantry-dev/gantry/worker"
)

// WorkerOptions configure `gantry worker`.
type WorkerOptions struct {
	Node NodeOptions
	// Container runtime and network, as for gantry dev.
	OCIRuntime string
	Insecure   []string
	Subnet     string
	Bridge     string
	RunDir     string
	PortRange  [2]int
	// What the node offers the scheduler.
	CPU    int64 // millicores
	Memory int64 // bytes
	Zone   string
	Labels map[string]string
}

// ParseWorkerFlags parses the flags of `gantry worker`.
func ParseWorkerFlags(args []string, stderr io.Writer) (*WorkerOptions, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &WorkerOptions{}
	var level, ports, cpu, mem string
	var join, insecure, labels stringList
	registerNodeFlags(fs, &o.Node, &level, &join)
	fs.StringVar(&o.Node.RPCAddr, "rpc-addr", ":"+strconv.Itoa(DefaultRPCPort), "bind address of the worker's endpoint for the servers' logs and exec calls (HTTPS, server certificates only)")
	fs.StringVar(&o.OCIRuntime, "oci-runtime", "runc", "runc-compatible OCI runtime binary: a name on PATH or a path (runc, crun, youki)")
	fs.Var(&insecure, "insecure-registry", "registry host[:port] that may be reached over plain http (repeatable; loopback registries always may)")
	fs.StringVar(&o.Subnet, "subnet", "10.88.0.0/16", "container network subnet")
	fs.StringVar(&o.Bridge, "bridge", "gantry0", "container network bridge name")
	fs.StringVar(&o.RunDir, "run-dir", "/run/gantry", "directory for runtime state that ends with a reboot: the OCI runtime's root and network namespaces")
	fs.StringVar(&ports, "port-range", "20000-32767", "host ports for dynamically published ports, LO-HI")
	fs.StringVar(&cpu, "cpu", "", "CPU this node offers to instances, e.g. 2 or 1500m (default: every CPU)")
	fs.StringVar(&mem, "memory", "", "memory this node offers to instances, e.g. 4Gi (default: all of it)")
	fs.StringVar(&o.Zone, "zone", "", "failure zone of this node (also its label zone=)")
	fs.Var(&labels, "label", "node label KEY=VALUE (repeatable)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gantry worker [flags]\n\nRuns a Gantry worker: the node agent that runs instances. First start: --join SERVER --token WORKER_TOKEN.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseOnlyFlags(fs, args); err != nil {
		return nil, err // flag.ErrHelp: the usage is printed and the command exits 0
	}
	if err := checkNodeFlags(&o.Node, level, join); err != nil {
		return nil, err
	}
	o.Insecure = insecure
	if err := checkPortClash(map[string]string{"--rpc-addr": o.Node.RPCAddr, "--gossip-addr": o.Node.GossipAddr}); err != nil {
		return nil, err
	}
	if err := checkBridge(o.Bridge); err != nil {
		return nil, err
	}
	// Checked here as the network checks it: found only at start, after
	// the join, a bad --subnet would have spent a use of the join token.
	if ip, n, err := net.ParseCIDR(o.Subnet); err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("--subnet %q: want an IPv4 CIDR such as 10.88.0.0/16: %w", o.Subnet, errdefs.ErrInvalid)
	} else if ones, _ := n.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("--subnet %q is too small: use a prefix of /29 or shorter: %w", o.Subnet, errdefs.ErrInvalid)
	}
	lo, hi, ok := strings.Cut(ports, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1024 || b > 65535 || a >= b {
		return nil, fmt.Errorf("--port-range %q: want LO-HI with 1024 <= LO < HI <= 65535: %w", ports, errdefs.ErrInvalid)
	}
	o.PortRange = [2]int{a, b}
	o.CPU = int64(goruntime.NumCPU()) * 1000
	if cpu != "" {
		c, err := spec.ParseCPU(cpu)
		if err != nil {
			return nil, fmt.Errorf("--cpu: %w", err)
		}
		o.CPU = int64(c)
	}
	o.Memory = memTotal()
	if mem != "" {
		m, err := spec.ParseBytes(mem)
		if err != nil {
			return nil, fmt.Errorf("--memory: %w", err)
		}
		o.Memory = int64(m)
	}
	o.Labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE: %w", l, errdefs.ErrInvalid)
		}
		o.Labels[k] = v
	}
	if o.Zone != "" {
		o.Labels["zone"] = o.Zone
	}
	// The labels travel in the gossip meta, which memberlist caps at
	// MaxMetaSize bytes: refuse them here rather than after joining.
	meta := membership.Meta{Role: membership.RoleWorker, RPCAddr: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", CPU: o.CPU, Memory: o.Memory, Zone: o.Zone, Labels: o.Labels}
	if err := meta.Validate(); err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("--label and --zone: %w", err), "use fewer or shorter labels")
	}
	if !filepath.IsAbs(o.RunDir) {
		abs, err := filepath.Abs(o.RunDir)
		if err != nil {
			return nil, err
		}
		o.RunDir = abs
	}
	return o, nil
}

// RunWorker is the `gantry worker` subcommand.
func RunWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := ParseWorkerFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.Node.LogLevel}))
	ready := func() { fmt.Fprintf(stdout, "gantry worker %s is ready\n", o.Node.Name) }
	for {
		err := Worker(ctx, o, log, ready)
		if !errors.Is(err, errServersChanged) || ctx.Err() != nil {
			return err
		}
		// Containers keep running across this and are re-adopted.
		log.Info("starting the worker again with the servers gossip found")
		ready = nil
	}
}

// errServersChanged ends Worker so that it starts again with the servers
// it learnt through gossip: its RPC client keeps the list it started with.
var errServersChanged = errors.New("no server of this worker's list answers, and gossip knows others")

// offlineRestartAfter is how long a worker stays cut off from the servers
// it knows before it starts again with others that gossip showed.
const offlineRestartAfter = 5 * time.Second

// serverListWatch returns errServersChanged when no known server has
// answered for offlineRestartAfter and peers.json holds servers the client
// does not know (they joined after this worker started).
func serverListWatch(ctx context.Context, rs *rpc.RemoteStore, have []string, dataDir string, log *slog.Logger) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var offline time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if rs.Online() {
			offline = time.Time{}
			continue
		}
		if offline.IsZero() {
			offline = time.Now()
		}
		if time.Since(offline) < offlineRestartAfter {
			continue
		}
		var fresh []string
		for _, a := range readPeers(dataDir).Servers {
			if !slices.Contains(have, a) {
				fresh = append(fresh, a)
			}
		}
		if len(fresh) > 0 {
			log.Warn("no known server answers; gossip showed others", "known", have, "new", fresh, "offline", time.Since(offline).Round(time.Second))
			return errServersChanged
		}
	}
}

// assignmentFile caches, in the data dir, the last assignment a server sent.
const assignmentFile = "assignment.json"

// Worker runs a worker node until ctx is done. ready is called once it runs.
func Worker(ctx context.Context, o *WorkerOptions, log *slog.Logger, ready func()) error {
	if os.Geteuid() != 0 {
		return errdefs.WithHint(fmt.Errorf("gantry worker must run as root (it creates containers, mounts and network namespaces): %w", errdefs.ErrPermission),
			"run it with sudo")
	}
	dataDir := o.Node.DataDir
	for _, d := range []string{dataDir, o.RunDir, "/run/gantry-bridges"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	for _, l := range []struct{ dir, name, hint string }{
		{dataDir, "gantry.lock", "use another --data-dir"},
		{o.RunDir, "gantry.lock", "give each gantry its own --run-dir, --bridge and --subnet"},
		{"/run/gantry-bridges", o.Bridge + ".lock", "give each gantry its own --bridge and --subnet"},
	} {
		unlock, err := lockDir(l.dir, l.name, dataDir, l.hint)
		if err != nil {
			return err
		}
		defer unlock()
	}
	log = log.With("node", o.Node.Name)
	start := time.Now()
	gossipAddr := advertised(o.Node.GossipAddr, o.Node.Advertise)

	id, err := loadIdentity(dataDir, pki.RoleWorker, o.Node.Name)
	if errdefs.IsNotFound(err) {
		if _, err := joinCluster(ctx, &o.Node, pki.RoleWorker, "", "", gossipAddr, log); err != nil {
			return err
		}
		id, err = loadIdentity(dataDir, pki.RoleWorker, o.Node.Name)
	}
	if err != nil {
		return err
	}
	caPEM := id.cert.CAPEM
	peers := readPeers(dataDir)
	servers := mergeAddrs(peers.Servers, o.Node.Join...)
	if len(servers) == 0 {
		return errdefs.WithHint(fmt.Errorf("no server address known (%s is missing): %w", filepath.Join(dataDir, peersFile), errdefs.ErrInvalid),
			"pass --join SERVER")
	}
	client := rpc.NewClient(servers, id.reloader.ClientTLS(caPEM, pki.RoleServer), log.With("component", "rpc"))
	defer client.Close()

	rt, err := runtime.New(ctx, runtime.Options{Binary: o.OCIRuntime, Root: filepath.Join(o.RunDir, "runc"), Logger: log})
	if err != nil {
		return fmt.Errorf("--oci-runtime %s: %w", o.OCIRuntime, err)
	}
	imgs, err := image.Open(filepath.Join(dataDir, "images"), image.Options{Insecure: o.Insecure, Logger: log})
	if err != nil {
		return err
	}
	initPath, err := runtime.InstallInit(filepath.Join(dataDir, "bin"))
	if err != nil {
		return err
	}
	nw, err := network.New(ctx, network.Options{CacheDir: filepath.Join(dataDir, "cni"), NetNSDir: filepath.Join(o.RunDir, "netns"),
		Bridge: o.Bridge, Subnet: o.Subnet, Logger: log})
	if err != nil {
		return err
	}

	ml, err := membership.New(ctx, membership.Config{Name: o.Node.Name, Bind: o.Node.GossipAddr, Advertise: gossipAddr, Key: id.gossipKey,
		Meta:   membership.Meta{Role: membership.RoleWorker, RPCAddr: advertised(o.Node.RPCAddr, o.Node.Advertise), CPU: o.CPU, Memory: o.Memory, Zone: o.Zone, Labels: o.Labels},
		Logger: log.With("component", "gossip")})
	if err != nil {
		return fmt.Errorf("gossip on %s: %w", o.Node.GossipAddr, err)
	}
	// No Leave on the way out: a worker that stops keeps its containers,
	// and one restarted within the failure detection time (~2.5 s) is
	// never marked down. To move its instances away, drain it first.
	defer ml.Shutdown()

	rs, err := rpc.OpenRemoteStore(ctx, rpc.RemoteStoreConfig{Client: client, Node: o.Node.Name,
		CacheFile: filepath.Join(dataDir, assignmentFile), Logger: log.With("component", "remote-store")})
	if err != nil {
		return err
	}
	defer rs.Close()

	joined := start
	if fi, err := os.Stat(filepath.Join(tlsDir(dataDir), pki.CAFile)); err == nil {
		joined = fi.ModTime()
	}
	node := state.Node{ID: o.Node.Name, Name: o.Node.Name, Addr: o.Node.Advertise, Status: state.NodeReady,
		CPU: o.CPU, Memory: o.Memory, Labels: maps.Clone(o.Labels), Runtime: rt.Name(), JoinedAt: joined.UTC(), SeenAt: time.Now().UTC()}
	// Queued by the remote store while no server answers.
	if _, err := rs.Apply(ctx, state.PutNode{Node: node}); err != nil {
		log.Warn("register node", "err", err)
	}
	wk, err := worker.New(worker.Config{NodeID: o.Node.Name, Dir: filepath.Join(dataDir, "instances"), InitPath: initPath,
		Store: rs, Images: imgs, Runtime: rt, Network: nw, Logger: log, PortMin: o.PortRange[0], PortMax: o.PortRange[1],
		Secrets: newRemoteSecrets(func() []string { return mergeAddrs(servers, readPeers(dataDir).Servers...) },
			id.reloader.ClientTLS(caPEM, pki.RoleServer), log.With("component", "secrets"))})
	if err != nil {
		return err
	}
	logLn, err := net.Listen("tcp", o.Node.RPCAddr)
	if err != nil {
		return errdefs.WithHint(fmt.Errorf("listen on --rpc-addr %s: %w", o.Node.RPCAddr, err), "is another gantry running? pick another --rpc-addr")
	}
	logLn = tls.NewListener(logLn, id.reloader.ServerTLS(caPEM, pki.RoleServer))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return wk.Run(gctx) })
	nodeAPI := http.NewServeMux()
	nodeAPI.Handle(workerLogsPath, workerLogsHandler(wk.LogPath))
	nodeAPI.Handle(workerExecPath, workerExecHandler(wk.Exec))
	g.Go(func() error { return serveRPC(gctx, logLn, nodeAPI) })
	g.Go(func() error {
		return workerRenewLoop(gctx, dataDir, id, func() []string { return mergeAddrs(servers, readPeers(dataDir).Servers...) }, log)
	})
	g.Go(func() error { return peersLoop(gctx, dataDir, ml, log) })
	g.Go(func() error { return serverListWatch(gctx, rs, client.Servers(), dataDir, log) })
	g.Go(func() error {
		return gossipLoop(gctx, ml, func() []string { return serverGossip(readPeers(dataDir), ml, o.Node.Join) }, log)
	})
	log.Info("gantry worker started", "servers", servers, "gossip", ml.Addr(), "runtime", rt.Name(), "online", rs.Online(),
		"startup", time.Since(start).Round(time.Millisecond))
	if ready != nil {
		ready()
	}
	err = g.Wait()
	log.Info("gantry worker stopped; containers keep running and are re-adopted at the next start")
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// serverGossip is where a worker looks for gossip peers: the servers it was
// told about at join, those it has seen gossip, and the --join hosts on the
// default gossip port.
func serverGossip(p knownPeers, ml *membership.Membership, join []string) []string {
	out := p.GossipPeers
	for _, m := range ml.Members() {
		if m.Meta.Role == membership.RoleServer {
			out = mergeAddrs(out, m.Addr)
		}
	}
	for _, j := range join {
		if h, _, err := net.SplitHostPort(j); err == nil {
			out = mergeAddrs(out, withPort(h, DefaultGossipPort))
		}
	}
	return out
}
