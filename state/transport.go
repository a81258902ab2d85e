package state

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft transport defaults.
const (
	// transportTimeout bounds each Raft RPC's I/O (InstallSnapshot scales it
	// by the snapshot's size) and each dial, TLS handshake included.
	transportTimeout = 10 * time.Second
	// transportPool is how many idle connections are kept per peer.
	transportPool = 3
	// handshakeTimeout bounds the TLS handshake of an accepted connection,
	// so a peer that connects and says nothing holds no handler forever.
	handshakeTimeout = 10 * time.Second
)

// NewTransport listens on bind (host:port; port 0 picks one) for Raft RPCs
// over mutual TLS and returns the transport to put in Config.Transport, and
// a Closer that stops it: the listener and every connection, accepted or
// dialled, so closing it is also how a test cuts a server off abruptly.
// Close the Store first, then the transport.
//
// advertise is the host:port the other servers dial to reach this one; it
// is this server's address in the Raft configuration. It must be routable:
// 0.0.0.0 and :: are refused. Empty means the bound address (then bind must
// name a host); port 0 means the bound port.
//
// serverTLS authenticates the servers that dial in: it must require a
// client certificate and verify it (RequireAndVerifyClientCert, or
// RequireAnyClientCert with a VerifyConnection or VerifyPeerCertificate
// callback, as pki.ServerTLS does; allow only RoleServer there: workers
// have no business on the Raft port). clientTLS is used to dial the others. Both
// come from the cluster's CA (package pki); the role checks they carry run
// on every connection. A peer whose certificate fails them is logged and
// dropped before it can send a single RPC.
func NewTransport(bind, advertise string, serverTLS, clientTLS *tls.Config, log *slog.Logger) (raft.Transport, io.Closer, error) {
	if serverTLS == nil || clientTLS == nil {
		return nil, nil, fmt.Errorf("raft transport: TLS configs are missing (Raft traffic is mutual TLS only): %w", errdefs.ErrInvalid)
	}
	if !verifiesClients(serverTLS) {
		return nil, nil, fmt.Errorf("raft transport: the server TLS config must require and verify client certificates (got %v): %w",
			serverTLS.ClientAuth, errdefs.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "raft-transport")
	if advertise == "" {
		advertise = bind
	}
	advHost, advPort, err := checkAdvertise(advertise)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, nil, errdefs.WithHint(fmt.Errorf("raft transport: listen on %s: %w", bind, err),
			"is another gantry server using this --raft-addr? pick a free port")
	}
	if advPort == "0" {
		_, advPort, _ = net.SplitHostPort(ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	layer := &streamLayer{
		ln:        ln,
		serverTLS: serverTLS,
		clientTLS: clientTLS,
		advertise: tcpAddr(net.JoinHostPort(advHost, advPort)),
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		conns:     map[net.Conn]struct{}{},
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: transportPool,
		Timeout: transportTimeout,
		// 1 turns pipelined replication off. With raft v1.7.2's default (2)
		// the pipeline's channels are unbuffered, and a follower that
		// answers Success=false (a server that just joined, whose log is
		// behind) can leave the replication goroutine parked forever:
		// entries stop flowing to that follower and Shutdown hangs. The
		// tests here hit it; raft's own measurements (PR #541) show the
		// pipeline gains little at this scale.
		MaxRPCsInFlight: 1,
		Logger:          newHCLogAdapter(log, hclog.Warn).Named("raft-net"),
	})
	log.Debug("raft transport listening", "bind", ln.Addr().String(), "advertise", string(layer.advertise))
	return trans, trans, nil
}

// verifiesClients reports whether c makes every client present a
// certificate that gets verified: by crypto/tls, or by c's own callback
// (package pki verifies in VerifyConnection to give better errors).
func verifiesClients(c *tls.Config) bool {
	switch c.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		return true
	case tls.RequireAnyClientCert:
		return c.VerifyConnection != nil || c.VerifyPeerCertificate != nil
	}
	return false
}

// checkAdvertise splits a host:port that other servers can dial, refusing
// the unspecified addresses.
func checkAdvertise(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", "", errdefs.WithHint(fmt.Errorf("raft advertise address %q is not host:port: %w", addr, errdefs.ErrInvalid),
			"set --advertise to this server's IP and --raft-addr to host:port")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", "", errdefs.WithHint(fmt.Errorf("raft advertise address %q is not routable (other servers cannot dial 0.0.0.0 or ::): %w", addr, errdefs.ErrInvalid),
			"set --advertise to an IP of this server that the other servers can reach")
	}
	return host, port, nil
}

// tcpAddr is the advertised address, which may be a host name.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// streamLayer is raft's StreamLayer over mutual TLS. It keeps every
// connection it hands out so that Close can cut them all: raft's
// NetworkTransport closes only the listener, leaving handlers blocked on
// connections that the other side keeps open.
type streamLayer struct {
	ln        net.Listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	advertise tcpAddr
	log       *slog.Logger
	ctx       context.Context // ends at Close: aborts dials in progress
	cancel    context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// Accept returns the next inbound connection. Its TLS handshake runs on
// the first Read, in the connection's own handler, so a slow peer does not
// hold up the accept loop.
func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	sc := &serverConn{Conn: tls.Server(c, l.serverTLS), log: l.log}
	return l.track(sc)
}

// Dial connects to another server and completes the TLS handshake, both
// within timeout.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = transportTimeout
	}
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: l.clientTLS}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft transport: dial %s: %w", address, err)
	}
	return l.track(c)
}

func (l *streamLayer) track(c net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, layer: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *streamLayer) untrack(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

func (l *streamLayer) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, aborts dials and closes every connection.
func (l *streamLayer) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()

	l.cancel()
	err := l.ln.Close()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
	return err
}

// Addr is the advertised address: raft records it in the configuration.
func (l *streamLayer) Addr() net.Addr { return l.advertise }

// trackedConn leaves its layer's set when closed, and reads as EOF once the
// layer is closed, so that shutting down is not logged as a failed RPC.
type trackedConn struct {
	net.Conn
	layer *streamLayer
	once  sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.layer.isClosed() {
		err = io.EOF
	}
	return n, err
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.layer.untrack(c)
		err = c.Conn.Close()
	})
	return err
}

// serverConn is an accepted TLS connection whose first Read completes the
// handshake under a deadline. A refused peer (no certificate, another CA, a
// role the server TLS config does not allow) is logged here, once, and the
// connection then reads as EOF so that raft does not log it again as a
// garbled RPC.
type serverConn struct {
	*tls.Conn
	log  *slog.Logger
	once sync.Once
	err  error
}

func (c *serverConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			c.err = err
			if !errors.Is(err, net.ErrClosed) {
				c.log.Warn("refused a raft connection: TLS handshake failed",
					"remote", c.RemoteAddr().String(), "err", err)
			}
		}
	})
	if c.err != nil {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}
