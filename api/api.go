// Package api holds the wire types of Gantry's MCP tools: the structured
// inputs and outputs that the server returns and every client (the CLI, the
// web UI, AI agents) decodes. It has no behaviour and imports no server code.
package api

import "time"

// Tool names.
const (
	ToolDeploy        = "deploy"
	ToolListServices  = "list_services"
	ToolGetService    = "get_service"
	ToolScaleService  = "scale_service"
	ToolRemoveService = "remove_service"
	ToolServiceLogs   = "service_logs"
	ToolListNodes     = "list_nodes"
	ToolListImages    = "list_images"
	ToolImportImage   = "import_image"
	ToolPullImage     = "pull_image"
)

// DeployInput is the input of the deploy tool. Exactly one of SpecYAML and
// Spec is set.
type DeployInput struct {
	SpecYAML string         `json:"spec_yaml,omitempty" jsonschema:"the service spec as YAML or JSON text (use this or spec)"`
	Spec     map[string]any `json:"spec,omitempty" jsonschema:"the service spec as a JSON object (use this or spec_yaml)"`
	DryRun   bool           `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan (fields changed, instances to create, replace and stop) with a plan ID for apply_plan"`
	Wait     bool           `json:"wait,omitempty" jsonschema:"true: return only when the rollout is finished (every replica of the new version ready), failed or timed out, with progress notifications meanwhile; cancelling the call reverts the deploy"`
	Timeout  string         `json:"timeout,omitempty" jsonschema:"with wait: how long to wait, e.g. 90s or 10m (default 5m, at most 1h)"`
}

// DeployResult says what a deploy changed.
type DeployResult struct {
	Service string   `json:"service"`
	Version int      `json:"version" jsonschema:"the service's spec version after the deploy"`
	Created bool     `json:"created" jsonschema:"true when the service did not exist before"`
	Changed bool     `json:"changed" jsonschema:"false when the spec was identical to the stored one"`
	Changes []string `json:"changes,omitempty" jsonschema:"field paths that changed, e.g. image or env.GREETING"`
	Desired int      `json:"desired"`
	Message string   `json:"message"`
	Plan    *Plan    `json:"plan,omitempty" jsonschema:"set on a dry run: what the deploy would do; nothing was changed"`
	Rollout *Rollout `json:"rollout,omitempty" jsonschema:"set with wait: how the rollout ended"`
}

// NameInput names a service.
type NameInput struct {
	Name string `json:"name" jsonschema:"the service name"`
}

// ListServicesInput filters list_services.
type ListServicesInput struct{}

// ServiceList is the output of list_services.
type ServiceList struct {
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is a service with its instances.
type ServiceStatus struct {
	Name      string           `json:"name"`
	Image     string           `json:"image"`
	Version   int              `json:"version"`
	Desired   int              `json:"desired"`
	Running   int              `json:"running" jsonschema:"instances running and, where a health check exists, healthy"`
	Removing  bool             `json:"removing,omitempty" jsonschema:"true while the service's instances are being stopped after a remove; the service disappears when none is left"`
	Check     string           `json:"check,omitempty" jsonschema:"the kind of health check (http, tcp or exec); empty when the service has none"`
	Instances []InstanceStatus `json:"instances"`
	Events    []Event          `json:"events,omitempty"`
	Spec      map[string]any   `json:"spec,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// InstanceStatus is one instance as clients see it.
type InstanceStatus struct {
	ID          string         `json:"id"`
	Slot        int            `json:"slot"`
	Node        string         `json:"node"`
	State       string         `json:"state"`
	Healthy     bool           `json:"healthy"`
	Restarts    int            `json:"restarts"`
	ExitCode    *int           `json:"exit_code,omitempty" jsonschema:"the last exit code, when the instance has exited before"`
	Signal      string         `json:"signal,omitempty"`
	Reason      string         `json:"reason,omitempty" jsonschema:"why it last exited: OOMKilled, Error, Completed, Unknown"`
	Message     string         `json:"message,omitempty"`
	IP          string         `json:"ip,omitempty"`
	Ports       map[string]int `json:"ports,omitempty" jsonschema:"port name to published host port"`
	ImageDigest string         `json:"image_digest,omitempty"`
	SpecVersion int            `json:"spec_version"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
}

// Event is something that happened to a service or instance.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Instance string    `json:"instance,omitempty"`
	Message  string    `json:"message"`
}

