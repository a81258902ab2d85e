package membership

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/memberlist"
)

// Config configures a Membership.
type Config struct {
	// Name is the node name, unique in the cluster. A node that comes back
	// under the same name is the same node.
	Name string
	// Bind is the host:port the gossip listeners bind, TCP and UDP on the
	// same port. Port 0 picks a free port (see Membership.Addr). An empty
	// host binds all addresses.
	Bind string
	// Advertise is the host:port other nodes reach this node at. Empty:
	// the bind host (or, when binding all addresses, the first private IP)
	// and the bound port. Port 0: the bound port.
	Advertise string
	// Key is the cluster gossip key: 16, 24 or 32 bytes selecting AES-128,
	// -192 or -256 (GCM). Every message is encrypted and authenticated with
	// it; nodes with another key cannot join or gossip. Required.
	Key []byte
	// Meta is this node's metadata, gossiped to every member.
	Meta Meta
	// Logger gets memberlist's log lines at their own levels. Nil discards.
	Logger *slog.Logger
	// Profile holds the protocol timings. The zero value is LANProfile().
	Profile Profile
	// EventBuffer is the capacity of the Events channel (default 1024).
	EventBuffer int
}

// Profile holds the SWIM/Lifeguard timings of memberlist.
type Profile struct {
	ProbeInterval           time.Duration // how often each node probes one peer
	ProbeTimeout            time.Duration // wait for a direct ack before indirect probes
	SuspicionMult           int           // suspicion lasts SuspicionMult*ProbeInterval*max(1,log10(n))
	SuspicionMaxTimeoutMult int           // unconfirmed suspicion lasts up to this times longer
	GossipInterval          time.Duration // how often queued gossip is sent
	GossipNodes             int           // peers per gossip round
	RetransmitMult          int           // each message is retransmitted RetransmitMult*log10(n+1) times
	PushPullInterval        time.Duration // full state sync (anti-entropy) with one random peer
	GossipToTheDeadTime     time.Duration // keep gossiping to a dead node so it can refute
	TCPTimeout              time.Duration // push/pull and join connections
}

// LANProfile returns the default timings, tuned for one data center: a node
// that dies is declared failed by its peers in about 2–4 s, where
// memberlist's own LAN defaults take about 5–8 s.
//
// How the numbers add up (n ≤ 10 nodes, so memberlist's log10(n) scale is 1):
//   - ProbeInterval 500ms: each node probes one peer per interval,
//     round-robin, so with a few live peers a dead node is probed within
//     ~0–500ms, and the failed probe ends at the end of its interval
//     (the prober waits out the interval for indirect acks): ~0.5–1s to
//     suspicion.
//   - ProbeTimeout 250ms: a loopback/LAN round trip is well under 1ms; the
//     margin is for a busy 2-core host and GC pauses. Lifeguard's awareness
//     stretches it further when the prober itself is slow, which is what
//     keeps a loaded node from accusing healthy ones.
//   - SuspicionMult 3: a suspect node has 3*500ms = 1.5s to refute (it hears
//     of the suspicion by gossip within ~100–200ms and answers with a higher
//     incarnation). With 3 the Lifeguard confirmation target is 1 (k =
//     SuspicionMult-2): one other peer independently suspecting the node
//     brings the timer down to that 1.5s minimum.
//   - SuspicionMaxTimeoutMult 2: an unconfirmed suspicion (only one peer
//     noticed) lasts up to 3s, bounding the worst case at ~4.5s.
//   - GossipInterval 100ms, GossipNodes 3: the suspect and dead messages
//     (and meta updates) reach every member in a couple of rounds.
//   - PushPullInterval 15s: full-state anti-entropy repairs anything gossip
//     lost; cheap at tens of nodes.
//
// Typical total: ~0.25 + 0.5 + 1.5 + 0.1 ≈ 2.5s; the measured figure is
// logged by TestFailureDetectionTime.
func LANProfile() Profile {
	return Profile{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            250 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          4,
		PushPullInterval:        15 * time.Second,
		GossipToTheDeadTime:     15 * time.Second,
		TCPTimeout:              3 * time.Second,
	}
}

// WANProfile returns memberlist's WAN timings, for nodes spread over
// regions: failure detection takes tens of seconds.
func WANProfile() Profile {
	c := memberlist.DefaultWANConfig()
	return Profile{
		ProbeInterval:           c.ProbeInterval,
		ProbeTimeout:            c.ProbeTimeout,
		SuspicionMult:           c.SuspicionMult,
		SuspicionMaxTimeoutMult: c.SuspicionMaxTimeoutMult,
		GossipInterval:          c.GossipInterval,
		GossipNodes:             c.GossipNodes,
		RetransmitMult:          c.RetransmitMult,
		PushPullInterval:        c.PushPullInterval,
		GossipToTheDeadTime:     c.GossipToTheDeadTime,
		TCPTimeout:              c.TCPTimeout,
	}
}

// GenerateKey returns a new random 32-byte (AES-256) gossip key.
func GenerateKey() ([]byte, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}

