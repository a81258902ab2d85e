package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

func TestApplyFromServerPeer(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(cfg *ServerConfig) {
		cfg.Peers = func(context.Context) ([]PeerInfo, error) {
			return []PeerInfo{{ID: "s1", Addr: "127.0.0.1:7435", Suffrage: "voter", Leader: true}}, nil
		}
	})
	cl := c.client(t, RoleServer, "s2")
	ctx := context.Background()

	// A server may apply anything, service and instance records included.
	resp, err := cl.Apply(ctx, encode(t, service("web"), instance("web-0-a", "web", "n1", 0)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Index == 0 || resp.Index != c.st.Index() {
		t.Errorf("apply index = %d, store index %d", resp.Index, c.st.Index())
	}
	if _, err := c.st.Service("web"); err != nil {
		t.Errorf("service not applied: %v", err)
	}
	in, err := c.st.Instance("web-0-a")
	if err != nil || in.Node != "n1" {
		t.Errorf("instance = %+v, %v; want it on n1", in, err)
	}
	// State errors keep their category across the wire.
	_, err = cl.Apply(ctx, encode(t, state.DeleteService{Name: "nope"}))
	if !errdefs.IsNotFound(err) {
		t.Errorf("delete of a missing service: err = %v, want ErrNotFound", err)
	}

	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "leader" || st.Index != c.st.Index() || st.LeaderID != "s1" || len(st.Peers) != 1 || !st.Peers[0].Leader {
		t.Errorf("status = %+v, want leader at index %d", st, c.st.Index())
	}
}

func TestWorkerApplyAuthorization(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), instance("web-0-a", "web", "n1", 0), instance("web-1-b", "web", "n2", 1))
	cl := c.client(t, RoleWorker, "n1")
	ctx := context.Background()
	running := state.InstanceStatus{State: state.StateRunning, PID: 7}

	allowed := map[string][]state.Op{
		"own status": {state.SetInstanceStatus{ID: "web-0-a", Status: running}},
		"own event": {state.AppendEvent{Event: state.Event{Type: "Started", Node: "n1", Instance: "web-0-a", Service: "web"}},
			state.AppendEvent{Event: state.Event{Type: "NodeUp", Node: "n1"}}},
		"own node": {state.PutNode{Node: state.Node{ID: "n1", Name: "n1", CPU: 2000}}},
		// A removed instance's late report is skipped, as beside the state.
		"gone instance": {state.SetInstanceStatus{ID: "web-9-gone", Status: running}},
	}
	for name, ops := range allowed {
		if _, err := cl.Apply(ctx, encode(t, ops...)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if in, _ := c.st.Instance("web-0-a"); in.State != state.StateRunning || in.PID != 7 {
		t.Errorf("own status not applied: %+v", in.InstanceStatus)
	}
	if n, err := c.st.Node("n1"); err != nil || n.CPU != 2000 {
		t.Errorf("own node = %+v, %v", n, err)
	}

	// A worker's clock does not stamp the state: its command is stamped
	// again by the server (format byte 1, then JSON, as state encodes it).
	old := append([]byte{1}, `{"time":"2001-01-01T00:00:00Z","ops":[{"put_node":{"node":{"id":"n1","name":"n1"}}}]}`...)
	if _, err := cl.Apply(ctx, old); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.st.Node("n1"); n.SeenAt.Year() < 2020 {
		t.Errorf("the worker's clock stamped its node record: seen at %v", n.SeenAt)
	}

	forbidden := map[string][]state.Op{
		"other's status": {state.SetInstanceStatus{ID: "web-1-b", Status: running}},
		"other's event":  {state.AppendEvent{Event: state.Event{Type: "Started", Node: "n2"}}},
		"event naming another node's instance": {
			state.AppendEvent{Event: state.Event{Type: "Started", Node: "n1", Instance: "web-1-b"}}},
		"event about a service, no instance": {state.AppendEvent{Event: state.Event{Type: "Scaled", Node: "n1", Service: "web"}}},
		"event naming the wrong service": {
			state.AppendEvent{Event: state.Event{Type: "Started", Node: "n1", Instance: "web-0-a", Service: "db"}}},
		"other node":     {state.PutNode{Node: state.Node{ID: "n2"}}},
		"service":        {service("evil")},
		"desired":        {state.SetInstanceDesired{ID: "web-1-b", Desired: state.DesiredStop}},
		"mixed with own": {state.SetInstanceStatus{ID: "web-0-a", Status: running}, state.DeleteInstance{ID: "web-1-b"}},
	}
	before := c.st.Index()
	for name, ops := range forbidden {
		_, err := cl.Apply(ctx, encode(t, ops...))
		if !errors.Is(err, errdefs.ErrPermission) {
			t.Errorf("%s: err = %v, want ErrPermission", name, err)
		}
	}
	if c.st.Index() != before {
		t.Errorf("refused writes changed the state: index %d -> %d", before, c.st.Index())
	}
	if in, _ := c.st.Instance("web-1-b"); in.State != state.StatePending || in.Desired != state.DesiredRun {
		t.Errorf("other node's instance changed: %+v", in)
	}

	// The refusal says why, as JSON with a hint.
	status, body, err := cl.do(ctx, http.MethodPost, c.srv.addr, PathApply, encode(t, service("evil")), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eb := decodeError(t, body)
	if status != http.StatusForbidden || eb.Error != CodeForbidden || !strings.Contains(eb.Message, "PutService") || eb.Hint == "" {
		t.Errorf("refusal = %d %+v, want 403 forbidden naming PutService, with a hint", status, eb)
	}
}

func TestWatchBlocksThenWakes(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), service("db"), instance("web-0-a", "web", "n1", 0), instance("db-0-c", "db", "n2", 0))
	cl := c.client(t, RoleWorker, "n1")
	ctx := context.Background()

	first, err := cl.Watch(ctx, "n1", 0, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Instances) != 1 || first.Instances[0].ID != "web-0-a" || len(first.Services) != 1 || first.Services[0].Name != "web" {
		t.Fatalf("watch of n1 = %+v, want web-0-a and service web only", first)
	}

	type result struct {
		resp *WatchResponse
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r, err := cl.Watch(ctx, "n1", first.Index, 10*time.Second, first.Hash)
		done <- result{r, err, time.Since(start)}
	}()
	// A write elsewhere moves the index but not n1's assignment: the watch
	// keeps blocking.
	time.Sleep(150 * time.Millisecond)
	mustApply(t, c.st, state.SetInstanceStatus{ID: "db-0-c", Status: state.InstanceStatus{State: state.StateRunning}})
	select {
	case r := <-done:
		t.Fatalf("watch returned before n1's assignment changed: %+v %v", r.resp, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	idx := mustApply(t, c.st, instance("web-1-d", "web", "n1", 1))
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.resp.Index < idx || len(r.resp.Instances) != 2 || r.resp.Hash == first.Hash {
			t.Errorf("woken watch = index %d, %d instances; want index >= %d and 2 instances", r.resp.Index, len(r.resp.Instances), idx)
		}
		if r.took < 400*time.Millisecond {
			t.Errorf("watch returned after %v, before the write", r.took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not wake on a write to n1's assignment")
	}

	// With nothing new, the watch returns the same content at the wait's end.
	start = time.Now()
	r, err := cl.Watch(ctx, "n1", c.st.Index(), 200*time.Millisecond, "")
	if err != nil || time.Since(start) < 200*time.Millisecond || len(r.Instances) != 2 {
		t.Errorf("idle watch = %+v, %v after %v; want 2 instances after the wait", r, err, time.Since(start))
	}
}

func TestWatchOfAnotherNodeRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	mustApply(t, c.st, service("web"), instance("web-0-a", "web", "n2", 0))
	ctx := context.Background()
	_, err := c.client(t, RoleWorker, "n1").Watch(ctx, "n2", 0, 0, "")
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), `may not watch node "n2"`) {
		t.Errorf("worker n1 watching n2: err = %v, want ErrPermission", err)
	}
	// A server may watch any node.
	r, err := c.client(t, RoleServer, "s2").Watch(ctx, "n2", 0, 0, "")
	if err != nil || len(r.Instances) != 1 {
		t.Errorf("server watching n2 = %+v, %v", r, err)
	}
}