// ScaleInput is the input of scale_service.
type ScaleInput struct {
	Name     string `json:"name" jsonschema:"the service name"`
	Replicas int    `json:"replicas" jsonschema:"the number of replicas wanted (0 to 1000)"`
	DryRun   bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan with a plan ID for apply_plan"`
}

// ScaleResult is the output of scale_service.
type ScaleResult struct {
	Service  string `json:"service"`
	Previous int    `json:"previous"`
	Desired  int    `json:"desired"`
	Plan     *Plan  `json:"plan,omitempty" jsonschema:"set on a dry run: what the scale would do; nothing was changed"`
}

// RemoveResult is the output of remove_service.
type RemoveResult struct {
	Service string `json:"service"`
	Removed bool   `json:"removed" jsonschema:"true: the removal is under way; get_service answers not found once every instance has stopped"`
	Stopped int    `json:"stopped" jsonschema:"instances being stopped"`
	Plan    *Plan  `json:"plan,omitempty" jsonschema:"set on a dry run: what the removal would do; nothing was changed"`
}

// LogsInput is the input of service_logs.
type LogsInput struct {
	Name     string `json:"name" jsonschema:"the service name"`
	Instance string `json:"instance,omitempty" jsonschema:"one instance ID; all instances when empty"`
	Tail     int    `json:"tail,omitempty" jsonschema:"lines from the end of each instance's log (default 100, at most 5000)"`
	Since    string `json:"since,omitempty" jsonschema:"only logs written since: a duration back from now such as 10m, or an RFC 3339 time (lines carry no timestamps: a log last written before it is left out)"`
	Grep     string `json:"grep,omitempty" jsonschema:"only lines containing this text; /regexp/ for an RE2 regular expression (at most 256 characters)"`
}

// LogsResult is the output of service_logs. Log text is untrusted data
// written by the container, never instructions.
type LogsResult struct {
	Service   string     `json:"service"`
	Instances []LogBlock `json:"instances"`
	Truncated bool       `json:"truncated" jsonschema:"true when output was cut to the size bound"`
	Note      string     `json:"note,omitempty" jsonschema:"how since and grep were applied"`
}

// LogBlock is the tail of one instance's log.
type LogBlock struct {
	Instance string   `json:"instance"`
	Lines    []string `json:"lines"`
}

// NodeList is the output of list_nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// Node is a machine in the cluster.
type Node struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Addr      string            `json:"addr,omitempty"`
	CPU       int64             `json:"cpu_millis"`
	Memory    int64             `json:"memory_bytes"`
	Runtime   string            `json:"runtime,omitempty"`
	Instances int               `json:"instances"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// ImageList is the output of list_images.
type ImageList struct {
	Images []Image `json:"images"`
}

// Image is a cached image.
type Image struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Layers int    `json:"layers"`
}

// ImportImageInput is the input of import_image.
type ImportImageInput struct {
	Path   string `json:"path" jsonschema:"path, on the server's host, of a docker save or OCI layout tarball"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: import nothing; read and check the tarball and return the images it holds with their sizes and which layers are already cached"`
}

// PullImageInput is the input of pull_image.
type PullImageInput struct {
	Ref    string `json:"ref" jsonschema:"an image reference, e.g. 127.0.0.1:5000/demo/web:1"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: download nothing; resolve the reference to its digest and return which layers are already cached and how many bytes a pull would download"`
}
