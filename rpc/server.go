package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

// Store is what the RPC server needs from the state store (*state.Store).
type Store interface {
	// ApplyCommand applies a raw command (state.EncodeCommand) on the leader.
	ApplyCommand(ctx context.Context, cmd []byte) (state.Result, error)
	Instances(f state.InstanceFilter) ([]*state.Instance, uint64)
	Instance(id string) (*state.Instance, error)
	Service(name string) (*state.Service, error)
	Index() uint64
	Notify() <-chan struct{}
	IsLeader() bool
	// Leader returns the leader's Raft ID and address ("" when unknown).
	Leader() (id, addr string)
}

// ServerConfig wires a Server.
type ServerConfig struct {
	Store Store
	// Peer names the client of a request from its verified certificate
	// (pki.PeerRole): its role (RoleServer or RoleWorker) and node name.
	Peer func(cs *tls.ConnectionState) (role, name string, err error)
	// Join handles /v1/join: checks the token, signs the CSR. Nil refuses
	// joins.
	Join func(ctx context.Context, req JoinRequest) (*JoinResponse, error)
	// LeaderRPC maps the leader's Raft ID and address to its RPC address,
	// for redirects. Nil uses the Raft address as it is.
	LeaderRPC func(id, raftAddr string) string
	// Peers lists the Raft configuration for /v1/status (state.Store.Peers
	// converted); nil leaves it out.
	Peers func(ctx context.Context) ([]PeerInfo, error)
	// JoinBurst and JoinEvery rate-limit joins per source IP: a burst of
	// JoinBurst, then one per JoinEvery. Defaults 5 and 10s.
	JoinBurst int
	JoinEvery time.Duration
	Logger    *slog.Logger
}

type server struct {
	cfg   ServerConfig
	log   *slog.Logger
	mux   *http.ServeMux
	joins *limiter
}

// NewServer returns the handler of the node RPC endpoints. Serve it on a
// listener configured by pki.JoinServerTLS (see the package doc), with no
// http.Server WriteTimeout shorter than MaxWatchWait, which would cut
// watches off (bound slow clients with ReadHeaderTimeout). It panics when Store
// or Peer is missing: that is a wiring mistake, not a runtime condition.
func NewServer(cfg ServerConfig) http.Handler {
	if cfg.Store == nil || cfg.Peer == nil {
		panic("rpc.NewServer: Store and Peer are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.JoinBurst <= 0 {
		cfg.JoinBurst = 5
	}
	if cfg.JoinEvery <= 0 {
		cfg.JoinEvery = 10 * time.Second
	}
	s := &server{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "rpc"),
		mux:   http.NewServeMux(),
		joins: newLimiter(cfg.JoinBurst, cfg.JoinEvery),
	}
	s.mux.HandleFunc("POST "+PathJoin, s.handleJoin)
	s.mux.HandleFunc("POST "+PathApply, s.authed(s.handleApply))
	s.mux.HandleFunc("GET "+PathWatch, s.authed(s.handleWatch))
	s.mux.HandleFunc("GET "+PathStatus, s.authed(s.handleStatus))
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// peer is the authenticated client of a request.
type peer struct{ role, name string }

// authed requires a client certificate naming a server or worker. The TLS
// config verified it during the handshake (pki verifies in
// VerifyConnection, so VerifiedChains stays empty and is not checked here).
func (s *server) authed(h func(http.ResponseWriter, *http.Request, peer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			s.writeErr(w, r, http.StatusUnauthorized, ErrorBody{Error: CodeUnauthenticated,
				Message: "a client certificate signed by the cluster CA is required",
				Hint:    "use the node's certificate from <data-dir>/tls/node.pem; join the cluster first to get one"})
			return
		}
		role, name, err := s.cfg.Peer(r.TLS)
		if err == nil && role != RoleServer && role != RoleWorker {
			err = fmt.Errorf("role %q is not a node role", role)
		}
		if err != nil {
			s.writeErr(w, r, http.StatusForbidden, ErrorBody{Error: CodeForbidden,
				Message: "client certificate refused: " + err.Error(),
				Hint:    "node certificates name the node as spiffe://gantry/<server|worker>/<name>"})
			return
		}
		h(w, r, peer{role: role, name: name})
	}
}

