package pki

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is a TLS listener on loopback that completes each handshake,
// answers "<role>/<name>" of the peer (or "anonymous") and closes, and
// reports handshake errors on errs.
type testServer struct {
	addr string
	errs chan error
}

func serve(t *testing.T, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), errs: make(chan error, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.handle(c.(*tls.Conn))
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return s
}

func (s *testServer) handle(c *tls.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Handshake(); err != nil {
		select {
		case s.errs <- err:
		default:
		}
		return
	}
	cs := c.ConnectionState()
	role, name, err := PeerRole(&cs)
	if err != nil {
		fmt.Fprintf(c, "anonymous\n")
		return
	}
	fmt.Fprintf(c, "%s/%s\n", role, name)
}

// serverErr waits for the server's handshake error.
func (s *testServer) serverErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("server reported no handshake error")
		return nil
	}
}

// call connects with cfg and returns the server's answer and the server's
// certificate serial.
func call(addr string, cfg *tls.Config) (answer, serial string, err error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", err
	}
	cs := c.ConnectionState()
	if cs.Version != tls.VersionTLS13 {
		return "", "", fmt.Errorf("negotiated TLS version %x, want 1.3", cs.Version)
	}
	return strings.TrimSpace(line), cs.PeerCertificates[0].SerialNumber.String(), nil
}

func TestHandshakeRoles(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	s1 := nodeCert(t, ca, RoleServer, "s1")
	s2 := nodeCert(t, ca, RoleServer, "s2")
	w1 := nodeCert(t, ca, RoleWorker, "w1")

	srv := serve(t, ServerTLS(ca.PEM, s1, RoleServer, RoleWorker))
	for _, tc := range []struct {
		cert tls.Certificate
		want string
	}{{w1, "worker/w1"}, {s2, "server/s2"}} {
		got, _, err := call(srv.addr, ClientTLS(ca.PEM, tc.cert, RoleServer))
		if err != nil || got != tc.want {
			t.Errorf("call as %s: %q, %v", tc.want, got, err)
		}
	}

	// A server-only endpoint (Raft) refuses a worker, with a clear error.
	raft := serve(t, ServerTLS(ca.PEM, s1, RoleServer))
	if got, _, err := call(raft.addr, ClientTLS(ca.PEM, s2, RoleServer)); err != nil || got != "server/s2" {
		t.Errorf("server to server-only endpoint: %q, %v", got, err)
	}
	if _, _, err := call(raft.addr, ClientTLS(ca.PEM, w1, RoleServer)); err == nil {
		t.Error("a worker reached a server-only endpoint")
	}
	if err := raft.serverErr(t); err == nil || !strings.Contains(err.Error(), `peer "w1" is a worker, this endpoint needs a server`) {
		t.Errorf("server error = %v", err)
	}

	// A client that wants a worker refuses a server.
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, w1, RoleWorker)); err == nil || !strings.Contains(err.Error(), `peer "s1" is a server, this endpoint needs a worker`) {
		t.Errorf("client wanting a worker: %v", err)
	}
}

func TestWrongCARefused(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t), newCA(t)
	s1 := nodeCert(t, ca, RoleServer, "s1")
	intruder := nodeCert(t, other, RoleWorker, "w9")
	want := fmt.Sprintf("signed by another cluster's CA (CA fingerprint %s, expected %s)", other.Fingerprint(), ca.Fingerprint())

	// Client of another cluster: the server refuses and says why.
	srv := serve(t, ServerTLS(ca.PEM, s1))
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, intruder, RoleServer)); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	if err := srv.serverErr(t); err == nil || !strings.Contains(err.Error(), `client certificate "w9" `+want) || !strings.Contains(err.Error(), "join token") {
		t.Errorf("server error = %v, want %q", err, want)
	}

	// Server of another cluster: the client refuses and says why.
	impostor := serve(t, ServerTLS(other.PEM, nodeCert(t, other, RoleServer, "s1")))
	_, _, err := call(impostor.addr, ClientTLS(ca.PEM, nodeCert(t, ca, RoleWorker, "w1"), RoleServer))
	if err == nil || !strings.Contains(err.Error(), `server certificate "s1" `+want) {
		t.Errorf("client error = %v, want %q", err, want)
	}

	// Without the CA in the chain, the message names the issuer instead.
	bare := intruder
	bare.Certificate = bare.Certificate[:1]
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, bare, RoleServer)); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	if err := srv.serverErr(t); err == nil || !strings.Contains(err.Error(), other.Cert.Subject.CommonName) {
		t.Errorf("server error = %v, want the other CA's name", err)
	}
}

