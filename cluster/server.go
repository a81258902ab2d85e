package cluster

// `gantry server`: one server of a Raft group. The first one is started
// with --bootstrap and creates the cluster (CA, its certificate, the gossip
// and secrets keys, join tokens); the others join with a server join token.
// Each serves the node RPC (joins, workers' watches and writes, forwarded
// writes), gossips, and serves the MCP endpoint with the same tools as
// gantry dev: reads are local, writes go to the leader. The leader alone
// runs the controller and the node-health loop.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/rpc"
	"github.com/gantry-dev/gantry/state"
)

// Join token files the bootstrap server writes (0600) into its data dir.
const (
	ServerJoinTokenFile = "server-join.token"
	WorkerJoinTokenFile = "worker-join.token"
	// ClusterAdminTokenFile holds an admin API token made at bootstrap:
	// stored in the replicated state, it works on every server.
	ClusterAdminTokenFile = "cluster-admin.token"
)

// ServerOptions configure `gantry server`.
type ServerOptions struct {
	Node NodeOptions
	// MCP holds the MCP endpoint's flags, shared with gantry dev: --listen,
	// --tls-cert/--tls-key, OAuth and policy. Its DataDir and NodeName
	// follow Node.
	MCP DevOptions
	// RaftAddr is the bind address of the Raft transport.
	RaftAddr string
	// Bootstrap creates a new cluster with this server as its only voter.
	Bootstrap bool
	// BootstrapExpect, above 1, holds the Raft group back until this many
	// servers gossip, then bootstraps it with all of them at once.
	BootstrapExpect int
	// JoinTokenTTL is how long the bootstrap join tokens are valid.
	JoinTokenTTL time.Duration
}

// ParseServerFlags parses the flags of `gantry server`.
func ParseServerFlags(args []string, stderr io.Writer) (*ServerOptions, error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &ServerOptions{}
	var level string
	var join stringList
	registerNodeFlags(fs, &o.Node, &level, &join)
	fs.StringVar(&o.Node.RPCAddr, "rpc-addr", ":"+strconv.Itoa(DefaultRPCPort), "bind address of the node RPC API (HTTPS, mutual TLS): joins, workers, forwarded writes")
	fs.StringVar(&o.MCP.Listen, "listen", DefaultListen, "address of the MCP endpoint (served at /mcp); a non-loopback address needs --tls-cert and --tls-key")
	fs.StringVar(&o.RaftAddr, "raft-addr", ":"+strconv.Itoa(DefaultRaftPort), "bind address of Raft (TCP, mutual TLS)")
	fs.BoolVar(&o.Bootstrap, "bootstrap", false, "create a new cluster: its CA, keys and join tokens, with this server as the first voter")
	fs.IntVar(&o.BootstrapExpect, "bootstrap-expect", 0, "form the Raft group only once this many servers gossip (give every server the same number; the one with --bootstrap makes the CA and tokens)")
	fs.DurationVar(&o.JoinTokenTTL, "join-token-ttl", 7*24*time.Hour, "how long the join tokens printed at --bootstrap are valid")
	var insecure stringList
	fs.Var(&insecure, "insecure-registry", "registry host[:port] that may be reached over plain http when deploy and pull_image resolve images (repeatable; loopback registries always may; workers take the same flag)")
	registerTLSFlags(fs, &o.MCP)
	registerOAuthFlags(fs, &o.MCP)
	registerPolicyFlags(fs, &o.MCP)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gantry server [flags]\n\nRuns one server of a Gantry cluster: Raft-replicated state, the node RPC, gossip and the MCP endpoint.\n"+
			"Start the first with --bootstrap; it prints join tokens. Start the others with --join FIRST --token SERVER_TOKEN.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseOnlyFlags(fs, args); err != nil {
		return nil, err // flag.ErrHelp: the usage is printed and the command exits 0
	}
	if err := checkNodeFlags(&o.Node, level, join); err != nil {
		return nil, err
	}
	o.MCP.Insecure = insecure
	if err := checkAddr("--raft-addr", o.RaftAddr, false); err != nil {
		return nil, err
	}
	if err := checkPortClash(map[string]string{"--rpc-addr": o.Node.RPCAddr, "--raft-addr": o.RaftAddr, "--gossip-addr": o.Node.GossipAddr}); err != nil {
		return nil, err
	}
	if o.JoinTokenTTL <= 0 {
		return nil, fmt.Errorf("--join-token-ttl %s: want a positive duration such as 24h: %w", o.JoinTokenTTL, errdefs.ErrInvalid)
	}
	if o.Bootstrap && len(o.Node.Join) > 0 {
		return nil, errdefs.WithHint(fmt.Errorf("--bootstrap and --join exclude each other: %w", errdefs.ErrInvalid),
			"bootstrap the first server only; join the others to it")
	}
	if o.BootstrapExpect < 0 || o.BootstrapExpect > 7 {
		return nil, errdefs.WithHint(fmt.Errorf("--bootstrap-expect %d: want the number of servers, 0 (off) to 7: %w", o.BootstrapExpect, errdefs.ErrInvalid),
			"use 3 or 5: they tolerate 1 or 2 failed servers; an even number tolerates no more than the odd one below it")
	}
	o.MCP.DataDir, o.MCP.NodeName, o.MCP.LogLevel = o.Node.DataDir, o.Node.Name, o.Node.LogLevel
	if err := checkListen(&o.MCP); err != nil {
		return nil, err
	}
	if err := checkOAuthFlags(&o.MCP); err != nil {
		return nil, err
	}
	return o, nil
}

