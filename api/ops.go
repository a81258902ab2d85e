package api

import "time"

// Tool names of the operations tools.
const (
	ToolClusterStatus      = "cluster_status"
	ToolSetNodeEligibility = "set_node_eligibility"
	ToolDrainNode          = "drain_node"
)

// EventsInput is the input of list_events. Empty fields match everything.
type EventsInput struct {
	Service  string `json:"service,omitempty" jsonschema:"only events of this service"`
	Instance string `json:"instance,omitempty" jsonschema:"only events of this instance ID"`
	Type     string `json:"type,omitempty" jsonschema:"only events of this type, e.g. Scheduled, Started, Exited, OOMKilled, Unhealthy, Pending, Deployed"`
	Since    string `json:"since,omitempty" jsonschema:"only events newer than this: a duration back from now such as 10m or 2h, or an RFC 3339 time"`
	Limit    int    `json:"limit,omitempty" jsonschema:"the newest events to return (default 100, at most 1000)"`
}

// EventList is the output of list_events.
type EventList struct {
	Events    []EventRecord `json:"events" jsonschema:"oldest first"`
	Truncated bool          `json:"truncated" jsonschema:"true when more events matched than the limit: older ones were left out"`
}

// EventRecord is one event with everything it concerns.
type EventRecord struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Service  string    `json:"service,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Node     string    `json:"node,omitempty"`
	Message  string    `json:"message"`
}

// ExplainInput is the input of explain_instance.
type ExplainInput struct {
	ID string `json:"id" jsonschema:"an instance ID such as web-0-3f9a2c, or a service name to explain all its instances"`
}

// Explanation is the output of explain_instance.
type Explanation struct {
	Target   string    `json:"target"`
	Kind     string    `json:"kind" jsonschema:"instance or service"`
	Summary  string    `json:"summary" jsonschema:"the answer in plain language"`
	Findings []Finding `json:"findings"`
}

// Finding is one reason, about one instance or the whole service.
type Finding struct {
	Instance string        `json:"instance,omitempty"`
	State    string        `json:"state,omitempty"`
	Problem  bool          `json:"problem" jsonschema:"true when this keeps the instance or service from running"`
	Reason   string        `json:"reason" jsonschema:"what is going on, in plain language"`
	Hint     string        `json:"hint,omitempty" jsonschema:"what to do about it"`
	Events   []EventRecord `json:"events,omitempty" jsonschema:"the recent events it is based on"`
}

// ClusterStatus is the output of cluster_status.
type ClusterStatus struct {
	Index     uint64         `json:"index" jsonschema:"the Raft index of the last applied change"`
	Nodes     []NodeStatus   `json:"nodes"`
	Services  int            `json:"services"`
	Instances map[string]int `json:"instances" jsonschema:"live instances by state (running, pending, backoff, ...)"`
	Desired   int            `json:"desired" jsonschema:"replicas wanted over all services"`
	Running   int            `json:"running" jsonschema:"instances running and healthy"`
}

// NodeStatus is a node with its scheduling state.
type NodeStatus struct {
	Node
	Eligible bool `json:"eligible" jsonschema:"false: the scheduler places no new instances on the node"`
	Draining bool `json:"draining" jsonschema:"true: the node was drained; its instances were stopped to be placed elsewhere"`
}

// NodeEligibilityInput is the input of set_node_eligibility.
type NodeEligibilityInput struct {
	Node     string `json:"node" jsonschema:"the node ID (see list_nodes)"`
	Eligible bool   `json:"eligible" jsonschema:"false: place no new instances on the node (running ones stay); true: place them again and end a drain"`
	DryRun   bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan (pending instances that would be placed) with a plan ID for apply_plan"`
}

// DrainNodeInput is the input of drain_node.
type DrainNodeInput struct {
	Node   string `json:"node" jsonschema:"the node ID (see list_nodes)"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan (instances to stop and where their replacements would go, or that they would stay pending) with a plan ID for apply_plan"`
}

// NodeSchedulingResult is the output of set_node_eligibility and drain_node.
type NodeSchedulingResult struct {
	Node     string `json:"node"`
	Eligible bool   `json:"eligible"`
	Draining bool   `json:"draining"`
	Stopped  int    `json:"stopped" jsonschema:"instances stopped by a drain, to be placed on other nodes (pending when no node can take them)"`
	Message  string `json:"message"`
	Plan     *Plan  `json:"plan,omitempty" jsonschema:"set on a dry run: what the change would do; nothing was changed"`
}
