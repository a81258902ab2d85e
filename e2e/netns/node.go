package netns

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the node's network
// namespace, and returns its error. Sockets fn creates belong to the node
// and keep working after fn returns, from any goroutine. fn must not start
// goroutines that create sockets: they would run in the test's namespace.
func (n *Node) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("netns: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer back.Close()
		f, err := os.Open("/run/netns/" + n.NS)
		if err != nil {
			errc <- fmt.Errorf("netns: node %s: %w", n, err)
			runtime.UnlockOSThread()
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", n, err)
			runtime.UnlockOSThread()
			return
		}
		ferr := fn()
		// The thread goes back to the scheduler only in the namespace it
		// came from; if that fails it stays locked and dies with this
		// goroutine.
		if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// DialContext dials from inside the node (addr must be an IP literal and
// port: name resolution would leave the namespace).
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a TCP (or unix) listener inside the node.
func (n *Node) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var lc net.ListenConfig
		var err error
		l, err = lc.Listen(ctx, network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a UDP socket inside the node.
func (n *Node) ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var lc net.ListenConfig
		var err error
		pc, err = lc.ListenPacket(ctx, network, addr)
		return err
	})
	return pc, err
}

// DialTimeout bounds the connects of HTTPTransport: net/http goes on
// dialing after a request gives up, and a connect through a partition
// would otherwise wait for the kernel's SYN retries (minutes).
const DialTimeout = 2 * time.Second

// HTTPTransport returns a transport whose connections start inside the
// node, without keep-alives (so that every request makes a new
// connection, as a test of reachability needs) and with connects bounded
// by DialTimeout. tlsConf may be nil.
func (n *Node) HTTPTransport(tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, DialTimeout)
			defer cancel()
			return n.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   tlsConf,
		DisableKeepAlives: true,
		ForceAttemptHTTP2: false,
	}
}