// keyHint tells a user how to get a gossip key.
const keyHint = "use the cluster's gossip key (<data-dir>/tls/gossip.key, handed out when a node joins); " +
	"a new cluster gets one at bootstrap, or make one with: head -c 32 /dev/urandom > gossip.key"

// ValidateKey checks that key is a usable gossip key.
func ValidateKey(key []byte) error {
	if len(key) == 0 {
		return errdefs.WithHint(fmt.Errorf("gossip key is empty: %w", errdefs.ErrInvalid), keyHint)
	}
	if err := memberlist.ValidateKey(key); err != nil {
		return errdefs.WithHint(fmt.Errorf("gossip key is %d bytes, want 16, 24 or 32: %w", len(key), errdefs.ErrInvalid), keyHint)
	}
	return nil
}

func (c *Config) validate() error {
	if c.Name == "" {
		return errdefs.WithHint(fmt.Errorf("membership: node name is empty: %w", errdefs.ErrInvalid),
			"give every node a unique --name (the default is the hostname)")
	}
	if err := ValidateKey(c.Key); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if err := c.Meta.Validate(); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if c.Profile == (Profile{}) {
		c.Profile = LANProfile()
	}
	p := c.Profile
	if p.ProbeInterval <= 0 || p.ProbeTimeout <= 0 || p.ProbeTimeout >= p.ProbeInterval ||
		p.SuspicionMult < 1 || p.SuspicionMaxTimeoutMult < 1 || p.GossipInterval <= 0 ||
		p.GossipNodes < 1 || p.RetransmitMult < 1 || p.TCPTimeout <= 0 {
		return errdefs.WithHint(fmt.Errorf("membership: profile %+v is incomplete: %w", p, errdefs.ErrInvalid),
			"start from LANProfile() and change single fields")
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// splitAddr parses host:port; an empty string is ("", 0).
func splitAddr(what, addr string) (string, int, error) {
	if addr == "" {
		return "", 0, nil
	}
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errdefs.WithHint(fmt.Errorf("membership: %s address %q: %v: %w", what, addr, err, errdefs.ErrInvalid),
			"write it as ip:port, e.g. 10.0.0.5:7436")
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errdefs.WithHint(fmt.Errorf("membership: %s address %q: bad port: %w", what, addr, errdefs.ErrInvalid),
			"write it as ip:port, e.g. 10.0.0.5:7436")
	}
	if host != "" && net.ParseIP(host) == nil {
		return "", 0, errdefs.WithHint(fmt.Errorf("membership: %s address %q: host is not an IP address: %w", what, addr, errdefs.ErrInvalid),
			"gossip binds and advertises IP addresses; resolve the name first")
	}
	return host, port, nil
}

// memberlistConfig turns c (validated) into memberlist's config.
func (c *Config) memberlistConfig(d *delegate) (*memberlist.Config, error) {
	bindHost, bindPort, err := splitAddr("bind", c.Bind)
	if err != nil {
		return nil, err
	}
	advHost, advPort, err := splitAddr("advertise", c.Advertise)
	if err != nil {
		return nil, err
	}
	if bindHost == "" {
		bindHost = "0.0.0.0"
	}
	if advHost == "" && !net.ParseIP(bindHost).IsUnspecified() {
		advHost = bindHost
	}
	if advPort == 0 {
		advPort = bindPort // memberlist replaces both with the bound port when bindPort is 0
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.BindAddr, mc.BindPort = bindHost, bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	p := c.Profile
	mc.ProbeInterval, mc.ProbeTimeout = p.ProbeInterval, p.ProbeTimeout
	mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = p.SuspicionMult, p.SuspicionMaxTimeoutMult
	mc.GossipInterval, mc.GossipNodes = p.GossipInterval, p.GossipNodes
	mc.RetransmitMult = p.RetransmitMult
	mc.PushPullInterval = p.PushPullInterval
	mc.GossipToTheDeadTime = p.GossipToTheDeadTime
	mc.TCPTimeout = p.TCPTimeout
	// A dead node's name may be taken over from a new address (a worker
	// that came back with another IP) once peers have stopped gossiping to
	// the old one.
	mc.DeadNodeReclaimTime = p.GossipToTheDeadTime
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	keyring, err := memberlist.NewKeyring(nil, c.Key)
	if err != nil {
		return nil, fmt.Errorf("membership: keyring: %w", err)
	}
	mc.Keyring = keyring
	mc.Delegate = d
	mc.Events = d
	mc.Logger = newStdLogger(c.Logger)
	return mc, nil
}

// ctxTimeout is the time left before ctx's deadline, or def without one.
func ctxTimeout(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if t := time.Until(dl); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return def
}

// isKeyErr reports whether a join error says the two ends have different
// gossip keys (or one has none).
func isKeyErr(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range []string{"no installed keys could decrypt", "remote state is not encrypted",
		"encryption is not configured", "message authentication failed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isConnErr reports whether a memberlist join error is a plain network
// failure (nothing listening, unreachable, timeout) rather than a peer that
// answered and then dropped us.
func isConnErr(msg string) bool {
	for _, s := range []string{"connection refused", "no route to host", "i/o timeout", "network is unreachable",
		"failed to resolve", "host is down", "connection timed out"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