// ServerReady is what Server reports once it serves.
type ServerReady struct {
	Endpoint, TokenFile string
	// ServerToken and WorkerToken are the join tokens, set at the start
	// that bootstrapped the cluster only.
	ServerToken, WorkerToken string
}

// RunServer is the `gantry server` subcommand.
func RunServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := ParseServerFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.Node.LogLevel}))
	return Server(ctx, o, log, func(r ServerReady) {
		fmt.Fprintf(stdout, "gantry server %s is ready\n  MCP endpoint: %s\n  admin token:  %s\n", o.Node.Name, r.Endpoint, r.TokenFile)
		if r.ServerToken != "" {
			fmt.Fprintf(stdout, "  join another server:  gantry server --join %s --token %s\n  join a worker:        gantry worker --join %s --token %s\n"+
				"  (the tokens are in %s and %s)\n  admin token for every server: %s\n",
				advertised(o.Node.RPCAddr, o.Node.Advertise), r.ServerToken, advertised(o.Node.RPCAddr, o.Node.Advertise), r.WorkerToken,
				filepath.Join(o.Node.DataDir, ServerJoinTokenFile), filepath.Join(o.Node.DataDir, WorkerJoinTokenFile),
				filepath.Join(o.Node.DataDir, ClusterAdminTokenFile))
		}
	})
}

// serverNode is a running server's parts.
type serverNode struct {
	o         *ServerOptions
	log       *slog.Logger
	id        *nodeIdentity
	ca        *pki.CA
	st        *state.Store
	ml        *membership.Membership
	client    *rpc.Client
	rpcAddr   string // advertised
	raftAddr  string
	changed   chan struct{} // membership changed: the leader reconciles
	secretKey []byte
}

