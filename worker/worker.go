// Package worker is Gantry's node agent. It watches the instances the
// scheduler placed on its node and makes them real: image, overlay root,
// network namespace, OCI bundle, runc container. It supervises each one
// (restarts with exponential backoff, health checks, log rotation) and
// reports what it observes back through the state store. There is no
// per-container shim: after a restart the worker re-adopts running
// containers and removes anything no instance owns.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/state"
)

// Store is what the worker needs from the state store. Instances must
// return the last state known, never an empty or partial list because the
// servers cannot be reached: sync stops every supervisor whose instance is
// missing from it (that is how a returning node removes the instances the
// controller replaced and deleted meanwhile). A worker that only acts on
// what it sees keeps its containers running while it is cut off.
type Store interface {
	Instances(f state.InstanceFilter) ([]*state.Instance, uint64)
	Service(name string) (*state.Service, error)
	Notify() <-chan struct{}
	Apply(ctx context.Context, ops ...state.Op) (uint64, error)
}

// Images pulls images and gives instances their root filesystems.
type Images interface {
	Pull(ctx context.Context, ref string, progress func(image.Progress)) (*image.Image, error)
	Resolve(ctx context.Context, ref string) (*image.Image, error)
	Mount(ctx context.Context, img *image.Image, dir string) (string, error)
	Unmount(ctx context.Context, dir string) error
}

// Runtime runs containers (runc or a compatible binary).
type Runtime interface {
	Start(ctx context.Context, id, bundleDir string, s *specs.Spec, logPath string) (int, error)
	Wait(ctx context.Context, id string, pid int) (runtime.Exit, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]runtime.Container, error)
	Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (int, []byte, error)
}

// Network attaches instances to the node's container network.
type Network interface {
	Setup(ctx context.Context, id string, ports []network.PortMapping) (*network.Attachment, error)
	Teardown(ctx context.Context, id string) error
	Attachment(ctx context.Context, id string) (*network.Attachment, error)
	List(ctx context.Context) ([]string, error)
}

// Config wires a worker.
type Config struct {
	NodeID   string
	Dir      string // instance directories live here (<data-dir>/instances)
	InitPath string // host path of gantry-init ("" disables the init)
	Store    Store
	Images   Images
	Runtime  Runtime
	Network  Network
	// Secrets opens the secrets specs reference (spec.Service.Secrets); nil
	// fails the instances of such specs.
	Secrets SecretResolver
	Logger  *slog.Logger

	PortMin, PortMax int   // dynamic host port range; default 20000-32767
	LogMaxBytes      int64 // rotate an instance's log past this size; default 10 MiB
	LogKeep          int   // rotated files kept; default 3
	BackoffBase      time.Duration
	BackoffMax       time.Duration
}

// Worker supervises the instances of one node.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	sups  map[string]*supervisor
	ports map[string]string // "tcp/8080" -> instance ID
	wg    sync.WaitGroup
}

// New checks cfg and returns a worker.
func New(cfg Config) (*Worker, error) {
	if cfg.NodeID == "" || cfg.Dir == "" || cfg.Store == nil || cfg.Images == nil || cfg.Runtime == nil || cfg.Network == nil {
		return nil, fmt.Errorf("worker: node ID, dir, store, images, runtime and network are required: %w", errdefs.ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = 20000, 32767
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = 10 << 20
	}
	if cfg.LogKeep == 0 {
		cfg.LogKeep = 3
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Worker{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "worker", "node", cfg.NodeID),
		sups:  map[string]*supervisor{},
		ports: map[string]string{},
	}, nil
}

// Run recovers what survived a restart, then supervises instances until
// ctx is done. Cancelling ctx detaches: containers keep running and are
// re-adopted by the next Run.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.recover(ctx); err != nil {
		return err
	}
	defer w.wg.Wait()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		ch := w.cfg.Store.Notify()
		w.sync(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-tick.C:
		}
	}
}

// sync starts a supervisor for each new instance of this node and passes
// desired-state changes to the running ones.
func (w *Worker) sync(ctx context.Context) {
	insts, _ := w.cfg.Store.Instances(state.InstanceFilter{Node: w.cfg.NodeID})
	seen := make(map[string]bool, len(insts))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, in := range insts {
		seen[in.ID] = true
		if s := w.sups[in.ID]; s != nil {
			s.setDesired(in.Desired)
			continue
		}
		if in.State == state.StateStopped {
			continue
		}
		w.startLocked(ctx, in, nil)
	}
	for id, s := range w.sups {
		if !seen[id] {
			s.setDesired(state.DesiredStop) // record deleted: clean up
		}
	}
}

func (w *Worker) startLocked(ctx context.Context, in *state.Instance, adopt *runtime.Container) {
	s := newSupervisor(w, in)
	w.sups[in.ID] = s
	for _, p := range in.Ports {
		w.ports[portKey("tcp", p)] = in.ID
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		s.run(ctx, in, adopt)
		w.mu.Lock()
		if w.sups[in.ID] == s {
			delete(w.sups, in.ID)
		}
		w.mu.Unlock()
	}()
}

