package cluster

// What `gantry server` and `gantry worker` share: the node flags (name,
// addresses, join), the node's TLS identity (created at bootstrap, fetched
// with a join token, reused on restart), the gossip key and the list of
// servers a node remembers between starts.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/rpc"
	"github.com/gantry-dev/gantry/state"
)

// Default ports of a cluster node (docs/cluster-design.md).
const (
	DefaultRPCPort    = 7434
	DefaultRaftPort   = 7435
	DefaultGossipPort = 7436
)

// peersFile keeps, in the data dir, the servers a node knows (RPC and
// gossip addresses), so that a restart finds the cluster without --join.
const peersFile = "peers.json"

// NodeOptions are the flags every cluster node has.
type NodeOptions struct {
	DataDir   string
	Name      string
	Advertise string // IP other nodes reach this one at
	// RPCAddr (servers only) and GossipAddr are bind addresses
	// (host:port); an unspecified host binds every address and
	// advertises Advertise.
	RPCAddr    string
	GossipAddr string
	// Join are servers' RPC addresses (host[:port]) to join through.
	Join  []string
	Token string
	// JoinTimeout bounds how long a first start keeps trying to reach a
	// server to join through.
	JoinTimeout time.Duration
	LogLevel    slog.Level
}

func registerNodeFlags(fs *flag.FlagSet, o *NodeOptions, level *string, join *stringList) {
	host, _ := os.Hostname()
	fs.StringVar(&o.DataDir, "data-dir", DefaultDataDir, "directory for all of this node's state: certificates, keys, images, and the Raft log (servers) or instances (workers)")
	fs.StringVar(&o.Name, "name", strings.ToLower(host), "this node's name, unique in the cluster (a DNS label)")
	fs.StringVar(&o.Advertise, "advertise", "", "IP address the other nodes reach this one at (default: the first non-loopback IPv4 address)")
	fs.StringVar(&o.GossipAddr, "gossip-addr", ":"+strconv.Itoa(DefaultGossipPort), "bind address of gossip membership (TCP and UDP)")
	fs.Var(join, "join", "RPC address (host[:port]) of a server to join through (repeatable); needed with --token on the first start")
	fs.StringVar(&o.Token, "token", "", "join token printed by the first server (or set GANTRY_JOIN_TOKEN); needed on the first start only")
	fs.DurationVar(&o.JoinTimeout, "join-timeout", 2*time.Minute, "how long the first start keeps trying to reach a server to join through")
	fs.StringVar(level, "log-level", "info", "log level: debug, info, warn, error")
}

// checkNodeFlags validates and completes the node flags after parsing.
func checkNodeFlags(o *NodeOptions, level string, join []string) error {
	if err := o.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", level, errdefs.ErrInvalid)
	}
	if err := pki.ValidName(o.Name); err != nil {
		return errdefs.WithHint(fmt.Errorf("--name %q: %w", o.Name, err), "pass --name with lowercase letters, digits and '-'")
	}
	if !filepath.IsAbs(o.DataDir) {
		abs, err := filepath.Abs(o.DataDir)
		if err != nil {
			return err
		}
		o.DataDir = abs
	}
	if o.Token == "" {
		o.Token = os.Getenv("GANTRY_JOIN_TOKEN")
	}
	if o.JoinTimeout <= 0 {
		return fmt.Errorf("--join-timeout %s: want a positive duration such as 2m: %w", o.JoinTimeout, errdefs.ErrInvalid)
	}
	for _, j := range join {
		a := withPort(j, DefaultRPCPort)
		if err := checkAddr("--join", a, true); err != nil {
			return err
		}
		o.Join = append(o.Join, a)
	}
	if o.Advertise == "" {
		ip, err := firstIPv4()
		if err != nil {
			return err
		}
		o.Advertise = ip
	}
	if ip := net.ParseIP(o.Advertise); ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("--advertise %q: want the IP address other nodes reach this one at: %w", o.Advertise, errdefs.ErrInvalid)
	}
	for _, a := range []struct{ flag, addr string }{{"--rpc-addr", o.RPCAddr}, {"--gossip-addr", o.GossipAddr}} {
		if a.addr == "" {
			continue // a worker serves no RPC
		}
		if err := checkAddr(a.flag, a.addr, false); err != nil {
			return err
		}
	}
	return nil
}

