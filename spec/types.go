// Package spec holds Gantry's service specification (version 1): its types,
// the YAML/JSON parser that keeps line numbers, validation that reports every
// problem at once, and Kubernetes-style quantity parsing. It does no I/O.
package spec

import "time"

// Service is a service spec as a user writes it (YAML or JSON).
// Field names are the wire names users see in errors.
type Service struct {
	Version   int               `json:"version,omitempty" yaml:"version,omitempty"` // 0 or 1
	Name      string            `json:"name" yaml:"name"`
	Image     string            `json:"image" yaml:"image"`
	Command   []string          `json:"command,omitempty" yaml:"command,omitempty"`
	Args      []string          `json:"args,omitempty" yaml:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Workdir   string            `json:"workdir,omitempty" yaml:"workdir,omitempty"`
	User      string            `json:"user,omitempty" yaml:"user,omitempty"`
	Replicas  int               `json:"replicas" yaml:"replicas"`
	Ports     []Port            `json:"ports,omitempty" yaml:"ports,omitempty"`
	Resources Resources         `json:"resources,omitempty" yaml:"resources,omitempty"`
	Restart   RestartPolicy     `json:"restart,omitempty" yaml:"restart,omitempty"`
	Stop      Stop              `json:"stop,omitempty" yaml:"stop,omitempty"`
	Health    *Health           `json:"health,omitempty" yaml:"health,omitempty"`
	Labels    map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Init runs a minimal init as PID 1 that forwards signals, reaps zombies
	// and passes the command's exit status through (like docker run --init).
	// Default true; false makes the command itself PID 1.
	Init *bool `json:"init,omitempty" yaml:"init,omitempty"`
	// Capabilities added to Gantry's default (empty) set, e.g. NET_BIND_SERVICE.
	CapAdd []string `json:"cap_add,omitempty" yaml:"cap_add,omitempty"`
	// Secrets maps an environment variable name to the name of a secret
	// (gantry secret set NAME) whose value the variable gets when an
	// instance starts. The spec holds only names, never values.
	Secrets map[string]string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	// Disconnect says what happens to instances whose node stops answering.
	Disconnect Disconnect `json:"disconnect,omitzero" yaml:"disconnect,omitempty"`
}

// Disconnect is a service's tolerance of a node that fails its membership
// checks (crashed, powered off, cut off by the network).
type Disconnect struct {
	// ReplaceAfter is how long the instances on a down node stay counted
	// before they are marked lost and replaced on other nodes. Default 0s:
	// replace as soon as the node is down, which is what a stateless
	// service wants. A longer wait suits instances that are costly to
	// move or must never run twice: during a short network cut the old
	// instance may still be running. When the node comes back, its
	// replaced instances are stopped, so no slot ends up with two.
	// Kubernetes calls this tolerationSeconds of the
	// node.kubernetes.io/unreachable taint (default 300s); Nomad calls it
	// disconnect.lost_after (formerly max_client_disconnect).
	ReplaceAfter Duration `json:"replace_after,omitempty" yaml:"replace_after,omitempty"`
}

// Port is a named container port, published on the host.
type Port struct {
	Name     string `json:"name" yaml:"name"`
	Port     int    `json:"port" yaml:"port"`
	HostPort int    `json:"host_port,omitempty" yaml:"host_port,omitempty"` // 0: dynamic
	Protocol string `json:"protocol,omitempty" yaml:"protocol,omitempty"`   // tcp (default) or udp
}

// Resources are limits. Zero means "no limit" except where defaults apply.
type Resources struct {
	// CPU in millicores (250m -> 250, 0.5 -> 500).
	CPU MilliCPU `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	// Memory in bytes (64Mi, 1G).
	Memory Bytes `json:"memory,omitempty" yaml:"memory,omitempty"`
	// Pids is the maximum number of processes.
	Pids int64 `json:"pids,omitempty" yaml:"pids,omitempty"`
}

// MilliCPU is CPU in thousandths of a core.
type MilliCPU int64

// Bytes is a memory size in bytes.
type Bytes int64

// RestartPolicy says when an exited instance is started again.
type RestartPolicy string

// Restart policies.
const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// Stop says how an instance is stopped.
type Stop struct {
	Signal string   `json:"signal,omitempty" yaml:"signal,omitempty"` // default SIGTERM
	Grace  Duration `json:"grace,omitempty" yaml:"grace,omitempty"`   // default 10s
}

// Health is an instance health check: exactly one of HTTP, TCP, Exec.
type Health struct {
	HTTP     *HTTPCheck `json:"http,omitempty" yaml:"http,omitempty"`
	TCP      *TCPCheck  `json:"tcp,omitempty" yaml:"tcp,omitempty"`
	Exec     *ExecCheck `json:"exec,omitempty" yaml:"exec,omitempty"`
	Interval Duration   `json:"interval,omitempty" yaml:"interval,omitempty"` // default 10s
	Timeout  Duration   `json:"timeout,omitempty" yaml:"timeout,omitempty"`   // default 1s
	Failures int        `json:"failures,omitempty" yaml:"failures,omitempty"` // default 3
	// Grace is how long after start failures are not counted. Default 0.
	Grace Duration `json:"grace,omitempty" yaml:"grace,omitempty"`
}

// HTTPCheck succeeds on a 2xx or 3xx answer.
type HTTPCheck struct {
	Port string `json:"port" yaml:"port"` // a port name from Ports, or a number
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
}

// TCPCheck succeeds when a connection opens.
type TCPCheck struct {
	Port string `json:"port" yaml:"port"`
}

// ExecCheck runs a command inside the instance; exit 0 is healthy.
type ExecCheck struct {
	Command []string `json:"command" yaml:"command"`
}

// Duration is a time.Duration that marshals as "10s".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
