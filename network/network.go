// Package network gives each instance its own network namespace attached to
// a host bridge through CNI: a persistent named namespace under
// /run/gantry/netns, an IP from host-local IPAM, outbound masquerading and
// published host ports (portmap), all driven through libcni with the
// standard plugins from Debian's containernetworking-plugins package.
//
// Everything needed to undo an attachment lives on disk (libcni's result
// cache and host-local's allocations under Options.CacheDir, the namespace
// file under Options.NetNSDir), so a restarted gantry can adopt attachments
// with Attachment and remove leftovers found by List with Teardown.
//
// Host changes made by New: net.ipv4.ip_forward=1, NetNSDir turned into a
// shared mount point (as iproute2 does for /run/netns), and one filter rule
// per bridge dropping packets from instances to 127.0.0.0/8: portmap sets
// route_localnet=1 on the bridge so that 127.0.0.1:<hostPort> works from the
// host, which would otherwise expose host services bound to loopback to
// instances. Only IPv4 is configured. Hosts whose FORWARD policy is DROP
// (Docker installs one) need an ACCEPT for the bridge; gantry adds none.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/gantry-dev/gantry/errdefs"
)

// Options configures a Manager. Empty fields take the defaults noted.
type Options struct {
	PluginDirs  []string // default DefaultPluginDirs
	CacheDir    string   // libcni cache and host-local allocations; must survive a restart (default DefaultCacheDir)
	NetNSDir    string   // default DefaultNetNSDir
	Bridge      string   // default DefaultBridge
	Subnet      string   // default DefaultSubnet
	NetworkName string   // default DefaultNetworkName
	Logger      *slog.Logger
}

// PortMapping publishes ContainerPort of an instance on HostPort of every
// host address (including 127.0.0.1).
type PortMapping struct {
	Name          string
	HostPort      int
	ContainerPort int
	Protocol      string // tcp (default) or udp
}

// Attachment describes an instance's network.
type Attachment struct {
	NetNS   string // path of the namespace file, for the OCI spec
	IP      string
	Gateway string
	Ports   []PortMapping
}