func (s *server) handleApply(w http.ResponseWriter, r *http.Request, p peer) {
	cmd, ok := s.readBody(w, r, MaxApplyBytes)
	if !ok {
		return
	}
	ops, err := state.DecodeCommandOps(cmd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if p.role == RoleWorker {
		if err := s.authorizeWorker(p.name, ops); err != nil {
			s.log.Warn("refused a worker's write", "node", p.name, "err", err)
			s.writeErr(w, r, http.StatusForbidden, ErrorBody{Error: CodeForbidden, Message: err.Error(),
				Hint: "a worker may only report status of its own instances, events about its node and its own node record"})
			return
		}
		// The state takes its timestamps from the command: a worker's
		// clock must not set them, this server's does.
		if cmd, err = state.EncodeCommand(ops...); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if !s.cfg.Store.IsLeader() {
		s.notLeader(w, r)
		return
	}
	res, err := s.cfg.Store.ApplyCommand(r.Context(), cmd)
	// Leadership lost between the check above and the append: nothing was
	// appended, so the client may send it to the leader.
	if errors.Is(err, state.ErrNotLeader) || errors.Is(err, raft.ErrNotLeader) {
		s.notLeader(w, r)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ApplyResponse{Index: res.Index, Skipped: res.Skipped})
}

// authorizeWorker checks that every op only reports on the worker's own
// node. An instance that no longer exists may be reported on: the FSM skips
// the op, as it does for a worker that runs beside the state.
func (s *server) authorizeWorker(node string, ops []state.Op) error {
	// ownInstance checks that instance id (of service svc, when not empty)
	// runs on node.
	ownInstance := func(id, svc string) error {
		in, err := s.cfg.Store.Instance(id)
		switch {
		case errdefs.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case in.Node != node:
			return fmt.Errorf("instance %s runs on node %q, not on %q: %w", id, in.Node, node, errdefs.ErrPermission)
		case svc != "" && in.Service != svc:
			return fmt.Errorf("instance %s is of service %q, not %q: %w", id, in.Service, svc, errdefs.ErrPermission)
		}
		return nil
	}
	for i, op := range ops {
		var err error
		switch op := op.(type) {
		case state.SetInstanceStatus:
			err = ownInstance(op.ID, "")
		case state.AppendEvent:
			ev := op.Event
			switch {
			case ev.Node != node:
				err = fmt.Errorf("event about node %q, not %q: %w", ev.Node, node, errdefs.ErrPermission)
			case ev.Instance != "":
				err = ownInstance(ev.Instance, ev.Service)
			case ev.Service != "":
				err = fmt.Errorf("event about service %q names none of its instances on %q: %w", ev.Service, node, errdefs.ErrPermission)
			}
		case state.PutNode:
			if op.Node.ID != node || (op.Node.Name != "" && op.Node.Name != node) {
				err = fmt.Errorf("node record %q, not %q: %w", op.Node.ID, node, errdefs.ErrPermission)
			}
		default:
			err = fmt.Errorf("a worker may not apply %T: %w", op, errdefs.ErrPermission)
		}
		if err != nil {
			return fmt.Errorf("worker %q, op %d: %w", node, i, err)
		}
	}
	return nil
}

func (s *server) notLeader(w http.ResponseWriter, r *http.Request) {
	id, addr := s.cfg.Store.Leader()
	if addr != "" && s.cfg.LeaderRPC != nil {
		addr = s.cfg.LeaderRPC(id, addr)
	}
	if addr == "" {
		w.Header().Set("Retry-After", "1")
		s.writeErr(w, r, http.StatusServiceUnavailable, ErrorBody{Error: CodeNotLeader,
			Message: "this server is not the leader and no leader is known",
			Hint:    "an election is probably under way; retry in a moment"})
		return
	}
	s.writeErr(w, r, http.StatusMisdirectedRequest, ErrorBody{Error: CodeNotLeader,
		Message: "this server is not the leader", Hint: "send writes to the leader at " + addr, Leader: addr})
}

func (s *server) handleWatch(w http.ResponseWriter, r *http.Request, p peer) {
	q := r.URL.Query()
	node := q.Get("node")
	if node == "" {
		s.writeErr(w, r, http.StatusBadRequest, ErrorBody{Error: CodeInvalid, Message: "watch: node is empty", Hint: "add ?node=<name>"})
		return
	}
	if p.role == RoleWorker && node != p.name {
		s.log.Warn("refused a watch of another node", "node", p.name, "watched", node)
		s.writeErr(w, r, http.StatusForbidden, ErrorBody{Error: CodeForbidden,
			Message: fmt.Sprintf("worker %q may not watch node %q", p.name, node), Hint: "a worker watches only its own node"})
		return
	}
	var index uint64
	if v := q.Get("index"); v != "" {
		var err error
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			s.writeErr(w, r, http.StatusBadRequest, ErrorBody{Error: CodeInvalid, Message: "watch: index " + strconv.Quote(v) + " is not a number"})
			return
		}
	}
	wait := DefaultWatchWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.writeErr(w, r, http.StatusBadRequest, ErrorBody{Error: CodeInvalid, Message: "watch: wait " + strconv.Quote(v) + " is not a duration", Hint: "e.g. wait=30s"})
			return
		}
		wait = min(d, MaxWatchWait)
	}
	hash := q.Get("hash")

	// Spread the wake-ups of many workers that started together.
	if wait > 0 {
		wait += rand.N(wait/16 + 1)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ch := s.cfg.Store.Notify()
		snap := s.snapshot(node)
		if snap.Index > index && (hash == "" || snap.Hash != hash) {
			writeJSON(w, http.StatusOK, snap)
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			writeJSON(w, http.StatusOK, snap)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// snapshot reads what node must run: its instances and their services.
func (s *server) snapshot(node string) WatchResponse {
	insts, index := s.cfg.Store.Instances(state.InstanceFilter{Node: node})
	var names []string
	for _, in := range insts {
		names = append(names, in.Service)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	svcs := make([]*state.Service, 0, len(names))
	for _, n := range names {
		// A service removed since the instances were read is left out; the
		// worker sees it missing, as it would beside the state.
		if svc, err := s.cfg.Store.Service(n); err == nil {
			svcs = append(svcs, svc)
		}
	}
	return WatchResponse{Node: node, Index: index, Hash: contentHash(insts, svcs), Instances: insts, Services: svcs}
}

func contentHash(insts []*state.Instance, svcs []*state.Service) string {
	h := sha256.New()
	// Encoding these types cannot fail.
	_ = json.NewEncoder(h).Encode(struct {
		I []*state.Instance
		S []*state.Service
	}{insts, svcs})
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *server) handleStatus(w http.ResponseWriter, r *http.Request, _ peer) {
	st := StatusResponse{Role: "follower", Index: s.cfg.Store.Index()}
	if s.cfg.Store.IsLeader() {
		st.Role = "leader"
	}
	st.LeaderID, st.LeaderAddr = s.cfg.Store.Leader()
	if st.LeaderAddr != "" && s.cfg.LeaderRPC != nil {
		st.LeaderAddr = s.cfg.LeaderRPC(st.LeaderID, st.LeaderAddr)
	}
	if s.cfg.Peers != nil {
		peers, err := s.cfg.Peers(r.Context())
		if err != nil {
			s.log.Debug("status without peers", "err", err)
		}
		st.Peers = peers
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) handleJoin(w http.ResponseWriter, r *http.Request) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	if wait, ok := s.joins.allow(limitKey(ip), time.Now()); !ok {
		s.log.Warn("join rate limit hit", "remote", ip)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.writeErr(w, r, http.StatusTooManyRequests, ErrorBody{Error: CodeRateLimited,
			Message: "too many join attempts from " + ip, Hint: fmt.Sprintf("wait %s and retry", wait.Round(time.Second)+time.Second)})
		return
	}
	if s.cfg.Join == nil {
		s.writeErr(w, r, http.StatusNotFound, ErrorBody{Error: CodeNotFound, Message: "this node does not accept joins",
			Hint: "join through a server's --rpc-addr"})
		return
	}
	body, ok := s.readBody(w, r, MaxJoinBytes)
	if !ok {
		return
	}
	var req JoinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.writeErr(w, r, http.StatusBadRequest, ErrorBody{Error: CodeInvalid, Message: "join request is not valid JSON: " + err.Error()})
		return
	}
	resp, err := s.cfg.Join(r.Context(), req)
	if err != nil {
		s.log.Warn("join refused", "remote", ip, "name", req.Name, "err", err)
		s.writeError(w, r, err)
		return
	}
	s.log.Info("node joined", "remote", ip, "name", req.Name)
	writeJSON(w, http.StatusOK, resp)
}

// readBody reads a body of at most limit bytes, answering 413 past it.
func (s *server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.writeErr(w, r, http.StatusRequestEntityTooLarge, ErrorBody{Error: CodeTooLarge,
			Message: fmt.Sprintf("request body is over %d bytes", limit), Hint: "split the change into smaller commands"})
		return nil, false
	case err != nil:
		s.writeErr(w, r, http.StatusBadRequest, ErrorBody{Error: CodeInvalid, Message: "read request body: " + err.Error()})
		return nil, false
	}
	return body, true
}

// writeError answers with the status of err's errdefs category.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	b := ErrorBody{Message: err.Error()}
	var he *errdefs.HintError
	if errors.As(err, &he) {
		b.Message, b.Hint = he.Err.Error(), he.Hint
	}
	code := http.StatusInternalServerError
	switch {
	case errdefs.IsInvalid(err):
		code, b.Error = http.StatusBadRequest, CodeInvalid
	case errors.Is(err, errdefs.ErrPermission):
		code, b.Error = http.StatusForbidden, CodeForbidden
	case errdefs.IsNotFound(err):
		code, b.Error = http.StatusNotFound, CodeNotFound
	case errdefs.IsConflict(err):
		code, b.Error = http.StatusConflict, CodeConflict
	case errdefs.IsUnavailable(err):
		code, b.Error = http.StatusServiceUnavailable, CodeUnavailable
		w.Header().Set("Retry-After", "1")
	default:
		b.Error = CodeInternal
	}
	s.writeErr(w, r, code, b)
}

