package membership

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"strconv"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/memberlist"
)

// Node roles carried in Meta.Role.
const (
	RoleServer = "server"
	RoleWorker = "worker"
)

// metaVersion is the first byte of every encoded Meta. A node that reads a
// version it does not know reports the member's meta as unparsable instead of
// guessing; bump it only for changes older nodes cannot ignore (new JSON
// fields are ignored by older decoders and need no bump).
const metaVersion byte = 1

// MaxMetaSize is the largest encoded Meta memberlist carries (its
// MetaMaxSize): the version byte plus the JSON.
const MaxMetaSize = memberlist.MetaMaxSize

// Meta is what a node tells every other node about itself through gossip.
// It is small on purpose: everything else about a node lives in the
// replicated state.
type Meta struct {
	Role     string            `json:"r"`              // RoleServer or RoleWorker
	RPCAddr  string            `json:"rpc,omitempty"`  // host:port of the node RPC API
	RaftAddr string            `json:"raft,omitempty"` // host:port of Raft (servers only)
	CPU      int64             `json:"cpu,omitempty"`  // allocatable CPU in millicores
	Memory   int64             `json:"mem,omitempty"`  // allocatable memory in bytes
	Zone     string            `json:"z,omitempty"`
	Labels   map[string]string `json:"l,omitempty"`
}

func (m Meta) clone() Meta {
	m.Labels = maps.Clone(m.Labels)
	return m
}

// wireMeta is Meta as gossiped, plus the flags this package sets itself.
type wireMeta struct {
	Meta
	// Leaving is set by Leave just before the leave message goes out.
	// memberlist v0.5.4 does not tell its event delegate whether a node
	// left or failed (Node.State is never filled in), so peers read it
	// from here.
	Leaving bool `json:"lv,omitempty"`
}

// Validate checks m and that its encoding fits memberlist's meta limit.
func (m Meta) Validate() error {
	_, err := m.encode(true) // the longer form must fit too
	return err
}

func (m Meta) validateFields() error {
	switch m.Role {
	case RoleServer, RoleWorker:
	case "":
		return metaErr("role is empty", `set Meta.Role to "server" or "worker"`)
	default:
		return metaErr(fmt.Sprintf("role %q is unknown", m.Role), `set Meta.Role to "server" or "worker"`)
	}
	if err := checkHostPort("rpc address", m.RPCAddr); err != nil {
		return err
	}
	if err := checkHostPort("raft address", m.RaftAddr); err != nil {
		return err
	}
	if m.RaftAddr != "" && m.Role != RoleServer {
		return metaErr("raft address set on a "+m.Role, "only servers take part in Raft; leave RaftAddr empty")
	}
	if m.CPU < 0 || m.Memory < 0 {
		return metaErr(fmt.Sprintf("negative resources (cpu %d, memory %d)", m.CPU, m.Memory),
			"give allocatable CPU in millicores and memory in bytes, or 0 for unknown")
	}
	for k := range m.Labels {
		if k == "" {
			return metaErr("a label has an empty key", "remove the label or give it a name")
		}
	}
	return nil
}

func checkHostPort(what, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return metaErr(fmt.Sprintf("%s %q: %v", what, addr, err), "write it as host:port, e.g. 10.0.0.5:7434")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || host == "" {
		return metaErr(fmt.Sprintf("%s %q is not host:port with a port in 1-65535", what, addr),
			"write it as host:port, e.g. 10.0.0.5:7434")
	}
	return nil
}

func metaErr(msg, hint string) error {
	return errdefs.WithHint(fmt.Errorf("node meta: %s: %w", msg, errdefs.ErrInvalid), hint)
}

// encode validates m and returns its wire form: the version byte and compact
// JSON, at most MaxMetaSize bytes.
func (m Meta) encode(leaving bool) ([]byte, error) {
	if err := m.validateFields(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(wireMeta{Meta: m, Leaving: leaving})
	if err != nil {
		return nil, fmt.Errorf("node meta: encode: %w", err)
	}
	b := make([]byte, 0, 1+len(js))
	b = append(b, metaVersion)
	b = append(b, js...)
	if len(b) > MaxMetaSize {
		return nil, metaErr(fmt.Sprintf("encoded size %d bytes is over the %d-byte gossip limit", len(b), MaxMetaSize),
			"use fewer or shorter labels; keep large node facts in the replicated state")
	}
	return b, nil
}

// decodeMeta parses a peer's meta. It never panics on bad input: whatever a
// peer sends, the result is a Meta or an error.
func decodeMeta(b []byte) (Meta, bool, error) {
	var m wireMeta
	if len(b) == 0 {
		return Meta{}, false, fmt.Errorf("node meta: empty (the peer is not a gantry node, or too old): %w", errdefs.ErrInvalid)
	}
	if b[0] != metaVersion {
		return Meta{}, false, fmt.Errorf("node meta: version %d not understood, this node reads version %d (upgrade this node): %w",
			b[0], metaVersion, errdefs.ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	if err := dec.Decode(&m); err != nil {
		return Meta{}, false, fmt.Errorf("node meta: %v: %w", err, errdefs.ErrInvalid)
	}
	return m.Meta, m.Leaving, nil
}
