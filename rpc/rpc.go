// Package rpc is the node-to-node API of a Gantry cluster: HTTPS with mutual
// TLS between servers and workers, on the --rpc-addr port.
//
//	POST /v1/join    no client certificate; a join token and a CSR in, a signed certificate out (rate-limited)
//	POST /v1/apply   a raw state command (state.EncodeCommand); the leader applies it
//	GET  /v1/watch   a blocking query: the instances assigned to a node and their services
//	GET  /v1/status  the leader, the state index and this server's role
//
// A server peer may apply anything; a worker peer only reports on its own
// node (SetInstanceStatus of its instances, AppendEvent about its node,
// PutNode of itself) and watches only its own node. A follower answers an
// apply with 421 and the leader's address; Client follows it.
//
// RemoteStore is the state a `gantry worker` runs from: the last snapshot a
// server sent, cached on disk, so that the worker keeps its containers
// running while no server can be reached (static stability).
//
// Serve the handler on a listener whose TLS config verifies any client
// certificate given but lets a client without one through, for the join
// endpoint: pki.JoinServerTLS. The handler refuses every other endpoint to a
// client that presented no certificate.
package rpc

import (
	"errors"
	"time"

	"github.com/gantry-dev/gantry/state"
)

// Endpoint paths.
const (
	PathJoin   = "/v1/join"
	PathApply  = "/v1/apply"
	PathWatch  = "/v1/watch"
	PathStatus = "/v1/status"
)

// Peer roles, as carried in certificates (spiffe://gantry/<role>/<name>).
const (
	RoleServer = "server"
	RoleWorker = "worker"
)

// Limits.
const (
	// MaxApplyBytes bounds a command sent to /v1/apply.
	MaxApplyBytes = 4 << 20
	// MaxJoinBytes bounds a join request.
	MaxJoinBytes = 64 << 10
	// DefaultWatchWait is how long a watch blocks when the query says nothing.
	DefaultWatchWait = 30 * time.Second
	// MaxWatchWait caps the wait a watch may ask for.
	MaxWatchWait = 5 * time.Minute
)

// Error codes in ErrorBody.Error.
const (
	CodeInvalid         = "invalid"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeNotLeader       = "not_leader"
	CodeUnavailable     = "unavailable"
	CodeTooLarge        = "too_large"
	CodeRateLimited     = "rate_limited"
	CodeInternal        = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error   string `json:"error"` // one of the Code constants
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// Leader is the RPC address of the leader, on a not_leader error when
	// this server knows it.
	Leader string `json:"leader,omitempty"`
}

// ApplyResponse is the body of a successful /v1/apply.
type ApplyResponse struct {
	Index   uint64   `json:"index"`
	Skipped []string `json:"skipped,omitempty"`
}

// Result converts r to the state package's type.
func (r ApplyResponse) Result() state.Result {
	return state.Result{Index: r.Index, Skipped: r.Skipped}
}

// WatchResponse is the body of /v1/watch: what a node must run. Secret values
// are not in it: a service's spec names its secrets, and the worker opens
// them separately.
type WatchResponse struct {
	Node string `json:"node"`
	// Index is the state index the snapshot was read at.
	Index uint64 `json:"index"`
	// Hash identifies the content (instances and services): a watch that
	// passes it back wakes only when the content changes, not on every
	// write anywhere in the cluster.
	Hash      string            `json:"hash"`
	Instances []*state.Instance `json:"instances"`
	Services  []*state.Service  `json:"services"`
}

// StatusResponse is the body of /v1/status.
type StatusResponse struct {
	// Role is "leader" or "follower".
	Role       string `json:"role"`
	LeaderID   string `json:"leader_id,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"` // RPC address
	Index      uint64 `json:"index"`
	// Peers is the Raft configuration (Raft addresses), when
	// ServerConfig.Peers is set.
	Peers []PeerInfo `json:"peers,omitempty"`
}

// PeerInfo is a server of the Raft group (state.Peer's fields).
type PeerInfo struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage,omitempty"`
	Leader   bool   `json:"leader,omitempty"`
}

// ErrNotLeader is wrapped by a Client.Apply error when no attempt reached a
// leader that could take the write, so it was not appended anywhere and is
// safe to send again. A state.Config.Forward built on the client wraps
// state.ErrNotLeader in that case, so that the state retries.
var ErrNotLeader = errors.New("no leader took the write")

// JoinRequest is the body of /v1/join.
type JoinRequest struct {
	// Token is the join token (gtyj.<role>.<id>.<secret>.<ca-hash>).
	Token string `json:"token"`
	// Name is the joining node's name (the certificate's CN).
	Name string `json:"name"`
	// CSR is the DER certificate request for the node's key.
	CSR []byte `json:"csr"`
	// IPs go in the certificate's IP SANs.
	IPs []string `json:"ips,omitempty"`
	// RPCAddr, RaftAddr and GossipAddr are where the node listens.
	RPCAddr    string `json:"rpc_addr,omitempty"`
	RaftAddr   string `json:"raft_addr,omitempty"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// JoinResponse is the body of a successful /v1/join.
type JoinResponse struct {
	Cert      []byte `json:"cert"`       // PEM, signed by the cluster CA
	CA        []byte `json:"ca"`         // PEM of the cluster CA
	GossipKey []byte `json:"gossip_key"` // memberlist key
	// Servers are the RPC addresses of the servers; GossipPeers the
	// memberlist addresses to join.
	Servers     []string `json:"servers,omitempty"`
	GossipPeers []string `json:"gossip_peers,omitempty"`
	// CAKey (PEM) and SecretKey are sent to joining servers only, so any
	// server can sign joins and open secrets.
	CAKey     []byte `json:"ca_key,omitempty"`
	SecretKey []byte `json:"secret_key,omitempty"`
}