// Manager sets up and tears down attachments. It is safe for concurrent use;
// calls for the same id are serialised.
type Manager struct {
	opts Options
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	log  *slog.Logger

	mu       sync.Mutex
	idLocks  map[string]*idLock
	reserved map[string]string // "port/proto" -> id, for Setups in flight

	rulesMu  sync.Mutex // guards the two fields below (rules.go)
	rulesOn  bool       // the guard and masquerade rules are installed
	inflight int        // Setups between installing the rules and attaching
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// New checks the host (plugins, iptables), enables IP forwarding and
// prepares the namespace directory.
func New(ctx context.Context, opts Options) (*Manager, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := checkHost(opts.PluginDirs); err != nil {
		return nil, err
	}
	if err := checkBridgeName(opts.Bridge); err != nil {
		return nil, err
	}
	if err := checkSubnetFree(opts.Bridge, opts.Subnet); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := enableIPForward(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("network: create cache dir: %w", err)
	}
	if err := ensureNetNSDir(opts.NetNSDir); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	list, err := buildConfList(opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("network", opts.NetworkName)
	exec := &loggingExec{DefaultExec: &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: &logWriter{log: log}},
		PluginDecoder: version.PluginDecoder{},
	}, log: log}
	m := &Manager{
		opts:     opts,
		cni:      libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, opts.CacheDir, exec),
		list:     list,
		log:      log,
		idLocks:  map[string]*idLock{},
		reserved: map[string]string{},
	}
	// The guard and masquerade rules exist while instances are attached
	// (rules.go): those that survived a restart keep them.
	if err := m.syncRulesAtStart(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Setup attaches instance id to the network: it creates the namespace
// NetNSDir/<id>, runs CNI ADD (bridge, portmap, loopback) and returns the
// attachment. If id already has a complete attachment with the same ports,
// that one is returned; with different ports the error is ErrConflict. On
// failure everything done so far is undone.
func (m *Manager) Setup(ctx context.Context, id string, ports []PortMapping) (*Attachment, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	ports, err := normalizePorts(ports)
	if err != nil {
		return nil, err
	}
	unlock := m.lockID(id)
	defer unlock()

	log := m.log.With("instance", id)
	existing, complete, err := m.load(id)
	if err != nil {
		log.Warn("unreadable cached attachment; replacing it", "err", err)
		existing, complete = nil, false
	}
	if complete {
		if !samePorts(existing.Ports, ports) {
			return nil, errdefs.WithHint(
				fmt.Errorf("network: instance %q is already attached with other published ports: %w", id, errdefs.ErrConflict),
				"tear the attachment down before setting it up with new ports")
		}
		return existing, nil
	}
	if existing != nil || fileExists(m.nsPath(id)) || m.cacheExists(id) || m.hasIPAllocation(id) {
		log.Info("removing incomplete network attachment before setup")
		if err := m.teardownLocked(ctx, id); err != nil {
			return nil, err
		}
	}

	release, err := m.reservePorts(id, ports)
	if err != nil {
		return nil, err
	}
	defer release()
	done, err := m.beginSetup(ctx)
	if err != nil {
		return nil, err
	}
	attached := false
	defer func() { done(attached) }()

	start := time.Now()
	path := m.nsPath(id)
	if err := createNetNS(path); err != nil {
		return nil, fmt.Errorf("network: instance %q: %w", id, err)
	}
	rt := m.runtimeConf(id)
	rt.CapabilityArgs = capabilityArgs(ports)
	res, err := m.add(ctx, rt)
	if err != nil {
		// Undo with a context of our own: a cancelled ctx must not leave
		// half an attachment behind.
		undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if uerr := m.teardownLocked(undoCtx, id); uerr != nil {
			log.Error("undo failed network setup", "err", uerr)
		}
		if strings.Contains(err.Error(), "no IP addresses available") {
			return nil, errdefs.WithHint(fmt.Errorf("network: set up instance %q: the container subnet %s is full: %v: %w", id, m.opts.Subnet, err, errdefs.ErrUnavailable),
				"run fewer instances, or restart gantry dev with a larger --subnet (a /24 holds 253 instances, a /16 65533)")
		}
		return nil, errdefs.WithHint(fmt.Errorf("network: set up instance %q: %w", id, err),
			"check that the CNI plugins and iptables work (run gantry as root)")
	}
	att, err := attachmentFromResult(path, res, ports)
	if err != nil {
		undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = m.teardownLocked(undoCtx, id)
		return nil, fmt.Errorf("network: instance %q: %w", id, err)
	}
	log.Debug("network attached", "ip", att.IP, "ports", len(ports), "took", time.Since(start))
	attached = true
	return att, nil
}

// add runs CNI ADD, retrying when a plugin lost a race with another
// iptables user (other gantry processes included).
func (m *Manager) add(ctx context.Context, rt *libcni.RuntimeConf) (*types100.Result, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			if err := m.cni.DelNetworkList(ctx, m.list, rt); err != nil {
				return nil, fmt.Errorf("%w (and cleaning up for a retry failed: %v)", lastErr, err)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt*100) * time.Millisecond):
			}
		}
		r, err := m.cni.AddNetworkList(ctx, m.list, rt)
		if err == nil {
			res, err := types100.NewResultFromResult(r)
			if err != nil {
				return nil, fmt.Errorf("convert CNI result: %w", err)
			}
			return res, nil
		}
		lastErr = err
		if ctx.Err() != nil || !isTransientIPTablesError(err.Error()) {
			break
		}
		m.log.Warn("CNI ADD lost a race with another iptables user; retrying", "instance", rt.ContainerID, "err", err)
	}
	return nil, lastErr
}

// Teardown removes the attachment of id: CNI DEL with the configuration
// cached at ADD time (so it works after a restart and after the namespace
// vanished), removal of any iptables rule left for the id, then the
// namespace. Tearing down something already gone is not an error.
func (m *Manager) Teardown(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	unlock := m.lockID(id)
	defer unlock()
	return m.teardownLocked(ctx, id)
}