// checkAddr checks that addr is host:port (or :port when needHost is
// false) with a numeric port in 1-65535: net.SplitHostPort alone takes
// ":0", ":65536" and "http://x", which only fail later, after a bootstrap
// has already written the cluster's CA, or never (port 0 binds a random
// port nobody can be told about).
func checkAddr(flag, addr string, needHost bool) error {
	want := "host:port or :port"
	if needHost {
		want = "host[:port]"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want %s: %w", flag, addr, want, errdefs.ErrInvalid)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%s %q: the port must be a number in 1-65535: %w", flag, addr, errdefs.ErrInvalid)
	}
	if needHost && (host == "" || strings.ContainsAny(host, "/:@ ") && net.ParseIP(host) == nil) {
		return fmt.Errorf("%s %q: want %s with a host name or IP address: %w", flag, addr, want, errdefs.ErrInvalid)
	}
	if !needHost && host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%s %q: bind to an IP address of this machine or leave the host empty (:port): %w", flag, addr, errdefs.ErrInvalid)
	}
	return nil
}

// checkPortClash refuses two listeners of one node on the same TCP port
// (when their hosts can overlap), which otherwise fails late with "address
// already in use" after a bootstrap has written the cluster's CA.
func checkPortClash(addrs map[string]string) error {
	type hp struct{ flag, host, port string }
	var seen []hp
	for _, f := range slices.Sorted(maps.Keys(addrs)) {
		if addrs[f] == "" {
			continue
		}
		h, p, _ := net.SplitHostPort(addrs[f])
		for _, o := range seen {
			overlap := h == o.host || h == "" || o.host == "" || net.ParseIP(h).IsUnspecified() || net.ParseIP(o.host).IsUnspecified()
			if p == o.port && overlap {
				return fmt.Errorf("%s %q and %s %q use the same port: %w", o.flag, addrs[o.flag], f, addrs[f], errdefs.ErrInvalid)
			}
		}
		seen = append(seen, hp{f, h, p})
	}
	return nil
}

// withPort adds port to addr when it has none.
func withPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(port))
}

// advertised is the address others reach a listener bound at bind at.
func advertised(bind, ip string) string {
	h, p, _ := net.SplitHostPort(bind)
	if a := net.ParseIP(h); h != "" && a != nil && !a.IsUnspecified() {
		return bind
	}
	return net.JoinHostPort(ip, p)
}

// firstIPv4 is the first non-loopback IPv4 address of this machine.
func firstIPv4() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errdefs.WithHint(fmt.Errorf("no non-loopback IPv4 address to advertise: %w", errdefs.ErrInvalid), "pass --advertise IP")
}

// tlsDir is where a node keeps its certificates and keys.
func tlsDir(dataDir string) string { return filepath.Join(dataDir, "tls") }

// nodeIdentity is a node's TLS identity and cluster keys, as loaded from
// its data dir.
type nodeIdentity struct {
	cert      *pki.NodeCert
	reloader  *pki.Reloader
	gossipKey []byte
}

// loadIdentity reads the node's certificate and gossip key; a node that has
// not joined yet gets errdefs.ErrNotFound.
func loadIdentity(dataDir string, role pki.Role, name string) (*nodeIdentity, error) {
	dir := tlsDir(dataDir)
	nc, err := pki.LoadNodeFiles(dir)
	if err != nil {
		return nil, err
	}
	if nc.Role != role || nc.Name != name {
		return nil, errdefs.WithHint(fmt.Errorf("the certificate in %s is for %s %q, not %s %q: %w", dir, nc.Role, nc.Name, role, name, errdefs.ErrInvalid),
			"give each node its own --data-dir, and keep --name the same across restarts")
	}
	if role != pki.RoleServer { // a server renews its own (renewServerCert)
		if err := pki.CheckValidity(nc.Cert, time.Now()); err != nil {
			return nil, err
		}
	}
	tc, err := nc.TLSCertificate()
	if err != nil {
		return nil, err
	}
	key, err := readGossipKey(dir)
	if err != nil {
		return nil, err
	}
	return &nodeIdentity{cert: nc, reloader: pki.NewReloader(tc), gossipKey: key}, nil
}