// recover re-adopts the containers of this node's instances and removes
// containers, network namespaces and directories that no instance owns.
func (w *Worker) recover(ctx context.Context) error {
	ctrs, err := w.cfg.Runtime.List(ctx)
	if err != nil {
		return fmt.Errorf("worker: list containers: %w", err)
	}
	insts, _ := w.cfg.Store.Instances(state.InstanceFilter{Node: w.cfg.NodeID})
	owned := map[string]*state.Instance{}
	for _, in := range insts {
		if in.State != state.StateStopped {
			owned[in.ID] = in
		}
	}
	w.mu.Lock()
	adopted := 0
	for i := range ctrs {
		c := ctrs[i]
		in := owned[c.ID]
		if in == nil || !strings.HasPrefix(c.Bundle, w.cfg.Dir+string(filepath.Separator)) {
			continue
		}
		w.log.Info("re-adopting container", "instance", c.ID, "pid", c.PID, "status", c.Status)
		w.startLocked(ctx, in, &c)
		adopted++
	}
	w.mu.Unlock()

	// Orphans: containers first, then network, then directories. Only a
	// container whose bundle lies in this worker's directory is ours to
	// remove: another gantry sharing the runtime root must not lose its own.
	for _, c := range ctrs {
		if owned[c.ID] != nil || !strings.HasPrefix(c.Bundle, w.cfg.Dir+string(filepath.Separator)) {
			continue
		}
		w.log.Warn("removing orphaned container", "container", c.ID)
		_ = w.cfg.Runtime.Kill(ctx, c.ID, syscall.SIGKILL, true)
		if err := w.cfg.Runtime.Delete(ctx, c.ID); err != nil {
			w.log.Warn("delete orphaned container", "container", c.ID, "err", err)
		}
	}
	if ids, err := w.cfg.Network.List(ctx); err == nil {
		for _, id := range ids {
			if owned[id] == nil {
				w.log.Warn("removing orphaned network attachment", "instance", id)
				if err := w.cfg.Network.Teardown(ctx, id); err != nil {
					w.log.Warn("teardown orphan", "instance", id, "err", err)
				}
			}
		}
	}
	if ents, err := os.ReadDir(w.cfg.Dir); err == nil {
		for _, e := range ents {
			if !e.IsDir() || owned[e.Name()] != nil {
				continue
			}
			dir := filepath.Join(w.cfg.Dir, e.Name())
			if err := w.cfg.Images.Unmount(ctx, dir); err != nil {
				w.log.Warn("unmount orphan", "dir", dir, "err", err)
				continue
			}
			_ = os.RemoveAll(dir)
		}
	}
	w.log.Info("recovered", "adopted", adopted, "containers", len(ctrs))
	return nil
}

// Running reports how many supervisors are active (for tests and metrics).
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sups)
}

func portKey(proto string, port int) string { return fmt.Sprintf("%s/%d", proto, port) }

// allocPorts gives an instance its host ports: the fixed ones from the
// spec, dynamic ones from the range, never one held by another instance
// nor, for a dynamic one, a fixed host_port of another instance placed on
// this node that has not published it yet (still pulling its image, say):
// taking it would make that instance crash-loop on the conflict.
func (w *Worker) allocPorts(id string, want []network.PortMapping, have map[string]int) ([]network.PortMapping, error) {
	reserved := w.reservedPorts(id)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]network.PortMapping, len(want))
	used := maps.Clone(reserved)
	if used == nil {
		used = map[int]bool{}
	}
	for k := range w.ports {
		var p int
		var proto string
		if _, err := fmt.Sscanf(k, "%3s/%d", &proto, &p); err == nil {
			used[p] = true
		}
	}
	for i, pm := range want {
		proto := pm.Protocol
		if proto == "" {
			proto = "tcp"
		}
		pm.Protocol = proto
		if hp, ok := have[pm.Name]; ok && hp > 0 {
			pm.HostPort = hp // keep across restarts and adoption
		}
		if pm.HostPort != 0 {
			if owner, ok := w.ports[portKey(proto, pm.HostPort)]; ok && owner != id {
				return nil, errdefs.WithHint(fmt.Errorf("host port %d/%s is already published by instance %s: %w",
					pm.HostPort, proto, owner, errdefs.ErrConflict),
					"leave host_port out to get a dynamic port, or run one replica per node")
			}
			// A port this instance did not publish before must not be one a
			// host program listens on (ours publish DNAT rules, no sockets).
			if have[pm.Name] != pm.HostPort {
				if err := network.CheckHostPort(pm.HostPort, proto); err != nil {
					return nil, err
				}
			}
		} else {
			p, err := network.AllocatePort(used, w.cfg.PortMin, w.cfg.PortMax, proto)
			if err != nil {
				return nil, err
			}
			pm.HostPort = p
		}
		used[pm.HostPort] = true
		w.ports[portKey(proto, pm.HostPort)] = id
		out[i] = pm
	}
	return out, nil
}

// reservedPorts are the fixed host ports of the services of the other
// instances the state places on this node (nil without a store).
func (w *Worker) reservedPorts(id string) map[int]bool {
	if w.cfg.Store == nil {
		return nil
	}
	insts, _ := w.cfg.Store.Instances(state.InstanceFilter{Node: w.cfg.NodeID})
	out := map[int]bool{}
	seen := map[string]bool{}
	for _, in := range insts {
		if in.ID == id || in.Desired != state.DesiredRun || seen[in.Service] {
			continue
		}
		seen[in.Service] = true
		svc, err := w.cfg.Store.Service(in.Service)
		if err != nil {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.HostPort != 0 {
				out[p.HostPort] = true
			}
		}
	}
	return out
}

func (w *Worker) releasePorts(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, owner := range w.ports {
		if owner == id {
			delete(w.ports, k)
		}
	}
}