func (m *Manager) teardownLocked(ctx context.Context, id string) error {
	start := time.Now()
	log := m.log.With("instance", id)
	path := m.nsPath(id)
	if fileExists(path) && !isNetNS(path) {
		// A file left by a crash between creating and mounting it: the
		// plugins would reject it as "not a network namespace".
		if err := removeNetNS(path); err != nil {
			return fmt.Errorf("network: instance %q: %w", id, err)
		}
	}

	list, rt, cached, err := m.cachedConf(id)
	if err != nil {
		return err
	}
	if cached || fileExists(path) || m.hasIPAllocation(id) {
		var derr error
		for attempt := 0; attempt < 3; attempt++ {
			if derr = m.cni.DelNetworkList(ctx, list, rt); derr == nil || ctx.Err() != nil || !isTransientIPTablesError(derr.Error()) {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			}
		}
		if derr != nil {
			return errdefs.WithHint(fmt.Errorf("network: tear down instance %q: %w", id, derr),
				"retry the teardown; the attachment is kept until it succeeds")
		}
	}
	delTook := time.Since(start)
	n, err := sweepIPTables(ctx, list.Name, id)
	if err != nil {
		return fmt.Errorf("network: tear down instance %q: remove leftover iptables rules: %w", id, err)
	}
	if n > 0 {
		log.Info("removed iptables rules that CNI DEL left behind", "count", n)
	}
	if err := removeNetNS(path); err != nil {
		return fmt.Errorf("network: instance %q: %w", id, err)
	}
	m.releaseRulesIfIdle(ctx)
	log.Debug("network detached", "took", time.Since(start), "cni_del", delTook)
	return nil
}

// Attachment returns the existing attachment of id, as recorded by an
// earlier Setup (of this or an earlier process). The error is ErrNotFound
// when id has no complete attachment.
func (m *Manager) Attachment(ctx context.Context, id string) (*Attachment, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	att, complete, err := m.load(id)
	if err != nil {
		return nil, err
	}
	if !complete {
		msg := "no network attachment"
		if att != nil {
			msg = "network namespace " + att.NetNS + " is gone"
		}
		return nil, errdefs.WithHint(fmt.Errorf("network: instance %q: %s: %w", id, msg, errdefs.ErrNotFound),
			"set the network up again (after Teardown if List still reports the id)")
	}
	return att, nil
}

// List returns the ids that have a namespace file, a cached attachment or
// an IP allocation, so that leftovers can be found and torn down.
func (m *Manager) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	names, err := listNetNS(m.opts.NetNSDir)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	for _, n := range names {
		if validateID(n) == nil {
			ids[n] = true
		}
	}
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("network: read CNI cache: %w", err)
	}
	for _, a := range atts {
		if a.Network == m.opts.NetworkName && a.IfName == ifName {
			ids[a.ContainerID] = true
		}
	}
	for _, id := range m.ipAllocations() {
		ids[id] = true
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// load reads the cached attachment of id. complete is true when the cache
// entry and the mounted namespace are both there.
func (m *Manager) load(id string) (att *Attachment, complete bool, err error) {
	rt := m.runtimeConf(id)
	conf, cachedRT, err := m.cni.GetNetworkListCachedConfig(m.list, rt)
	if err != nil {
		return nil, false, fmt.Errorf("network: instance %q: read CNI cache: %w", id, err)
	}
	if conf == nil {
		return nil, false, nil
	}
	r, err := m.cni.GetNetworkListCachedResult(m.list, rt)
	if err != nil || r == nil {
		return nil, false, fmt.Errorf("network: instance %q: read cached CNI result: %w", id, errors.Join(err, errors.New("no result")))
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, false, fmt.Errorf("network: instance %q: cached CNI result: %w", id, err)
	}
	att, err = attachmentFromResult(rt.NetNS, res, portsFromCapabilityArgs(cachedRT.CapabilityArgs))
	if err != nil {
		return nil, false, fmt.Errorf("network: instance %q: %w", id, err)
	}
	return att, isNetNS(rt.NetNS), nil
}

// cachedConf returns the configuration and runtime arguments to DEL id
// with: the cached ones when there are, else the current ones.
func (m *Manager) cachedConf(id string) (*libcni.NetworkConfigList, *libcni.RuntimeConf, bool, error) {
	rt := m.runtimeConf(id)
	conf, cachedRT, err := m.cni.GetNetworkListCachedConfig(m.list, rt)
	if err != nil || conf == nil {
		if err != nil {
			m.log.Warn("unreadable CNI cache entry; deleting with the current configuration", "instance", id, "err", err)
		}
		return m.list, rt, false, nil
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		m.log.Warn("unparsable cached CNI configuration; deleting with the current one", "instance", id, "err", err)
		return m.list, cachedRT, true, nil
	}
	return list, cachedRT, true, nil
}

func (m *Manager) cacheExists(id string) bool {
	return fileExists(filepath.Join(m.opts.CacheDir, "results", fmt.Sprintf("%s-%s-%s", m.opts.NetworkName, id, ifName)))
}

func (m *Manager) runtimeConf(id string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: m.nsPath(id), IfName: ifName}
}