// Server runs a cluster server until ctx is done. ready is called once the
// MCP endpoint accepts calls.
func Server(ctx context.Context, o *ServerOptions, log *slog.Logger, ready func(ServerReady)) error {
	if os.Geteuid() != 0 {
		return errdefs.WithHint(fmt.Errorf("gantry server must run as root: %w", errdefs.ErrPermission), "run it with sudo")
	}
	dataDir := o.Node.DataDir
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	unlock, err := lockDir(dataDir, "gantry.lock", dataDir, "use another --data-dir")
	if err != nil {
		return err
	}
	defer unlock()
	s := &serverNode{o: o, log: log, changed: make(chan struct{}, 1),
		rpcAddr: advertised(o.Node.RPCAddr, o.Node.Advertise), raftAddr: advertised(o.RaftAddr, o.Node.Advertise)}
	gossipAddr := advertised(o.Node.GossipAddr, o.Node.Advertise)
	start := time.Now()

	bootstrapping := false
	s.id, err = loadIdentity(dataDir, pki.RoleServer, o.Node.Name)
	switch {
	case errdefs.IsNotFound(err) && o.Bootstrap:
		if err := createCluster(dataDir, o.Node.Name, o.Node.Advertise); err != nil {
			return err
		}
		bootstrapping = true
	case errdefs.IsNotFound(err):
		if _, err := joinCluster(ctx, &o.Node, pki.RoleServer, s.rpcAddr, s.raftAddr, gossipAddr, log); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if s.id == nil {
		if s.id, err = loadIdentity(dataDir, pki.RoleServer, o.Node.Name); err != nil {
			return err
		}
	}
	caKey, err := os.ReadFile(filepath.Join(tlsDir(dataDir), pki.CAKeyFile))
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if s.ca, err = pki.LoadCA(s.id.cert.CAPEM, caKey); err != nil {
		return err
	}
	if err := renewServerCert(dataDir, s.id, s.ca, time.Now(), log); err != nil {
		return err
	}
	token, err := ensureToken(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return err
	}
	secretKey, err := state.LoadSecretKey(dataDir)
	if err != nil {
		return err
	}
	if s.secretKey, err = os.ReadFile(filepath.Join(dataDir, state.SecretKeyFile)); err != nil {
		return err
	}

	caPEM, rl := s.id.cert.CAPEM, s.id.reloader
	trans, transClose, err := state.NewTransport(o.RaftAddr, s.raftAddr, raftServerTLS(rl, caPEM), rl.ClientTLS(caPEM, pki.RoleServer), log)
	if err != nil {
		return fmt.Errorf("--raft-addr %s: %w", o.RaftAddr, err)
	}
	defer transClose.Close() // after the store, as NewTransport asks
	peers := readPeers(dataDir)
	s.client = rpc.NewClient(mergeAddrs(peers.Servers, append(o.Node.Join, s.rpcAddr)...), rl.ClientTLS(caPEM, pki.RoleServer), log)
	defer s.client.Close()

	s.ml, err = membership.New(ctx, membership.Config{Name: o.Node.Name, Bind: o.Node.GossipAddr, Advertise: gossipAddr, Key: s.id.gossipKey,
		Meta: membership.Meta{Role: membership.RoleServer, RPCAddr: s.rpcAddr, RaftAddr: s.raftAddr}, Logger: log.With("component", "gossip")})
	if err != nil {
		return fmt.Errorf("gossip on %s: %w", o.Node.GossipAddr, err)
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.ml.Leave(lctx, time.Second)
		_ = s.ml.Shutdown()
	}()

	s.st, err = state.Open(ctx, state.Config{DataDir: dataDir, NodeID: o.Node.Name, Logger: log, Transport: trans,
		Join: !bootstrapping && o.BootstrapExpect <= 1, BootstrapExpect: expectOrZero(o.BootstrapExpect), Forward: s.forward})
	if err != nil {
		return err
	}
	defer s.st.Close()

	var rdy ServerReady
	if bootstrapping {
		if rdy.ServerToken, rdy.WorkerToken, err = s.makeJoinTokens(); err != nil {
			return err
		}
	}
	if bootstrapping && o.BootstrapExpect <= 1 {
		// A single voter leads already: the tokens are usable when
		// the endpoints open.
		if err := s.recordBootstrapTokens(ctx); err != nil {
			return err
		}
	}
	rpcLn, err := net.Listen("tcp", o.Node.RPCAddr)
	if err != nil {
		return errdefs.WithHint(fmt.Errorf("listen on --rpc-addr %s: %w", o.Node.RPCAddr, err), "is another gantry server running? pick another --rpc-addr")
	}
	rpcLn = tls.NewListener(rpcLn, rl.JoinServerTLS(caPEM))
	rpcHandler := rpc.NewServer(rpc.ServerConfig{Store: s.st, Peer: peerRole, Join: s.join, LeaderRPC: s.rpcFor, Peers: s.raftPeers,
		Logger: log.With("component", "rpc")})

	imgs, err := image.Open(filepath.Join(dataDir, "images"), image.Options{Insecure: o.MCP.Insecure, Logger: log})
	if err != nil {
		rpcLn.Close()
		return err
	}
	secrets := &Secrets{Store: s.st, Key: secretKey}
	// Instances run on workers: their logs are fetched from there.
	logs := newRemoteLogs(s, filepath.Join(dataDir, "logcache"), rl.ClientTLS(caPEM, pki.RoleWorker))
	be := &Backend{Store: s.st, Images: imgs, Secrets: secrets, LogPath: logs.path}
	audit := NewAuditWriter(s.st, log, 0)
	defer startAuditWriter(ctx, audit)()
	ep, err := newMCPEndpoint(ctx, &o.MCP, mcpParts{store: s.st, backend: be, audit: audit, token: token, secretKey: secretKey,
		exec: newClusterExec(s, rl.ClientTLS(caPEM, pki.RoleWorker), be.SecretScrubber), operator: &Operator{Store: s.st, Self: o.Node.Name, Members: s.ml.Members}}, log)
	if err != nil {
		rpcLn.Close()
		return err
	}
	ep.mux.HandleFunc("/healthz", s.healthz)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveRPC(gctx, rpcLn, s.withSecrets(rpcHandler, secrets)) })
	g.Go(func() error { return mcp.Serve(gctx, ep.ln, s.consistentReads(ep.mux)) })
	g.Go(func() error { return ep.srv.WatchResources(gctx) })
	g.Go(func() error { return s.watchMembers(gctx) })
	g.Go(func() error {
		return gossipLoop(gctx, s.ml, func() []string { return mergeAddrs(readPeers(dataDir).GossipPeers, s.gossipOfJoin()...) }, log)
	})
	g.Go(func() error { return s.leaderLoop(gctx) })
	g.Go(func() error { return peersLoop(gctx, dataDir, s.ml, log) })
	g.Go(func() error { return renewLoop(gctx, dataDir, s.id, s.ca, log) })
	if o.BootstrapExpect > 1 {
		g.Go(func() error { return s.bootstrapExpect(gctx, o.BootstrapExpect) })
	}
	g.Go(func() error { return s.recordBootstrapTokensLater(gctx) })
	log.Info("gantry server started", "endpoint", ep.endpoint, "rpc", s.rpcAddr, "raft", s.raftAddr, "gossip", s.ml.Addr(),
		"data_dir", dataDir, "startup", time.Since(start).Round(time.Millisecond))
	if ready != nil {
		rdy.Endpoint, rdy.TokenFile = ep.endpoint, filepath.Join(dataDir, "admin.token")
		ready(rdy)
	}
	err = g.Wait()
	log.Info("gantry server stopped")
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// serveRPC serves the node RPC until ctx is done. Requests see ctx, so
// the workers' blocking watches end at once when the server stops instead
// of holding the shutdown for their whole wait.
func serveRPC(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the node RPC on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the node RPC on %s: %w", ln.Addr(), err)
	}
	return nil
}