func TestUnauthenticatedAndUnknownRole(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	// No client certificate: only join is open.
	hc := &http.Client{Transport: newTransport(c.ca.joinTLS())}
	defer hc.CloseIdleConnections()
	status, body, err := doRequest(ctx, hc, http.MethodGet, c.srv.addr, PathStatus, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if eb := decodeError(t, body); status != http.StatusUnauthorized || eb.Hint == "" {
		t.Errorf("status without a certificate = %d %+v, want 401 with a hint", status, eb)
	}
	// A Peer check that refuses the certificate refuses the request.
	refusing := startRPC(t, "127.0.0.1:0", c.ca.serverTLS(c.ca.issue(t, RoleServer, "s3")), NewServer(ServerConfig{
		Store: leaderStore{c.st}, Logger: testLogger(t),
		Peer: func(*tls.ConnectionState) (string, string, error) { return "admin", "x", nil },
	}))
	_, err = c.client(t, RoleServer, "s2", refusing.addr).Status(ctx)
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), `role "admin"`) {
		t.Errorf("unknown role: err = %v, want ErrPermission", err)
	}
	// A client that does not trust the server's CA refuses it.
	other := newTestCA(t)
	cl := NewClient([]string{c.srv.addr}, other.clientTLS(other.issue(t, RoleServer, "s9")), testLogger(t))
	defer cl.Close()
	if _, err := cl.Status(ctx); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("status with a foreign CA: err = %v, want a certificate error", err)
	}
}

