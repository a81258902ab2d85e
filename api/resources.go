package api

import "time"

// MCP resource URIs and templates. Clients read them with resources/read
// and may subscribe to be told when they change.
const (
	ResourceServices    = "gantry://services"
	ResourceService     = "gantry://services/{name}"
	ResourceServiceSpec = "gantry://services/{name}/spec"
	ResourceNodes       = "gantry://nodes"
	ResourceEvents      = "gantry://events"
)

// ServicesResource is the content of gantry://services.
type ServicesResource struct {
	Services []ServiceSummary `json:"services"`
	// Truncated is true when the list was cut to the size bound; the
	// list_services tool returns every service.
	Truncated bool `json:"truncated,omitempty"`
}

// ServiceSummary is one service in gantry://services.
type ServiceSummary struct {
	Name     string `json:"name"`
	URI      string `json:"uri" jsonschema:"the service's own resource, with its instances and events"`
	Image    string `json:"image"`
	Version  int    `json:"version"`
	Desired  int    `json:"desired"`
	Running  int    `json:"running"`
	Removing bool   `json:"removing,omitempty"`
}

// EventsResource is the content of gantry://events: the most recent
// cluster events, oldest first.
type EventsResource struct {
	Events []ClusterEvent `json:"events"`
	Limit  int            `json:"limit" jsonschema:"at most this many of the newest events are listed"`
}

// ClusterEvent is an event anywhere in the cluster.
type ClusterEvent struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Service  string    `json:"service,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Node     string    `json:"node,omitempty"`
	Type     string    `json:"type"`
	Message  string    `json:"message"`
}