func TestExpiredRefused(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	s1 := nodeCert(t, ca, RoleServer, "s1")
	issued := time.Now().Add(-3 * time.Hour)
	old := nodeCertAt(t, ca, RoleWorker, "w1", time.Hour, issued)

	srv := serve(t, ServerTLS(ca.PEM, s1))
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, old, RoleServer)); err == nil {
		t.Error("an expired certificate was accepted")
	}
	err := srv.serverErr(t)
	at := issued.Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	if err == nil || !strings.Contains(err.Error(), `client certificate "w1" expired at `+at) || !strings.Contains(err.Error(), "rotate it") {
		t.Errorf("server error = %v, want expired at %s with how to rotate", err, at)
	}

	// A client refuses an expired server certificate the same way.
	stale := serve(t, ServerTLS(ca.PEM, nodeCertAt(t, ca, RoleServer, "s2", time.Hour, issued)))
	if _, _, err := call(stale.addr, ClientTLS(ca.PEM, s1, RoleServer)); err == nil || !strings.Contains(err.Error(), `server certificate "s2" expired at`) {
		t.Errorf("client error = %v", err)
	}

	// And one not valid yet (clock skew).
	future := nodeCertAt(t, ca, RoleWorker, "w2", time.Hour, time.Now().Add(time.Hour))
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, future, RoleServer)); err == nil {
		t.Error("a certificate not yet valid was accepted")
	}
	if err := srv.serverErr(t); err == nil || !strings.Contains(err.Error(), "clocks") {
		t.Errorf("server error = %v, want a hint about clocks", err)
	}
}

func TestReloaderRotates(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	w1 := nodeCert(t, ca, RoleWorker, "w1")
	first := nodeCert(t, ca, RoleServer, "s1")
	r := NewReloader(first)
	srv := serve(t, r.ServerTLS(ca.PEM, RoleWorker))

	_, serial1, err := call(srv.addr, ClientTLS(ca.PEM, w1, RoleServer))
	if err != nil || serial1 != first.Leaf.SerialNumber.String() {
		t.Fatalf("before rotation: serial %s, %v", serial1, err)
	}
	second := nodeCert(t, ca, RoleServer, "s1")
	r.Set(second)
	_, serial2, err := call(srv.addr, ClientTLS(ca.PEM, w1, RoleServer))
	if err != nil || serial2 != second.Leaf.SerialNumber.String() {
		t.Fatalf("after rotation: serial %s (first %s), %v", serial2, serial1, err)
	}

	// Client side: a worker's Reloader presents its new certificate.
	seen := make(chan string, 2)
	cfg := ServerTLS(ca.PEM, first, RoleWorker)
	cfg.VerifyConnection = chainVerify(cfg.VerifyConnection, func(cs tls.ConnectionState) {
		seen <- cs.PeerCertificates[0].SerialNumber.String()
	})
	srv2 := serve(t, cfg)
	wr := NewReloader(w1)
	client := wr.ClientTLS(ca.PEM, RoleServer)
	w2 := nodeCert(t, ca, RoleWorker, "w1")
	for _, want := range []tls.Certificate{w1, w2} {
		wr.Set(want)
		if _, _, err := call(srv2.addr, client); err != nil {
			t.Fatal(err)
		}
		if got := <-seen; got != want.Leaf.SerialNumber.String() {
			t.Errorf("server saw client serial %s, want %s", got, want.Leaf.SerialNumber)
		}
	}

	// Reload from files.
	dir := t.TempDir()
	certPEM, keyPEM := issue(t, ca, RoleServer, "s1", time.Hour, time.Now())
	if err := WriteNodeFiles(dir, certPEM, keyPEM, ca.PEM); err != nil {
		t.Fatal(err)
	}
	n, err := r.Reload(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, serial3, err := call(srv.addr, ClientTLS(ca.PEM, w1, RoleServer)); err != nil || serial3 != n.Cert.SerialNumber.String() {
		t.Errorf("after Reload: serial %s, want %s (%v)", serial3, n.Cert.SerialNumber, err)
	}
}

func chainVerify(first func(tls.ConnectionState) error, then func(tls.ConnectionState)) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := first(cs); err != nil {
			return err
		}
		then(cs)
		return nil
	}
}