func (s *server) writeErr(w http.ResponseWriter, r *http.Request, code int, b ErrorBody) {
	s.log.Debug("rpc error", "path", r.URL.Path, "status", code, "error", b.Error, "message", b.Message)
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away, or v cannot fail
}

// limitKey is the join limiter's key for a source IP: the address itself
// for IPv4, its /64 for IPv6, where one host commonly holds a whole /64
// and could otherwise make a fresh bucket per attempt.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() || a.Is4In6() {
		return ip
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// limiter is a token bucket per key (source IP).
type limiter struct {
	burst float64
	every time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the limiter's memory; past it, full buckets are dropped.
const maxBuckets = 4096

func newLimiter(burst int, every time.Duration) *limiter {
	return &limiter{burst: float64(burst), every: every, buckets: map[string]*bucket{}}
}

// allow takes a token for key, or says how long until one is free.
func (l *limiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
		}
		if len(l.buckets) >= maxBuckets {
			// Every bucket is still in use: a flood from many sources.
			// Refuse newcomers rather than grow without bound (each
			// refusal would otherwise also rescan the whole map).
			return l.every, false
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
	b.at = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(l.every)), false
	}
	b.tokens--
	return 0, true
}

func (l *limiter) pruneLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) >= l.burst {
			delete(l.buckets, k)
		}
	}
}
