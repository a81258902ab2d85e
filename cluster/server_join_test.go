package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/rpc"
	"github.com/gantry-dev/gantry/state"
)

// joinTestServer is a one-server cluster's join handler over a real Raft
// store and real gossip, holding a reusable worker token and a single-use
// one.
func joinTestServer(t *testing.T) (s *serverNode, workerTok, onceTok string) {
	t.Helper()
	ca, err := pki.NewCA(time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.Context(), state.Config{DataDir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := membership.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ml, err := membership.New(t.Context(), membership.Config{Name: "s1", Bind: "127.0.0.1:0", Key: key, Logger: slog.New(slog.DiscardHandler),
		Meta: membership.Meta{Role: membership.RoleServer, RPCAddr: "127.0.0.1:7434", RaftAddr: "127.0.0.1:7435"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	dir := t.TempDir()
	s = &serverNode{o: &ServerOptions{Node: NodeOptions{DataDir: dir, Name: "s1"}}, log: slog.New(slog.DiscardHandler),
		ca: ca, st: st, ml: ml, id: &nodeIdentity{gossipKey: key}}
	for i, maxUses := range []int{0, 1} {
		tok, rec, err := pki.NewJoinToken(pki.RoleWorker, ca.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Apply(t.Context(), state.PutJoinToken{ID: rec.ID, Role: string(rec.Role), SecretHash: rec.SecretHash,
			ExpiresAt: time.Now().Add(time.Hour), MaxUses: maxUses}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			workerTok = tok
		} else {
			onceTok = tok
		}
	}
	return s, workerTok, onceTok
}

func joinReq(t *testing.T, tok, name string) rpc.JoinRequest {
	t.Helper()
	_, csr, err := pki.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	return rpc.JoinRequest{Token: tok, Name: name, CSR: csr, IPs: []string{"10.0.0.9"}}
}

// A join token grants a new node, not another's identity: a worker token
// cannot get a certificate under the name of a running node or of a Raft
// server, and hostile requests are refused without spending the token.
func TestJoinRefusesTakenNamesAndGarbage(t *testing.T) {
	s, tok, once := joinTestServer(t)
	ctx := t.Context()

	// The server's own name: alive in gossip and a Raft server.
	if _, err := s.join(ctx, joinReq(t, tok, "s1")); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "taken") {
		t.Errorf("worker token under the server's name: %v, want a conflict", err)
	}
	resp, err := s.join(ctx, joinReq(t, tok, "w1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.CAKey) != 0 || len(resp.SecretKey) != 0 {
		t.Error("a worker join got the CA key or the secrets key")
	}
	blk, _ := pem.Decode(resp.Cert)
	if blk == nil {
		t.Fatal("no PEM certificate in the join response")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if role, name, err := pki.PeerRole(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); err != nil || role != pki.RoleWorker || name != "w1" {
		t.Errorf("certificate for %s %q (%v), want worker w1", role, name, err)
	}

	// A worker that is cut off (not in gossip) still holds its name while
	// instances are assigned to it.
	if _, err := s.st.Apply(ctx, state.PutInstance{Instance: state.Instance{ID: "web-0-abc", Service: "web", Node: "w9", Desired: state.DesiredRun}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.join(ctx, joinReq(t, tok, "w9")); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "instance") {
		t.Errorf("worker token under a cut-off worker's name: %v, want a conflict", err)
	}

	bad := []struct {
		name string
		req  rpc.JoinRequest
	}{
		{"empty token", rpc.JoinRequest{Name: "w2"}},
		{"garbage token", func() rpc.JoinRequest { r := joinReq(t, "gtyj.worker.\x00\xff", "w2"); return r }()},
		{"huge token", joinReq(t, strings.Repeat("a", 60<<10), "w2")},
		{"wrong CA", joinReq(t, tok[:strings.LastIndex(tok, ".")+1]+strings.Repeat("0", len(tok)-strings.LastIndex(tok, ".")-1), "w2")},
		{"garbage CSR", func() rpc.JoinRequest { r := joinReq(t, once, "w2"); r.CSR = []byte("not a csr"); return r }()},
		{"another name's CSR", func() rpc.JoinRequest { r := joinReq(t, once, "w2"); r.Name = "Bad Name"; return r }()},
		{"bad IP", func() rpc.JoinRequest { r := joinReq(t, once, "w2"); r.IPs = []string{"nope"}; return r }()},
		{"too many IPs", func() rpc.JoinRequest {
			r := joinReq(t, once, "w2")
			r.IPs = make([]string, 1000)
			for i := range r.IPs {
				r.IPs[i] = "10.0.0.1"
			}
			return r
		}()},
		{"worker token relabelled as a server token", joinReq(t, strings.Replace(once, ".worker.", ".server.", 1), "w2")},
		{"a name of 255 characters", func() rpc.JoinRequest { r := joinReq(t, once, "w2"); r.Name = strings.Repeat("a", 255); return r }()},
	}
	for _, c := range bad {
		if _, err := s.join(ctx, c.req); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	// None of the refusals above spent the single-use token.
	rec, _ := pki.ParseJoinToken(once)
	got, err := s.st.JoinToken(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Uses != 0 {
		t.Errorf("refused joins spent %d uses of the single-use token", got.Uses)
	}
	if _, err := s.join(ctx, joinReq(t, once, "w3")); err != nil {
		t.Fatal(err)
	}
	// Replay of a used single-use token.
	if _, err := s.join(ctx, joinReq(t, once, "w4")); err == nil || !strings.Contains(err.Error(), "used up") {
		t.Errorf("single-use token reused: %v, want refused as used up", err)
	}
}

// A node whose name another node holds is told so at once by joinCluster,
// not after --join-timeout of retries that end in "no server answered".
func TestJoinClusterNameTakenEndsAtOnce(t *testing.T) {
	s, tok, _ := joinTestServer(t)
	srv := httptest.NewUnstartedServer(rpc.NewServer(rpc.ServerConfig{Store: s.st, Peer: peerRole, Join: s.join,
		Logger: slog.New(slog.DiscardHandler)}))
	srv.TLS = pki.JoinServerTLS(s.ca.CertPEM(), issueTLS(t, s.ca, pki.RoleServer, "s1"))
	srv.StartTLS()
	defer srv.Close()
	o := &NodeOptions{DataDir: t.TempDir(), Name: "s1", Advertise: "127.0.0.1", Token: tok,
		Join: []string{strings.TrimPrefix(srv.URL, "https://")}, JoinTimeout: time.Minute}
	start := time.Now()
	_, err := joinCluster(t.Context(), o, pki.RoleWorker, "", "", "127.0.0.1:7436", slog.New(slog.DiscardHandler))
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "taken") {
		t.Errorf("join under a running server's name: %v, want a conflict saying the name is taken", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the refusal took %s", d)
	}
	o.Name = "w7"
	if _, err := joinCluster(t.Context(), o, pki.RoleWorker, "", "", "127.0.0.1:7436", slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("join as w7: %v", err)
	}
}