// raftServerTLS is pki's server config for the Raft port with the standard
// library's chain verification on as well: state.NewTransport insists on
// tls.RequireAndVerifyClientCert, while pki verifies in VerifyConnection
// (which still runs, checking the role).
func raftServerTLS(rl *pki.Reloader, caPEM []byte) *tls.Config {
	c := rl.ServerTLS(caPEM, pki.RoleServer)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	return c
}

func peerRole(cs *tls.ConnectionState) (string, string, error) {
	r, n, err := pki.PeerRole(cs)
	return string(r), n, err
}

// createCluster makes a new cluster's CA, this server's certificate and
// the gossip key in dataDir. The secrets key is made by state.LoadSecretKey.
func createCluster(dataDir, name, advertise string) error {
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		return err
	}
	keyPEM, csr, err := pki.NewKeyAndCSR(name)
	if err != nil {
		return err
	}
	certPEM, err := ca.Issue(csr, pki.RoleServer, name, []net.IP{net.ParseIP(advertise)}, pki.DefaultNodeTTL, now)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	key, err := membership.GenerateKey()
	if err != nil {
		return err
	}
	dir := tlsDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, pki.CAKeyFile), caKey, 0o600); err != nil {
		return err
	}
	if err := writeGossipKey(dir, key); err != nil {
		return err
	}
	return pki.WriteNodeFiles(dir, certPEM, keyPEM, ca.CertPEM())
}