func TestJoinEndpoint(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t), newCA(t)
	s1 := nodeCert(t, ca, RoleServer, "s1")
	srv := serve(t, JoinServerTLS(ca.PEM, s1))

	// A joining node has no certificate, only the CA fingerprint.
	if got, _, err := call(srv.addr, JoinClientTLS(ca.Fingerprint())); err != nil || got != "anonymous" {
		t.Errorf("join without certificate: %q, %v", got, err)
	}
	// Nodes with certificates are identified on the same listener.
	if got, _, err := call(srv.addr, ClientTLS(ca.PEM, nodeCert(t, ca, RoleWorker, "w1"), RoleServer)); err != nil || got != "worker/w1" {
		t.Errorf("worker on join listener: %q, %v", got, err)
	}
	// A certificate that is presented must verify.
	if _, _, err := call(srv.addr, ClientTLS(ca.PEM, nodeCert(t, other, RoleWorker, "w1"), RoleServer)); err == nil {
		t.Error("a certificate of another CA was accepted on the join listener")
	}
	if err := srv.serverErr(t); err == nil || !strings.Contains(err.Error(), "another cluster's CA") {
		t.Errorf("server error = %v", err)
	}

	// A token of another cluster: the joining node refuses the server
	// before sending anything.
	_, _, err := call(srv.addr, JoinClientTLS(other.Fingerprint()))
	want := fmt.Sprintf("another cluster (CA fingerprint %s, expected %s)", ca.Fingerprint(), other.Fingerprint())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("join with another cluster's fingerprint: %v, want %q", err, want)
	}
	// A server that does not send its CA cannot be checked.
	bare := s1
	bare.Certificate = bare.Certificate[:1]
	srv2 := serve(t, JoinServerTLS(ca.PEM, bare))
	if _, _, err := call(srv2.addr, JoinClientTLS(ca.Fingerprint())); err == nil || !strings.Contains(err.Error(), "sent no CA certificate") {
		t.Errorf("join to a server without its CA in the chain: %v", err)
	}
	// A worker's listener is not a server, even with the right CA.
	wsrv := serve(t, JoinServerTLS(ca.PEM, nodeCert(t, ca, RoleWorker, "w2")))
	if _, _, err := call(wsrv.addr, JoinClientTLS(ca.Fingerprint())); err == nil || !strings.Contains(err.Error(), "is a worker, this endpoint needs a server") {
		t.Errorf("join to a worker: %v", err)
	}
}

func TestVerifyCAPEM(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	if got, err := VerifyCAPEM(ca.PEM, strings.ToUpper(ca.Fingerprint())); err != nil || !got.Equal(ca.Cert) {
		t.Errorf("right fingerprint: %v", err)
	}
	if _, err := VerifyCAPEM(ca.PEM, other.Fingerprint()); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("wrong fingerprint: %v", err)
	}
	if _, err := VerifyCAPEM(ca.PEM, "abc"); err == nil || !strings.Contains(err.Error(), "32 hex") {
		t.Errorf("short fingerprint: %v", err)
	}
	if err := ClientTLS([]byte("junk"), tls.Certificate{}, RoleServer).VerifyConnection(tls.ConnectionState{}); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("config with a bad CA: %v", err)
	}
}