func TestClientFollowsLeaderRedirect(t *testing.T) {
	t.Parallel()
	leader := newCluster(t)
	// A follower over the same state: it knows the leader's RPC address.
	follower := &testStore{leaderStore: leaderStore{leader.st}, leaderAddr: "raft-of-s1"}
	fsrv := startRPC(t, "127.0.0.1:0", leader.ca.serverTLS(leader.ca.issue(t, RoleServer, "s2")), NewServer(ServerConfig{
		Store: follower, Peer: peerRole, Logger: testLogger(t),
		LeaderRPC: func(id, raftAddr string) string {
			if id == "s1" && raftAddr == "raft-of-s1" {
				return leader.srv.addr
			}
			return ""
		},
	}))
	// A first server that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	cl := leader.client(t, RoleWorker, "n1", dead, fsrv.addr)
	mustApply(t, leader.st, service("web"), instance("web-0-a", "web", "n1", 0))
	resp, err := cl.Apply(context.Background(), encode(t, state.SetInstanceStatus{ID: "web-0-a", Status: state.InstanceStatus{State: state.StateRunning}}))
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := leader.st.Instance("web-0-a"); in.State != state.StateRunning || resp.Index != in.ModifyIndex {
		t.Errorf("after redirect: instance %+v, apply index %d", in, resp.Index)
	}
	if fsrv.hits.Load() != 1 || leader.srv.hits.Load() != 1 {
		t.Errorf("hits: follower %d, leader %d; want 1 each", fsrv.hits.Load(), leader.srv.hits.Load())
	}
	// The client remembers the leader.
	if _, err := cl.Apply(context.Background(), encode(t, state.AppendEvent{Event: state.Event{Type: "X", Node: "n1"}})); err != nil {
		t.Fatal(err)
	}
	if fsrv.hits.Load() != 1 || leader.srv.hits.Load() != 2 {
		t.Errorf("second write: hits follower %d, leader %d; want 1 and 2", fsrv.hits.Load(), leader.srv.hits.Load())
	}
	// ApplyAt starts where it is told (the leader state.Config.Forward names).
	at := leader.client(t, RoleWorker, "n1", dead)
	if _, err := at.ApplyAt(context.Background(), fsrv.addr, encode(t, state.AppendEvent{Event: state.Event{Type: "Y", Node: "n1"}})); err != nil {
		t.Errorf("ApplyAt the follower: %v", err)
	}
	if fsrv.hits.Load() != 2 || leader.srv.hits.Load() != 3 {
		t.Errorf("ApplyAt: hits follower %d, leader %d; want 2 and 3", fsrv.hits.Load(), leader.srv.hits.Load())
	}
	// A follower's status names the leader; reads are served locally.
	fcl := leader.client(t, RoleWorker, "n1", fsrv.addr)
	st, err := fcl.Status(context.Background())
	if err != nil || st.Role != "follower" || st.LeaderAddr != leader.srv.addr {
		t.Errorf("follower status = %+v, %v", st, err)
	}
	// With no leader known, a write fails as unavailable after bounded retries.
	follower.setLeader("")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = fcl.Apply(ctx, encode(t, state.AppendEvent{Event: state.Event{Type: "X", Node: "n1"}}))
	if !errdefs.IsUnavailable(err) || !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("apply with no leader: err = %v, want ErrUnavailable", err)
	}
	t.Logf("gave up after %v", time.Since(start))
}