func (m *Manager) nsPath(id string) string { return filepath.Join(m.opts.NetNSDir, id) }

// ipamDir is where host-local keeps this network's allocations: one file
// per IP holding "<id>\n<ifname>".
func (m *Manager) ipamDir() string {
	return filepath.Join(m.opts.CacheDir, "networks", m.opts.NetworkName)
}

func (m *Manager) ipAllocations() []string {
	entries, err := os.ReadDir(m.ipamDir())
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() || e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.ipamDir(), e.Name()))
		if err != nil {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		id = strings.TrimSpace(id)
		if validateID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func (m *Manager) hasIPAllocation(id string) bool {
	return slices.Contains(m.ipAllocations(), id)
}

// reservePorts claims host ports for a Setup in flight, failing with
// ErrConflict when another instance holds one (in flight or cached).
func (m *Manager) reservePorts(id string, ports []PortMapping) (func(), error) {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("network: read CNI cache: %w", err)
	}
	taken := map[string]string{}
	for _, a := range atts {
		if a.Network != m.opts.NetworkName || a.ContainerID == id {
			continue
		}
		for _, p := range portsFromCapabilityArgs(a.CapabilityArgs) {
			taken[portKey(p.HostPort, p.Protocol)] = a.ContainerID
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ports {
		k := portKey(p.HostPort, p.Protocol)
		owner, ok := taken[k]
		if o, inFlight := m.reserved[k]; inFlight && o != id {
			owner, ok = o, true
		}
		if ok {
			return nil, errdefs.WithHint(
				fmt.Errorf("network: instance %q: host port %s is already published by instance %q: %w", id, k, owner, errdefs.ErrConflict),
				"choose another host port")
		}
	}
	for _, p := range ports {
		m.reserved[portKey(p.HostPort, p.Protocol)] = id
	}
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, p := range ports {
			if k := portKey(p.HostPort, p.Protocol); m.reserved[k] == id {
				delete(m.reserved, k)
			}
		}
	}, nil
}

func (m *Manager) lockID(id string) func() {
	m.mu.Lock()
	l := m.idLocks[id]
	if l == nil {
		l = &idLock{}
		m.idLocks[id] = l
	}
	l.refs++
	m.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.idLocks, id)
		}
		m.mu.Unlock()
	}
}

func attachmentFromResult(nsPath string, res *types100.Result, ports []PortMapping) (*Attachment, error) {
	for _, ipc := range res.IPs {
		if ip4 := ipc.Address.IP.To4(); ip4 != nil {
			att := &Attachment{NetNS: nsPath, IP: ip4.String(), Ports: ports}
			if ipc.Gateway != nil {
				att.Gateway = ipc.Gateway.String()
			}
			return att, nil
		}
	}
	return nil, fmt.Errorf("CNI result has no IPv4 address")
}

func samePorts(a, b []PortMapping) bool {
	key := func(p PortMapping) string {
		return fmt.Sprintf("%d/%s->%d", p.HostPort, p.Protocol, p.ContainerPort)
	}
	ka := make([]string, 0, len(a))
	for _, p := range a {
		ka = append(ka, key(p))
	}
	kb := make([]string, 0, len(b))
	for _, p := range b {
		kb = append(kb, key(p))
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// loggingExec runs plugins like libcni's default and logs each call with
// its duration at debug level.
type loggingExec struct {
	*invoke.DefaultExec
	log *slog.Logger
}

func (e *loggingExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	start := time.Now()
	out, err := e.DefaultExec.ExecPlugin(ctx, pluginPath, stdin, environ)
	var cmd, id string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			cmd = v
		} else if v, ok := strings.CutPrefix(kv, "CNI_CONTAINERID="); ok {
			id = v
		}
	}
	e.log.Debug("CNI plugin", "plugin", filepath.Base(pluginPath), "command", cmd, "instance", id, "took", time.Since(start), "err", err)
	return out, err
}

// logWriter sends plugin stderr to the logger at debug level.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	if s := strings.TrimSpace(string(p)); s != "" {
		w.log.Debug("CNI plugin stderr", "output", s)
	}
	return len(p), nil
}
