package state

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/raft"
)

// lockedBuffer collects logs from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestTransportRefusesOtherCA(t *testing.T) {
	ca, rogueCA := newTestCA(t, "cluster CA"), newTestCA(t, "rogue CA")
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	newTrans := func(server, client *tls.Config) (raft.Transport, string) {
		t.Helper()
		tr, closer, err := NewTransport("127.0.0.1:0", "", server, client, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closer.Close() })
		return tr, string(tr.LocalAddr())
	}
	gs, gc := tlsPair(ca, ca.issue(t, "good"))
	good, goodAddr := newTrans(gs, gc)
	other, _ := newTrans(tlsPair(ca, ca.issue(t, "other")))
	// The rogue trusts the cluster CA, so only its own certificate is wrong.
	rs, rc := tlsPair(rogueCA, rogueCA.issue(t, "rogue"))
	rc.RootCAs = ca.pool
	rogue, rogueAddr := newTrans(rs, rc)

	// A server with a certificate from the cluster CA gets through.
	served := make(chan struct{})
	go func() {
		defer close(served)
		select {
		case rpc := <-good.Consumer():
			rpc.Respond(&raft.RequestVoteResponse{Term: 7}, nil)
		case <-time.After(5 * time.Second):
		}
	}()
	var resp raft.RequestVoteResponse
	if err := other.RequestVote("good", raft.ServerAddress(goodAddr), &raft.RequestVoteRequest{Term: 7}, &resp); err != nil || resp.Term != 7 {
		t.Errorf("RequestVote between servers of one CA: %+v, %v", resp, err)
	}
	<-served

	// The rogue's certificate is refused, and nothing reaches raft.
	if err := rogue.RequestVote("good", raft.ServerAddress(goodAddr), &raft.RequestVoteRequest{Term: 8}, &resp); err == nil {
		t.Error("RequestVote from a server of another CA succeeded")
	} else {
		t.Logf("rogue RequestVote: %v", err)
	}
	select {
	case rpc := <-good.Consumer():
		t.Errorf("an RPC from the rogue reached raft: %+v", rpc.Command)
		rpc.Respond(nil, errors.New("no"))
	case <-time.After(200 * time.Millisecond):
	}
	waitFor(t, 5*time.Second, "the refusal is logged", func() bool {
		return strings.Contains(logs.String(), "refused a raft connection")
	})

	// And a cluster server does not talk to a rogue one.
	err := good.RequestVote("rogue", raft.ServerAddress(rogueAddr), &raft.RequestVoteRequest{Term: 9}, &resp)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("RequestVote to a server of another CA: %v, want a certificate error", err)
	}
}

func TestNewTransportRefusesBadSettings(t *testing.T) {
	ca := newTestCA(t, "ca")
	server, client := tlsPair(ca, ca.issue(t, "n"))
	for _, tc := range []struct {
		name, bind, advertise, want string
		server, client              *tls.Config
	}{
		{"unspecified bind, no advertise", "0.0.0.0:0", "", "not routable", server, client},
		{"unspecified advertise", "127.0.0.1:0", "0.0.0.0:7435", "not routable", server, client},
		{"ipv6 unspecified", "127.0.0.1:0", "[::]:7435", "not routable", server, client},
		{"no port", "127.0.0.1:0", "10.0.0.1", "not host:port", server, client},
		{"no TLS", "127.0.0.1:0", "", "TLS", nil, client},
		{"no client certs", "127.0.0.1:0", "", "client certificates", &tls.Config{Certificates: server.Certificates}, client},
		{"client certs not verified", "127.0.0.1:0", "", "client certificates",
			&tls.Config{Certificates: server.Certificates, ClientAuth: tls.RequireAnyClientCert}, client},
	} {
		tr, closer, err := NewTransport(tc.bind, tc.advertise, tc.server, tc.client, nil)
		if err == nil {
			closer.Close()
			t.Errorf("%s: NewTransport succeeded (addr %s)", tc.name, tr.LocalAddr())
			continue
		}
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid mentioning %q", tc.name, err, tc.want)
		}
	}
	// A callback may do the verifying (pki's configs do, for better errors).
	own := server.Clone()
	own.ClientAuth = tls.RequireAnyClientCert
	own.VerifyConnection = func(tls.ConnectionState) error { return nil }
	if _, closer, err := NewTransport("127.0.0.1:0", "", own, client, nil); err != nil {
		t.Errorf("NewTransport with a VerifyConnection callback: %v", err)
	} else {
		closer.Close()
	}
	// A routable advertise address with port 0 takes the bound port.
	tr, closer, err := NewTransport("127.0.0.1:0", "127.0.0.2:0", server, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if addr := string(tr.LocalAddr()); !strings.HasPrefix(addr, "127.0.0.2:") || strings.HasSuffix(addr, ":0") {
		t.Errorf("advertised address %s, want 127.0.0.2 with the bound port", addr)
	}
}