// join is the node RPC's join handler: it spends a use of the token (in
// the replicated state, so limits hold across servers), signs the node's
// certificate and hands out the cluster's keys.
func (s *serverNode) join(ctx context.Context, req rpc.JoinRequest) (*rpc.JoinResponse, error) {
	tok, err := pki.ParseJoinToken(req.Token)
	if err != nil {
		return nil, err
	}
	if err := tok.CheckCA(s.ca.Cert.Raw); err != nil {
		return nil, err
	}
	if err := pki.ValidName(req.Name); err != nil {
		return nil, err
	}
	if err := s.checkJoinName(ctx, tok.Role, req.Name); err != nil {
		return nil, err
	}
	if len(req.IPs) > maxJoinIPs {
		return nil, fmt.Errorf("join: %d IP addresses, at most %d go in a certificate: %w", len(req.IPs), maxJoinIPs, errdefs.ErrInvalid)
	}
	var ips []net.IP
	for _, a := range req.IPs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("join: IP %q is not an IP address: %w", a, errdefs.ErrInvalid)
		}
		ips = append(ips, ip)
	}
	// Sign before spending a use of the token: a request the CA refuses
	// (a garbage or forged CSR) must not use up a single-use token. The
	// certificate is thrown away if the token is refused.
	cert, err := s.ca.Issue(req.CSR, tok.Role, req.Name, ips, pki.DefaultNodeTTL, time.Now())
	if err != nil {
		return nil, err
	}
	if s.unrecordedLocalToken(tok) {
		// The group is still forming (--bootstrap-expect): this server
		// made the token and holds its only record until a leader
		// takes it.
		s.log.Info("join token checked locally: the Raft group has not formed yet", "token", tok.ID, "name", req.Name)
	} else if _, err := s.st.Apply(ctx, state.UseJoinToken{ID: tok.ID, SecretHash: tok.SecretHash, Role: string(tok.Role), Node: req.Name}); err != nil {
		return nil, err
	}
	resp := &rpc.JoinResponse{Cert: cert, CA: s.ca.CertPEM(), GossipKey: s.id.gossipKey}
	for _, m := range s.ml.Members() {
		if m.State == membership.StateAlive && m.Meta.Role == membership.RoleServer {
			resp.Servers = append(resp.Servers, m.Meta.RPCAddr)
			resp.GossipPeers = append(resp.GossipPeers, m.Addr)
		}
	}
	if tok.Role == pki.RoleServer {
		if resp.CAKey, err = s.ca.KeyPEM(); err != nil {
			return nil, err
		}
		resp.SecretKey = s.secretKey
	}
	s.log.Info("signed a node certificate", "role", string(tok.Role), "name", req.Name, "token", tok.ID)
	return resp, nil
}

// maxJoinIPs bounds the IP SANs a joining node may ask for.
const maxJoinIPs = 16

