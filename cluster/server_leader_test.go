package cluster

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
)

// serveTLS accepts TLS connections with cert until the test ends,
// completing each handshake (as the Raft transport does) and closing it.
func serveTLS(t *testing.T, caPEM []byte, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerTLS(caPEM, cert, pki.RoleServer))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// Gossip is no proof of being a server (every worker holds the gossip
// key): the leader adds a gossiped server as a Raft voter only when its
// Raft address answers with the cluster's server certificate for its name.
func TestProveServerBeforeAddingVoter(t *testing.T) {
	ca, err := pki.NewCA(testNow(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, csr, err := pki.NewKeyAndCSR("s1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, pki.RoleServer, "s1", []net.IP{net.ParseIP("127.0.0.1")}, pki.DefaultNodeTTL, testNow(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteNodeFiles(tlsDir(dir), certPEM, keyPEM, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	key, _ := membership.GenerateKey()
	if err := writeGossipKey(tlsDir(dir), key); err != nil {
		t.Fatal(err)
	}
	id, err := loadIdentity(dir, pki.RoleServer, "s1")
	if err != nil {
		t.Fatal(err)
	}
	s := &serverNode{id: id}

	s2 := serveTLS(t, ca.CertPEM(), issueTLS(t, ca, pki.RoleServer, "s2"))
	if err := s.proveServer(t.Context(), "s2", s2); err != nil {
		t.Errorf("the real s2: %v", err)
	}
	if err := s.proveServer(t.Context(), "s3", s2); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("s3 claiming s2's Raft address: %v, want refused", err)
	}
	w1 := serveTLS(t, ca.CertPEM(), issueTLS(t, ca, pki.RoleWorker, "w1"))
	if err := s.proveServer(t.Context(), "w1", w1); err == nil {
		t.Error("a worker gossiping as a server was proven a server")
	}
	other, err := pki.NewCA(testNow(t))
	if err != nil {
		t.Fatal(err)
	}
	foreign := serveTLS(t, other.CertPEM(), issueTLS(t, other, pki.RoleServer, "s4"))
	if err := s.proveServer(t.Context(), "s4", foreign); err == nil {
		t.Error("a server of another cluster was proven a server of this one")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if err := s.proveServer(t.Context(), "s5", dead); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("nothing listening: %v, want refused", err)
	}
}

func testNow(*testing.T) time.Time { return time.Now().Add(-time.Minute) }

// A worker (it holds the gossip key) that gossips as a server with the
// leader's Raft address is not where the leader's RPC is looked up.
func TestRPCForBelievesOnlyTheNamedServer(t *testing.T) {
	s, _, _ := joinTestServer(t) // s1: a real store and gossip
	const raftAddr = "10.0.0.1:7435"
	if err := s.ml.UpdateMeta(t.Context(), membership.Meta{Role: membership.RoleServer, RPCAddr: "127.0.0.1:7434", RaftAddr: raftAddr}); err != nil {
		t.Fatal(err)
	}
	evil, err := membership.New(t.Context(), membership.Config{Name: "a-evil", Bind: "127.0.0.1:0", Key: s.id.gossipKey, Logger: slog.New(slog.DiscardHandler),
		Meta: membership.Meta{Role: membership.RoleServer, RPCAddr: "127.0.0.66:7434", RaftAddr: raftAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { evil.Shutdown() })
	if _, err := evil.Join(t.Context(), []string{s.ml.Addr()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.ml.Members()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(s.ml.Members()); n < 2 {
		t.Fatalf("%d members", n)
	}
	for range 20 { // Members' order is not fixed
		if got := s.rpcFor("s1", raftAddr); got != "127.0.0.1:7434" {
			t.Fatalf("leader RPC %q, want s1's", got)
		}
	}
}
