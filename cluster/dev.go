// Package cluster wires Gantry's parts into running processes: `gantry dev`
// (a whole single-node cluster in one process) and the Backend that serves
// the MCP tools from the state store, image store and worker.
package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/state"
	"github.com/gantry-dev/gantry/worker"
)

// DefaultDataDir is where gantry dev keeps everything unless told otherwise.
const DefaultDataDir = "/var/lib/gantry"

// DefaultListen is gantry dev's default MCP address, the CLI's default
// endpoint.
const DefaultListen = "127.0.0.1:7433"

// DevOptions configure `gantry dev`.
type DevOptions struct {
	DataDir    string
	Listen     string
	OCIRuntime string
	Insecure   []string
	NodeName   string
	LogLevel   slog.Level
	Subnet     string
	Bridge     string
	PortRange  [2]int
	RunDir     string // runtime state: runc root and network namespaces
	// TLSCert and TLSKey make the MCP endpoint HTTPS (dev_tls.go).
	TLSCert, TLSKey string
	// Policy is --policy, --mode and --confirm-destructive (dev_policy.go).
	Policy DevPolicy
	// OAuth resource-server mode (dev_oauth.go).
	OAuthIssuer, OAuthAudience, OAuthScopeClaim, OAuthResource string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// ParseDevFlags parses the flags of `gantry dev`.
func ParseDevFlags(args []string, stderr io.Writer) (*DevOptions, error) {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &DevOptions{}
	var insecure stringList
	var level, ports string
	host, _ := os.Hostname()
	fs.StringVar(&o.DataDir, "data-dir", DefaultDataDir, "directory for all state: Raft log, images, instances, admin token")
	fs.StringVar(&o.Listen, "listen", DefaultListen, "address of the MCP endpoint (served at /mcp); a non-loopback address needs --tls-cert and --tls-key")
	fs.StringVar(&o.OCIRuntime, "oci-runtime", "runc", "runc-compatible OCI runtime binary: a name on PATH or a path (runc, crun, youki)")
	fs.Var(&insecure, "insecure-registry", "registry host[:port] that may be reached over plain http (repeatable; loopback registries always may)")
	fs.StringVar(&o.NodeName, "node-name", host, "this node's name")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.Subnet, "subnet", "10.88.0.0/16", "container network subnet")
	fs.StringVar(&o.Bridge, "bridge", "gantry0", "container network bridge name")
	fs.StringVar(&o.RunDir, "run-dir", "/run/gantry", "directory for runtime state that ends with a reboot: the OCI runtime's root and network namespaces")
	fs.StringVar(&ports, "port-range", "20000-32767", "host ports for dynamically published ports, LO-HI")
	registerTLSFlags(fs, o)
	registerOAuthFlags(fs, o)
	registerPolicyFlags(fs, o)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gantry dev [flags]\n\nRuns a single-node Gantry cluster in this process and serves its MCP endpoint.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseOnlyFlags(fs, args); err != nil {
		return nil, err // flag.ErrHelp: the usage is printed and the command exits 0
	}
	o.Insecure = insecure
	if err := o.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", level, errdefs.ErrInvalid)
	}
	lo, hi, ok := strings.Cut(ports, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a < 1024 || b > 65535 || a >= b {
		return nil, fmt.Errorf("--port-range %q: want LO-HI with 1024 <= LO < HI <= 65535: %w", ports, errdefs.ErrInvalid)
	}
	o.PortRange = [2]int{a, b}
	// Both directories are used by children too (runc --root, the CNI
	// plugins), whose working directory is not ours: make them absolute.
	for _, d := range []*string{&o.DataDir, &o.RunDir} {
		if !filepath.IsAbs(*d) {
			abs, err := filepath.Abs(*d)
			if err != nil {
				return nil, err
			}
			*d = abs
		}
	}
	if err := checkBridge(o.Bridge); err != nil {
		return nil, err
	}
	if err := checkListen(o); err != nil {
		return nil, err
	}
	if err := checkOAuthFlags(o); err != nil {
		return nil, err
	}
	if o.NodeName == "" {
		o.NodeName = "dev"
	}
	return o, nil
}

// RunDev is the `gantry dev` subcommand.
func RunDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := ParseDevFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	return Dev(ctx, o, log, func(endpoint, tokenFile string) {
		fmt.Fprint(stdout, readyMessage(endpoint, tokenFile))
	})
}

