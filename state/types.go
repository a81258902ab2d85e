package state

import (
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Service is a stored service: the spec the user applied plus bookkeeping.
type Service struct {
	Name    string       `json:"name"`
	Spec    spec.Service `json:"spec"`
	Version int          `json:"version"` // bumped on every spec change (not on scale)
	// Removing is set by a remove: the controller stops every instance and
	// deletes the record once none is left, so a client can wait for it.
	Removing bool `json:"removing,omitempty"`
	// Index fields are Raft log indexes (optimistic concurrency, change detection).
	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Desired states of an instance.
const (
	DesiredRun  = "run"
	DesiredStop = "stop" // stop, then the record is removed by the controller
)

// Observed states of an instance.
const (
	StatePending   = "pending"   // placed, not yet started
	StateStarting  = "starting"  // pulling image / creating container
	StateRunning   = "running"   // process up (and healthy, when a check exists)
	StateUnhealthy = "unhealthy" // process up, check failing or not yet passed
	StateExited    = "exited"    // process gone; may be restarted per policy
	StateBackoff   = "backoff"   // waiting to restart after an exit
	StateCrashLoop = "crashloop" // waiting to restart after several quick failures in a row
	StateFailed    = "failed"    // will not be restarted (policy never / start error)
	StateStopping  = "stopping"
	StateStopped   = "stopped"
	// StateLost is set by the controller, not a worker: the instance's node
	// was down for longer than the service's disconnect.replace_after, so
	// its desired state became stop and its slot was given to a replacement
	// on another node. The record stays until the node is back and its
	// worker reports the container stopped (or the node stays away for
	// controller.ForgetLostAfter).
	StateLost = "lost"
)

// Exit is how an instance's process ended.
type Exit struct {
	Code   int       `json:"code"`             // 128+signal when killed by a signal
	Signal string    `json:"signal,omitempty"` // e.g. SIGKILL
	Reason string    `json:"reason,omitempty"` // OOMKilled, Error, Completed, Killed, Unknown
	At     time.Time `json:"at"`
}

// Instance is one replica of a service, placed on a node.
type Instance struct {
	ID          string `json:"id"` // e.g. web-0-3f9a2c
	Service     string `json:"service"`
	Slot        int    `json:"slot"`         // replica index, unique per service among live instances
	SpecVersion int    `json:"spec_version"` // Service.Version this instance runs
	Node        string `json:"node"`
	Desired     string `json:"desired"` // DesiredRun or DesiredStop

	// Observed, written only by the node that runs it.
	InstanceStatus

	CreateIndex uint64    `json:"create_index"`
	ModifyIndex uint64    `json:"modify_index"`
	CreatedAt   time.Time `json:"created_at"`
}

// InstanceStatus is what the node running an instance observes. It is
// written separately from the desired fields so the controller and the
// worker never overwrite each other's updates.
type InstanceStatus struct {
	State       string         `json:"state"`
	Message     string         `json:"message,omitempty"`
	Restarts    int            `json:"restarts"`
	LastExit    *Exit          `json:"last_exit,omitempty"`
	IP          string         `json:"ip,omitempty"`
	Ports       map[string]int `json:"ports,omitempty"` // port name -> host port
	ImageDigest string         `json:"image_digest,omitempty"`
	PID         int            `json:"pid,omitempty"`
	Healthy     bool           `json:"healthy"`
	StartedAt   time.Time      `json:"started_at,omitempty"`
	NextStart   time.Time      `json:"next_start,omitempty"` // when in backoff
	// Failures counts quick failures in a row; the backoff doubles with
	// each, and it survives a worker restart so a crash loop stays slow.
	Failures int `json:"failures,omitempty"`
}

// Node statuses.
const (
	NodeReady = "ready"
	NodeDown  = "down" // failed its membership checks; see Node.DownSince
)

// Node is a machine that runs instances.
type Node struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Addr     string            `json:"addr,omitempty"`
	Status   string            `json:"status"` // ready, down
	CPU      int64             `json:"cpu_millis"`
	Memory   int64             `json:"memory_bytes"`
	Labels   map[string]string `json:"labels,omitempty"`
	Runtime  string            `json:"runtime,omitempty"` // e.g. "runc 1.1.5"
	JoinedAt time.Time         `json:"joined_at"`
	SeenAt   time.Time         `json:"seen_at"`
	// DownSince is when the node was marked down (zero while it is ready):
	// the clock from which a service's disconnect tolerance runs. The FSM
	// keeps it across repeated down writes and clears it when the node is
	// ready again.
	DownSince time.Time `json:"down_since,omitzero"`

	ModifyIndex uint64 `json:"modify_index"`
}

// Event is something that happened to a service or instance.
type Event struct {
	Seq      uint64    `json:"seq"` // Raft index that recorded it
	Time     time.Time `json:"time"`
	Service  string    `json:"service,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Node     string    `json:"node,omitempty"`
	Type     string    `json:"type"` // e.g. Deployed, Scaled, Started, Exited, OOMKilled, Unhealthy, Restarting, Removed
	Message  string    `json:"message"`
}