// checkJoinName refuses a join under a name another node holds: a token
// grants a new node, not another node's identity. Without this, anyone
// with the (reusable) worker token could get a certificate for a running
// worker's name, watch its assignment and secrets and report its status,
// or for a server's name. A live gossip member holds its name; so does a
// Raft server against a worker token, and a worker name that still has
// instances assigned. A worker that died and lost its disk may come back
// under its name once its instances were rescheduled.
func (s *serverNode) checkJoinName(ctx context.Context, role pki.Role, name string) error {
	taken := func(what string) error {
		return errdefs.WithHint(fmt.Errorf("join: the name %q is taken by %s: %w", name, what, errdefs.ErrConflict),
			"give the joining node another --name; to replace a node, stop it and remove it first")
	}
	for _, m := range s.ml.Members() {
		if m.Name == name && m.State == membership.StateAlive {
			return taken("a running " + cmp.Or(m.Meta.Role, "node"))
		}
	}
	if role == pki.RoleServer {
		return nil
	}
	// A worker that is only cut off is not alive in gossip, but its
	// instances (and the secrets they use) are still assigned to its name:
	// the name is free once they have been moved away.
	if insts, _ := s.st.Instances(state.InstanceFilter{Node: name}); len(insts) > 0 {
		return taken(fmt.Sprintf("a worker that is not answering but still has %d instance(s) assigned", len(insts)))
	}
	peers, err := s.st.Peers(ctx)
	if err != nil { // the group is still forming: gossip was checked
		s.log.Debug("join name checked against gossip only", "name", name, "err", err)
	}
	for _, p := range peers {
		if p.ID == name {
			return taken("a server of the Raft group")
		}
	}
	return nil
}

// rpcFor maps a server's Raft ID and address to its RPC address, from
// what it gossips; unknown servers are taken to use this one's RPC port.
//
// Any gossip member can claim the server role and another's Raft address
// (workers hold the gossip key), so when the server's ID is known, only
// the member of that name is believed.
func (s *serverNode) rpcFor(id, raftAddr string) string {
	if id == "" && raftAddr != "" && s.st != nil {
		if lid, laddr := s.st.Leader(); laddr == raftAddr {
			id = lid
		}
	}
	for _, m := range s.ml.Members() {
		if m.Meta.Role != membership.RoleServer || m.Meta.RPCAddr == "" || (id != "" && m.Name != id) {
			continue
		}
		if m.Meta.RaftAddr == raftAddr || (raftAddr == "" && m.Name == id) {
			return m.Meta.RPCAddr
		}
	}
	h, _, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return raftAddr
	}
	_, p, _ := net.SplitHostPort(s.rpcAddr)
	return net.JoinHostPort(h, p)
}

// forward is state.Config.Forward: a follower's write goes to the leader's
// node RPC.
func (s *serverNode) forward(ctx context.Context, leaderAddr string, cmd []byte) (state.Result, error) {
	resp, err := s.client.ApplyAt(ctx, s.rpcFor("", leaderAddr), cmd)
	if err != nil {
		if errors.Is(err, rpc.ErrNotLeader) {
			return state.Result{}, fmt.Errorf("%w: %w", err, state.ErrNotLeader)
		}
		return state.Result{}, err
	}
	return resp.Result(), nil
}

func (s *serverNode) raftPeers(ctx context.Context) ([]rpc.PeerInfo, error) {
	ps, err := s.st.Peers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]rpc.PeerInfo, len(ps))
	for i, p := range ps {
		out[i] = rpc.PeerInfo{ID: p.ID, Addr: p.Addr, Suffrage: p.Suffrage, Leader: p.Leader}
	}
	return out, nil
}

// gossipOfJoin guesses the gossip addresses of the --join servers (same
// host, this node's gossip port), for a restart before peers.json has any.
func (s *serverNode) gossipOfJoin() []string {
	_, p, _ := net.SplitHostPort(s.ml.Addr())
	var out []string
	for _, j := range s.o.Node.Join {
		if h, _, err := net.SplitHostPort(j); err == nil {
			out = append(out, net.JoinHostPort(h, p))
		}
	}
	return out
}

// healthz says the server answers, with its Raft view: role, leader and
// peers, one per line after "ok".
func (s *serverNode) healthz(w http.ResponseWriter, r *http.Request) {
	role := "follower"
	if s.st.IsLeader() {
		role = "leader"
	}
	id, _ := s.st.Leader()
	var b strings.Builder
	fmt.Fprintf(&b, "ok\nname: %s\nrole: %s\nleader: %s\nindex: %d\n", s.o.Node.Name, role, id, s.st.Index())
	if ps, err := s.st.Peers(r.Context()); err == nil {
		for _, p := range ps {
			fmt.Fprintf(&b, "peer: %s %s %s\n", p.ID, p.Addr, p.Suffrage)
		}
	}
	io.WriteString(w, b.String())
}
