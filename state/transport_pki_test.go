package state

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/pki"
	"github.com/hashicorp/raft"
)

// The transport with the TLS configs the servers really use (package pki):
// servers of the cluster talk, a worker's certificate is refused on the Raft
// port, and so is a server of another cluster.
func TestTransportWithPKIConfigs(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(ca *pki.CA, role pki.Role, name string) (server, client *tls.Config) {
		t.Helper()
		keyPEM, csr, err := pki.NewKeyAndCSR(name)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.Issue(csr, role, name, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := pki.KeyPair(certPEM, keyPEM, ca.PEM)
		if err != nil {
			t.Fatal(err)
		}
		return pki.ServerTLS(ca.PEM, pair, pki.RoleServer), pki.ClientTLS(ca.PEM, pair, pki.RoleServer)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	open := func(server, client *tls.Config) (raft.Transport, raft.ServerAddress) {
		t.Helper()
		tr, closer, err := NewTransport("127.0.0.1:0", "", server, client, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closer.Close() })
		return tr, tr.LocalAddr()
	}
	s1, addr1 := open(cert(ca, pki.RoleServer, "s1"))
	s2, _ := open(cert(ca, pki.RoleServer, "s2"))
	worker, _ := open(cert(ca, pki.RoleWorker, "w1"))
	stranger, strangerAddr := open(cert(other, pki.RoleServer, "s9"))

	served := make(chan struct{})
	go func() {
		defer close(served)
		select {
		case rpc := <-s1.Consumer():
			rpc.Respond(&raft.RequestVoteResponse{Term: 3}, nil)
		case <-time.After(5 * time.Second):
		}
	}()
	var resp raft.RequestVoteResponse
	if err := s2.RequestVote("s1", addr1, &raft.RequestVoteRequest{Term: 3}, &resp); err != nil || resp.Term != 3 {
		t.Errorf("server to server: %+v, %v", resp, err)
	}
	<-served

	for name, tr := range map[string]raft.Transport{"worker": worker, "server of another cluster": stranger} {
		if err := tr.RequestVote("s1", addr1, &raft.RequestVoteRequest{Term: 4}, &resp); err == nil {
			t.Errorf("a %s reached the Raft port", name)
		}
	}
	select {
	case rpc := <-s1.Consumer():
		t.Errorf("a refused peer's RPC reached raft: %+v", rpc.Command)
		rpc.Respond(nil, nil)
	case <-time.After(200 * time.Millisecond):
	}
	waitFor(t, 5*time.Second, "both refusals logged", func() bool {
		return strings.Count(logs.String(), "refused a raft connection") >= 2
	})
	if err := s1.RequestVote("s9", strangerAddr, &raft.RequestVoteRequest{Term: 5}, &resp); err == nil {
		t.Error("a server dialled a server of another cluster")
	} else {
		t.Logf("dialling another cluster: %v", err)
	}
}