// readyMessage is what gantry dev prints once it serves. Away from the
// CLI's defaults (another --listen or --data-dir), the command it suggests
// carries the endpoint and token file, since a bare `gantry ps` would reach
// the default endpoint or send the wrong token.
func readyMessage(endpoint, tokenFile string) string {
	try := "gantry ps"
	if endpoint != "http://"+DefaultListen+"/mcp" || tokenFile != filepath.Join(DefaultDataDir, "admin.token") {
		try = fmt.Sprintf("gantry --addr %s --token-file %s ps   (or set GANTRY_ADDR and GANTRY_TOKEN)", endpoint, tokenFile)
	}
	return fmt.Sprintf("gantry dev is ready\n  MCP endpoint: %s\n  admin token:  %s\n  try:          %s\n", endpoint, tokenFile, try)
}

// Dev runs a single-node cluster until ctx is done. ready is called once
// the MCP endpoint accepts calls.
func Dev(ctx context.Context, o *DevOptions, log *slog.Logger, ready func(endpoint, tokenFile string)) error {
	if os.Geteuid() != 0 {
		return errdefs.WithHint(fmt.Errorf("gantry dev must run as root (it creates containers, mounts and network namespaces): %w", errdefs.ErrPermission),
			"run it with sudo")
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", o.DataDir, err)
	}
	unlock, err := lockDir(o.DataDir, "gantry.lock", o.DataDir, "use another --data-dir")
	if err != nil {
		return err
	}
	defer unlock()
	// Two gantries sharing a runtime root or a bridge would remove each
	// other's containers and hand out the same addresses: refuse.
	if err := os.MkdirAll(o.RunDir, 0o700); err != nil {
		return fmt.Errorf("--run-dir %s: %w", o.RunDir, err)
	}
	unlockRun, err := lockDir(o.RunDir, "gantry.lock", o.DataDir, "give each gantry its own --run-dir, --bridge and --subnet")
	if err != nil {
		return err
	}
	defer unlockRun()
	if err := os.MkdirAll("/run/gantry-bridges", 0o700); err != nil {
		return err
	}
	unlockBridge, err := lockDir("/run/gantry-bridges", o.Bridge+".lock", o.DataDir, "give each gantry its own --bridge and --subnet")
	if err != nil {
		return err
	}
	defer unlockBridge()
	tokenFile := filepath.Join(o.DataDir, "admin.token")
	token, err := ensureToken(tokenFile)
	if err != nil {
		return err
	}
	secretKey, err := state.LoadSecretKey(o.DataDir)
	if err != nil {
		return err
	}

	start := time.Now()
	// The runtime first: a runtime that cannot run here is the likeliest
	// start-up failure, and it should not wait behind Raft.
	rt, err := runtime.New(ctx, runtime.Options{Binary: o.OCIRuntime, Root: filepath.Join(o.RunDir, "runc"), Logger: log})
	if err != nil {
		return fmt.Errorf("--oci-runtime %s: %w", o.OCIRuntime, err)
	}
	st, err := state.Open(ctx, state.Config{DataDir: o.DataDir, NodeID: o.NodeName, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	imgs, err := image.Open(filepath.Join(o.DataDir, "images"), image.Options{Insecure: o.Insecure, Logger: log})
	if err != nil {
		return err
	}
	initPath, err := runtime.InstallInit(filepath.Join(o.DataDir, "bin"))
	if err != nil {
		return err
	}
	nw, err := network.New(ctx, network.Options{CacheDir: filepath.Join(o.DataDir, "cni"), NetNSDir: filepath.Join(o.RunDir, "netns"), Bridge: o.Bridge, Subnet: o.Subnet, Logger: log})
	if err != nil {
		return err
	}
	node := &state.Node{ID: o.NodeName, Name: o.NodeName, Addr: "127.0.0.1", Status: "ready",
		CPU: int64(goruntime.NumCPU()) * 1000, Memory: memTotal(), Runtime: rt.Name(),
		JoinedAt: time.Now().UTC(), SeenAt: time.Now().UTC()}
	if old, err := st.Node(o.NodeName); err == nil {
		node.JoinedAt = old.JoinedAt
	}
	if _, err := st.Apply(ctx, state.PutNode{Node: *node}); err != nil {
		return err
	}
	secrets := &Secrets{Store: st, Key: secretKey}
	if err := secrets.Check(); err != nil {
		log.Error("stored secrets cannot be opened; instances using them will not start", "err", err)
	}
	wk, err := worker.New(worker.Config{NodeID: o.NodeName, Dir: filepath.Join(o.DataDir, "instances"), InitPath: initPath,
		Store: st, Images: imgs, Runtime: rt, Network: nw, Logger: log, PortMin: o.PortRange[0], PortMax: o.PortRange[1], Secrets: secrets})
	if err != nil {
		return err
	}
	be := &Backend{Store: st, Images: imgs, LogPath: wk.LogPath, Secrets: secrets, InstanceEnv: wk.SecretEnv}
	audit := NewAuditWriter(st, log, 0)
	defer startAuditWriter(ctx, audit)() // stops after the MCP server, before the store closes
	auth := NewAuth(st, token, audit)
	authn, oauth, err := withOAuth(ctx, o, auth, log)
	if err != nil {
		return err
	}
	pol, err := o.Policy.compile()
	if err != nil {
		return err
	}
	if pol != nil {
		log.Info("policy in force", "file", o.Policy.File, "mode", string(pol.Mode()), "rules", pol.RuleCount(), "confirm_destructive", o.Policy.ConfirmDestructive)
	}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Ops: be, Token: token, Logger: log, Version: Version,
		Auth: authn, Audit: audit, Access: auth, Resources: be, Policy: pol, Oversight: be, ConfirmDestructive: o.Policy.ConfirmDestructive, Secrets: be,
		ApprovalKey: secretKey.Derive("mcp approval arguments"),
		Exec:        &InstanceExec{Store: st, Node: o.NodeName, Worker: wk, Scrub: be.SecretScrubber},
		Rollouts:    be, Operator: &Operator{Store: st, Self: o.NodeName}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return errdefs.WithHint(fmt.Errorf("listen on %s: %w", o.Listen, err), "is another gantry dev running? pick another address with --listen")
	}
	ln, scheme, err := listenerTLS(o, ln, log)
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	mux.Handle("/mcp/", srv.Handler())
	mountOAuth(mux, oauth)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return controller.New(st, log).Run(gctx) })
	g.Go(func() error { return wk.Run(gctx) })
	g.Go(func() error { return mcp.Serve(gctx, ln, mux) })
	g.Go(func() error { return srv.WatchResources(gctx) })
	endpoint := scheme + "://" + ln.Addr().String() + "/mcp"
	log.Info("gantry dev started", "endpoint", endpoint, "data_dir", o.DataDir, "runtime", rt.Name(), "startup", time.Since(start).Round(time.Millisecond))
	if ready != nil {
		ready(endpoint, tokenFile)
	}
	err = g.Wait()
	log.Info("gantry dev stopped; containers keep running and are re-adopted at the next start")
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Version is set at build time.
var Version = "dev"

// ensureToken reads the admin token, creating it (0600) on first start.
func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); len(t) >= 32 {
			return t, nil
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(b[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return t, os.Rename(tmp, path)
}

// lockDir takes an exclusive lock on dir/name for the life of the process.
// The lock file records the holder's data dir so a refusal can name it.
func lockDir(dir, name, owner, hint string) (func(), error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, errdefs.WithHint(fmt.Errorf("%s is in use by another gantry dev (data dir %s): %w",
			path, strings.TrimSpace(string(holder)), errdefs.ErrConflict), hint)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(owner+"\n"), 0)
	return func() { f.Close() }, nil
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}

// parseOnlyFlags parses the flags of `gantry NAME`, which takes no
// arguments. flag.ErrHelp is returned as is (the usage is printed; the
// command exits 0); other errors say to see NAME -h.
func parseOnlyFlags(fs *flag.FlagSet, args []string) error {
	name := fs.Name()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errdefs.WithHint(fmt.Errorf("%v: %w", err, errdefs.ErrInvalid), "see gantry "+name+" -h")
	}
	if fs.NArg() > 0 {
		return errdefs.WithHint(fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errdefs.ErrInvalid), "gantry "+name+" takes only flags")
	}
	return nil
}
