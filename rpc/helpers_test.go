package rpc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
	"github.com/gantry-dev/gantry/worker"
)

var (
	_ worker.Store = (*RemoteStore)(nil)
	_ Store        = (*state.Store)(nil)
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testCA is a cluster CA from the pki package, issuing node certificates
// with role identities (spiffe://gantry/<role>/<name>).
type testCA struct {
	ca  *pki.CA
	pem []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, pem: ca.CertPEM()}
}

// issue makes a node certificate (chain: leaf, CA) for role/name on 127.0.0.1.
func (ca *testCA) issue(t testing.TB, role, name string) tls.Certificate {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.ca.Issue(csr, pki.Role(role), name, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// serverTLS is the RPC listener's config: node certificates of both roles,
// or none (for joins).
func (ca *testCA) serverTLS(cert tls.Certificate) *tls.Config {
	return pki.JoinServerTLS(ca.pem, cert, pki.RoleServer, pki.RoleWorker)
}

func (ca *testCA) clientTLS(cert tls.Certificate) *tls.Config {
	return pki.ClientTLS(ca.pem, cert, pki.RoleServer)
}

// joinTLS is what a joining node uses: no certificate, the CA pinned.
func (ca *testCA) joinTLS() *tls.Config { return pki.JoinClientTLS(ca.ca.Fingerprint()) }

func peerRole(cs *tls.ConnectionState) (string, string, error) {
	role, name, err := pki.PeerRole(cs)
	return string(role), name, err
}

// leaderStore is a single-node state.Store as the Store of its RPC server.
type leaderStore struct{ *state.Store }

func (s leaderStore) ApplyCommand(ctx context.Context, cmd []byte) (state.Result, error) {
	ops, err := state.DecodeCommandOps(cmd)
	if err != nil {
		return state.Result{}, err
	}
	return s.Store.ApplyWithResult(ctx, ops...)
}

func (leaderStore) IsLeader() bool { return true }

func (leaderStore) Leader() (string, string) { return "s1", "" }

// testStore is a follower's view of a single-node state.Store: it claims not
// to lead and names the leader at leaderAddr.
type testStore struct {
	leaderStore

	mu         sync.Mutex
	leaderAddr string
}

func (s *testStore) setLeader(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaderAddr = addr
}

func (s *testStore) IsLeader() bool { return false }

func (s *testStore) Leader() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "s1", s.leaderAddr
}

func openState(t testing.TB) *state.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "s1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// rpcServer is a running HTTPS server of a handler on 127.0.0.1.
type rpcServer struct {
	addr  string
	hits  atomic.Int64
	mu    sync.Mutex
	srv   *http.Server
	tlsC  *tls.Config
	h     http.Handler
	t     testing.TB
	stopd bool
}

// startRPC serves h with TLS on addr ("127.0.0.1:0" for any port).
func startRPC(t testing.TB, addr string, tlsConf *tls.Config, h http.Handler) *rpcServer {
	t.Helper()
	s := &rpcServer{tlsC: tlsConf, h: h, t: t, stopd: true}
	s.start(addr)
	t.Cleanup(s.stop)
	return s
}

func (s *rpcServer) start(addr string) {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.hits.Add(1)
			s.h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are what some tests do
	}
	s.mu.Lock()
	s.srv, s.stopd = srv, false
	s.mu.Unlock()
	go func() { _ = srv.Serve(tls.NewListener(ln, s.tlsC)) }()
}

func (s *rpcServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopd {
		_ = s.srv.Close()
		s.stopd = true
	}
}

// cluster is one real state store served by an RPC server.
type cluster struct {
	ca  *testCA
	st  *state.Store
	srv *rpcServer
}

func newCluster(t testing.TB, mod ...func(*ServerConfig)) *cluster {
	t.Helper()
	ca := newTestCA(t)
	st := openState(t)
	cfg := ServerConfig{Store: leaderStore{st}, Peer: peerRole, Logger: testLogger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	srv := startRPC(t, "127.0.0.1:0", ca.serverTLS(ca.issue(t, RoleServer, "s1")), NewServer(cfg))
	return &cluster{ca: ca, st: st, srv: srv}
}

// client returns a client with a role/name certificate.
func (c *cluster) client(t testing.TB, role, name string, servers ...string) *Client {
	t.Helper()
	if len(servers) == 0 {
		servers = []string{c.srv.addr}
	}
	cl := NewClient(servers, c.ca.clientTLS(c.ca.issue(t, role, name)), testLogger(t))
	t.Cleanup(cl.Close)
	return cl
}

func mustApply(t testing.TB, st *state.Store, ops ...state.Op) uint64 {
	t.Helper()
	idx, err := st.Apply(context.Background(), ops...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return idx
}

func service(name string) state.PutService {
	return state.PutService{Service: state.Service{Name: name, Spec: spec.Service{Name: name, Image: "busybox"}}}
}

func instance(id, svc, node string, slot int) state.PutInstance {
	return state.PutInstance{Instance: state.Instance{ID: id, Service: svc, Node: node, Slot: slot}}
}

func encode(t testing.TB, ops ...state.Op) []byte {
	t.Helper()
	cmd, err := state.EncodeCommand(ops...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func decodeError(t testing.TB, body []byte) ErrorBody {
	t.Helper()
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return eb
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