func readGossipKey(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, pki.GossipKeyFile))
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("gossip key %s: %w: %w", filepath.Join(dir, pki.GossipKeyFile), err, errdefs.ErrInvalid)
	}
	return key, membership.ValidateKey(key)
}

func writeGossipKey(dir string, key []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, pki.GossipKeyFile), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

// knownPeers are the servers a node remembers between starts.
type knownPeers struct {
	Servers     []string `json:"servers"`      // RPC addresses
	GossipPeers []string `json:"gossip_peers"` // gossip addresses
}

func readPeers(dataDir string) knownPeers {
	var p knownPeers
	if b, err := os.ReadFile(filepath.Join(dataDir, peersFile)); err == nil {
		_ = json.Unmarshal(b, &p)
	}
	return p
}

func writePeers(dataDir string, p knownPeers) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dataDir, peersFile), append(b, '\n'), 0o600)
}

// merge adds the addresses of b not in a, keeping a's order.
func mergeAddrs(a []string, b ...string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// joinCluster gets this node's certificate from a server with a join
// token and writes it, the CA, the gossip key (and, for a server, the CA
// key and the secrets key) into the data dir. It tries every --join
// address until one answers or o.JoinTimeout passes; a refusal (bad token,
// another cluster) ends it at once.
func joinCluster(ctx context.Context, o *NodeOptions, role pki.Role, rpcAddr, raftAddr, gossipAddr string, log *slog.Logger) (*rpc.JoinResponse, error) {
	if o.Token == "" || len(o.Join) == 0 {
		return nil, errdefs.WithHint(fmt.Errorf("this node has not joined a cluster yet (no certificate in %s): %w", tlsDir(o.DataDir), errdefs.ErrInvalid),
			fmt.Sprintf("pass --join SERVER:%d --token TOKEN (the %s join token the first server printed)", DefaultRPCPort, role))
	}
	tok, err := pki.ParseJoinToken(o.Token)
	if err != nil {
		return nil, err
	}
	if tok.Role != role {
		return nil, errdefs.WithHint(fmt.Errorf("the join token is a %s token; this node is a %s: %w", tok.Role, role, errdefs.ErrInvalid),
			fmt.Sprintf("use the %s join token (%s-join.token in the first server's data dir)", role, role))
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(o.Name)
	if err != nil {
		return nil, err
	}
	req := rpc.JoinRequest{Token: o.Token, Name: o.Name, CSR: csr, IPs: []string{o.Advertise},
		RPCAddr: rpcAddr, RaftAddr: raftAddr, GossipAddr: gossipAddr}
	ctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
	defer cancel()
	start := time.Now()
	var resp *rpc.JoinResponse
	for wait := 250 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		for _, addr := range o.Join {
			actx, acancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err = rpc.Join(actx, addr, req, pki.JoinClientTLS(tok.CAFingerprint))
			acancel()
			if err == nil {
				break
			}
			// A refusal (bad token, a name another node holds) will not
			// change by waiting: say it now.
			if errdefs.IsInvalid(err) || errors.Is(err, errdefs.ErrPermission) || errdefs.IsConflict(err) {
				return nil, fmt.Errorf("join through %s: %w", addr, err)
			}
			log.Warn("join: server not reachable yet", "server", addr, "err", err)
		}
		if resp != nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, errdefs.WithHint(fmt.Errorf("join: no server of %v answered within %s: %w: %w", o.Join, o.JoinTimeout, err, errdefs.ErrUnavailable),
				"check the --join addresses and that the servers' --rpc-addr port is reachable from here")
		case <-time.After(wait):
		}
	}
	if _, err := pki.VerifyCAPEM(resp.CA, tok.CAFingerprint); err != nil {
		return nil, fmt.Errorf("join: the server sent another cluster's CA: %w", err)
	}
	dir := tlsDir(o.DataDir)
	if role == pki.RoleServer {
		if len(resp.CAKey) == 0 || len(resp.SecretKey) == 0 {
			return nil, fmt.Errorf("join: the server sent no CA key or secrets key to this server: %w", errdefs.ErrInvalid)
		}
		if _, err := pki.LoadCA(resp.CA, resp.CAKey); err != nil {
			return nil, fmt.Errorf("join: CA key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := pki.WriteFileAtomic(filepath.Join(dir, pki.CAKeyFile), resp.CAKey, 0o600); err != nil {
			return nil, err
		}
		if err := pki.WriteFileAtomic(filepath.Join(o.DataDir, state.SecretKeyFile), resp.SecretKey, 0o600); err != nil {
			return nil, err
		}
	}
	if err := membership.ValidateKey(resp.GossipKey); err != nil {
		return nil, fmt.Errorf("join: gossip key: %w", err)
	}
	if err := writeGossipKey(dir, resp.GossipKey); err != nil {
		return nil, err
	}
	if err := writePeers(o.DataDir, knownPeers{Servers: mergeAddrs(resp.Servers, o.Join...), GossipPeers: resp.GossipPeers}); err != nil {
		return nil, err
	}
	// The certificate last: its presence says the join is complete.
	if err := pki.WriteNodeFiles(dir, resp.Cert, keyPEM, resp.CA); err != nil {
		return nil, err
	}
	log.Info("joined the cluster", "role", string(role), "through", o.Join, "took", time.Since(start).Round(time.Millisecond))
	return resp, nil
}

// gossipLoop joins the gossip peers and, while this node sees no other
// member, tries again, so a node started while the servers are down finds
// them when they return.
func gossipLoop(ctx context.Context, ml *membership.Membership, peers func() []string, log *slog.Logger) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	warned := false
	for {
		if len(ml.Members()) < 2 || aliveCount(ml) < 2 {
			addrs := peers()
			if len(addrs) > 0 {
				jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				n, err := ml.Join(jctx, addrs)
				cancel()
				switch {
				case err != nil && !warned:
					log.Warn("gossip: no peer answered yet; retrying", "peers", addrs, "err", err)
					warned = true
				case err == nil:
					log.Info("gossip: joined", "peers", n)
					warned = false
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func aliveCount(ml *membership.Membership) int {
	n := 0
	for _, m := range ml.Members() {
		if m.State == membership.StateAlive {
			n++
		}
	}
	return n
}

// peersLoop keeps peers.json current with the servers gossip shows alive,
// so a restart finds servers that joined after this node did.
func peersLoop(ctx context.Context, dataDir string, ml *membership.Membership, log *slog.Logger) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var p knownPeers
		for _, m := range ml.Members() {
			if m.State == membership.StateAlive && m.Meta.Role == membership.RoleServer && m.Meta.RPCAddr != "" {
				p.Servers = append(p.Servers, m.Meta.RPCAddr)
				p.GossipPeers = append(p.GossipPeers, m.Addr)
			}
		}
		if len(p.Servers) == 0 {
			continue
		}
		old := readPeers(dataDir)
		// Keep servers that are down now: they may come back first.
		p.Servers = mergeAddrs(p.Servers, old.Servers...)
		p.GossipPeers = mergeAddrs(p.GossipPeers, old.GossipPeers...)
		slices.Sort(p.Servers)
		slices.Sort(p.GossipPeers)
		if slices.Equal(p.Servers, sortedCopy(old.Servers)) && slices.Equal(p.GossipPeers, sortedCopy(old.GossipPeers)) {
			continue
		}
		if err := writePeers(dataDir, p); err != nil {
			log.Warn("remember the servers", "err", err)
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// checkBridge refuses a --bridge that is no interface name: the name also
// makes a lock file under /run/gantry-bridges, and "../x" would create
// and truncate a file of that name anywhere, as root.
func checkBridge(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/ \t\n:%") {
		return fmt.Errorf("--bridge %q: want an interface name of 1-15 characters without '/', ':', '%%' or spaces: %w", name, errdefs.ErrInvalid)
	}
	return nil
}