func TestJoin(t *testing.T) {
	t.Parallel()
	var got []JoinRequest
	c := newCluster(t, func(cfg *ServerConfig) {
		cfg.JoinBurst, cfg.JoinEvery = 2, time.Hour
		cfg.Join = func(_ context.Context, req JoinRequest) (*JoinResponse, error) {
			if req.Token != "gtyj.worker.good" {
				return nil, errdefs.WithHint(fmt.Errorf("join token is unknown: %w", errdefs.ErrPermission), "ask for a new token")
			}
			got = append(got, req)
			return &JoinResponse{Cert: []byte("CERT"), Servers: []string{"10.0.0.1:7434"}}, nil
		}
	})
	ctx := context.Background()
	good := c.ca.joinTLS()

	resp, err := Join(ctx, c.srv.addr, JoinRequest{Token: "gtyj.worker.good", Name: "n1", CSR: []byte{1, 2}}, good)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Cert) != "CERT" || len(got) != 1 || got[0].Name != "n1" || !bytes.Equal(got[0].CSR, []byte{1, 2}) {
		t.Errorf("join = %+v, handler saw %+v", resp, got)
	}
	// The CA pinned by the token must be the server's.
	other := newTestCA(t)
	_, err = Join(ctx, c.srv.addr, JoinRequest{Token: "gtyj.worker.good"}, other.joinTLS())
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "not from the CA the token names") {
		t.Errorf("join with another pinned CA: err = %v", err)
	}
	// That attempt never reached the handler; the second real one does, and
	// the third from this IP is rate-limited.
	if _, err := Join(ctx, c.srv.addr, JoinRequest{Token: "bad"}, good); err == nil || !strings.Contains(err.Error(), "ask for a new token") {
		t.Errorf("bad token: err = %v, want the handler's refusal with its hint", err)
	}
	_, err = Join(ctx, c.srv.addr, JoinRequest{Token: "gtyj.worker.good"}, good)
	if err == nil || !strings.Contains(err.Error(), "too many join attempts") || !strings.Contains(err.Error(), "HTTP 429") {
		t.Errorf("third join: err = %v, want rate-limited", err)
	}
	if len(got) != 1 {
		t.Errorf("handler ran %d times for good tokens, want 1", len(got))
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := newLimiter(2, time.Second)
	now := time.Unix(1000, 0)
	for i := range 2 {
		if _, ok := l.allow("a", now); !ok {
			t.Fatalf("attempt %d refused within the burst", i)
		}
	}
	if wait, ok := l.allow("a", now); ok || wait != time.Second {
		t.Errorf("third = %v %v, want refused for 1s", wait, ok)
	}
	if _, ok := l.allow("b", now); !ok {
		t.Error("another IP is limited by a's attempts")
	}
	if _, ok := l.allow("a", now.Add(time.Second)); !ok {
		t.Error("a token did not come back after the interval")
	}
}

func TestOversizedBodyRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, func(cfg *ServerConfig) {
		cfg.Join = func(context.Context, JoinRequest) (*JoinResponse, error) { return &JoinResponse{}, nil }
	})
	cl := c.client(t, RoleServer, "s2")
	ctx := context.Background()
	big := append(encode(t, service("web")), bytes.Repeat([]byte(" "), MaxApplyBytes)...)
	status, body, err := cl.do(ctx, http.MethodPost, c.srv.addr, PathApply, big, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if eb := decodeError(t, body); status != http.StatusRequestEntityTooLarge || eb.Error != CodeTooLarge {
		t.Errorf("oversized apply = %d %+v, want 413 too_large", status, eb)
	}
	if _, err := c.st.Service("web"); !errdefs.IsNotFound(err) {
		t.Errorf("oversized command was applied: %v", err)
	}
	// Join bodies have their own, smaller limit.
	hc := &http.Client{Transport: newTransport(c.ca.joinTLS())}
	defer hc.CloseIdleConnections()
	status, _, err = doRequest(ctx, hc, http.MethodPost, c.srv.addr, PathJoin, bytes.Repeat([]byte("x"), MaxJoinBytes+1), time.Second)
	if err != nil || status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized join = %d, %v; want 413", status, err)
	}
	// Garbage is invalid.
	status, body, _ = cl.do(ctx, http.MethodPost, c.srv.addr, PathApply, []byte("nonsense"), time.Second)
	if eb := decodeError(t, body); status != http.StatusBadRequest || eb.Error != CodeInvalid {
		t.Errorf("garbage apply = %d %+v, want 400 invalid", status, eb)
	}
}

// staleLeader passed the leadership check but lost it before the append.
type staleLeader struct{ *testStore }

func (staleLeader) IsLeader() bool { return true }

func (s staleLeader) ApplyCommand(context.Context, []byte) (state.Result, error) {
	id, addr := s.Leader()
	return state.Result{}, &state.NotLeaderError{Op: "apply", LeaderID: id, LeaderAddr: addr}
}

func TestLeadershipLostBeforeAppendRedirects(t *testing.T) {
	t.Parallel()
	leader := newCluster(t)
	stale := staleLeader{&testStore{leaderStore: leaderStore{leader.st}, leaderAddr: "raft-of-s1"}}
	srv := startRPC(t, "127.0.0.1:0", leader.ca.serverTLS(leader.ca.issue(t, RoleServer, "s2")), NewServer(ServerConfig{
		Store: stale, Peer: peerRole, Logger: testLogger(t),
		LeaderRPC: func(string, string) string { return leader.srv.addr },
	}))
	cl := leader.client(t, RoleServer, "s3", srv.addr)
	if _, err := cl.Apply(context.Background(), encode(t, service("web"))); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.st.Service("web"); err != nil || srv.hits.Load() != 1 || leader.srv.hits.Load() != 1 {
		t.Errorf("service %v; hits stale %d, leader %d; want the write redirected once", err, srv.hits.Load(), leader.srv.hits.Load())
	}
}
