// Package scheduler decides which node runs a new instance. It is pure: it
// sees a snapshot of nodes and of what already runs on them, and returns a
// choice with the reason for every node it passed over.
package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Node is a placement candidate.
type Node struct {
	ID    string
	Ready bool
	// Unschedulable, when set, says why the node takes no new instances
	// although it may be ready: "draining" or "ineligible".
	Unschedulable string
	CPU           int64 // allocatable millicores
	Memory        int64 // allocatable bytes
	// DownSince is when a node that is not ready went down (failed its
	// membership checks); zero for a node that is up. It names the
	// failure in placement errors, and the controller's disconnect
	// tolerance runs from it.
	DownSince time.Time
}

// Usage is what already runs on a node.
type Usage struct {
	CPU       int64          // millicores reserved
	Memory    int64          // bytes reserved
	Instances map[string]int // service -> live instances on the node
	// HostPorts are the fixed host ports held on the node: PortKey ->
	// the service whose instance holds it. A fixed host port is a
	// per-node resource: two instances cannot publish the same one.
	HostPorts map[string]string
}

// Request is one instance to place.
type Request struct {
	Service string
	CPU     int64
	Memory  int64
	// HostPorts are the fixed host ports the instance publishes, as
	// PortKey values; dynamic ports (host_port 0) are not listed.
	HostPorts []string
}

// PortKey names a fixed host port as the scheduler tracks it: "8080/tcp".
func PortKey(port int, proto string) string {
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%d/%s", port, proto)
}

// Hold records in usage that an instance of req runs on node, as Place
// does for the node it picks.
func Hold(usage map[string]*Usage, node string, req Request) {
	u := usage[node]
	if u == nil {
		u = &Usage{}
		usage[node] = u
	}
	u.CPU += req.CPU
	u.Memory += req.Memory
	if u.Instances == nil {
		u.Instances = map[string]int{}
	}
	u.Instances[req.Service]++
	HoldPorts(usage, node, req.Service, req.HostPorts)
}

// HoldPorts records only that an instance of service holds the fixed host
// ports keys on node: one being stopped keeps its ports until it is gone.
func HoldPorts(usage map[string]*Usage, node, service string, keys []string) {
	if len(keys) == 0 {
		return
	}
	u := usage[node]
	if u == nil {
		u = &Usage{}
		usage[node] = u
	}
	if u.HostPorts == nil {
		u.HostPorts = map[string]string{}
	}
	for _, k := range keys {
		u.HostPorts[k] = service
	}
}

// ReleasePorts undoes HoldPorts.
func ReleasePorts(usage map[string]*Usage, node, service string, keys []string) {
	if u := usage[node]; u != nil {
		for _, k := range keys {
			if u.HostPorts[k] == service {
				delete(u.HostPorts, k)
			}
		}
	}
}

// Release undoes Hold: an instance of req on node has gone.
func Release(usage map[string]*Usage, node string, req Request) {
	u := usage[node]
	if u == nil {
		return
	}
	u.CPU = max(u.CPU-req.CPU, 0)
	u.Memory = max(u.Memory-req.Memory, 0)
	if u.Instances[req.Service] > 0 {
		u.Instances[req.Service]--
	}
	ReleasePorts(usage, node, req.Service, req.HostPorts)
}

// portTaken returns the first of req's fixed host ports that u holds.
func portTaken(u *Usage, req Request) (string, string, bool) {
	for _, k := range req.HostPorts {
		if holder, ok := u.HostPorts[k]; ok {
			return k, holder, true
		}
	}
	return "", "", false
}

// Place picks a node for req. It filters out nodes that are not ready,
// lack room or already hold one of req's fixed host ports, then prefers the node with the fewest instances of the same
// service (spread, for availability) and among those the fullest node that
// still fits (bin-packing, so that whole nodes stay free for big requests).
// usage is updated with the placement so a caller can place several
// instances in a row.
func Place(nodes []Node, usage map[string]*Usage, req Request) (string, error) {
	type cand struct {
		id     string
		spread int
		free   int64 // weighted free capacity after placement; lower is fuller
	}
	var cands []cand
	var skipped []string
	portConflict := false
	marked := 0 // nodes skipped only for their scheduling mark
	for _, n := range nodes {
		u := usage[n.ID]
		if u == nil {
			u = &Usage{}
		}
		switch {
		case !n.Ready && !n.DownSince.IsZero():
			skipped = append(skipped, n.ID+": down since "+n.DownSince.UTC().Format(time.RFC3339))
			continue
		case !n.Ready:
			skipped = append(skipped, n.ID+": not ready")
			continue
		case n.Unschedulable != "":
			skipped = append(skipped, n.ID+": "+n.Unschedulable+", takes no new instances")
			marked++
			continue
		case n.CPU > 0 && u.CPU+req.CPU > n.CPU:
			skipped = append(skipped, fmt.Sprintf("%s: cpu %dm of %dm reserved, %dm asked", n.ID, u.CPU, n.CPU, req.CPU))
			continue
		case n.Memory > 0 && u.Memory+req.Memory > n.Memory:
			skipped = append(skipped, fmt.Sprintf("%s: memory %s of %s reserved, %s asked", n.ID, bytesIEC(u.Memory), bytesIEC(n.Memory), bytesIEC(req.Memory)))
			continue
		}
		if k, holder, ok := portTaken(u, req); ok {
			skipped = append(skipped, fmt.Sprintf("%s: host port %s is already held by an instance of %q", n.ID, k, holder))
			portConflict = true
			continue
		}
		var free int64
		if n.CPU > 0 {
			free += (n.CPU - u.CPU - req.CPU) * 1000 / n.CPU
		}
		if n.Memory > 0 {
			free += (n.Memory - u.Memory - req.Memory) * 1000 / n.Memory
		}
		cands = append(cands, cand{id: n.ID, spread: u.Instances[req.Service], free: free})
	}
	if len(cands) == 0 {
		if len(nodes) == 0 {
			return "", fmt.Errorf("no nodes in the cluster: %w", errdefs.ErrUnavailable)
		}
		hint := "lower the service's resources, scale other services down, or add a node"
		if portConflict {
			hint = "a host port is published by one instance per node: use no more replicas than nodes, pick a host_port no other instance publishes (dynamic ports come from gantry dev --port-range), leave host_port out to get a dynamic port, or add a node"
		}
		if marked == len(nodes) {
			hint = "make a node eligible again (gantry eligible NODE true, or set_node_eligibility), or add a node"
		}
		return "", errdefs.WithHint(fmt.Errorf("no node can run an instance of %q (%s): %w",
			req.Service, strings.Join(skipped, "; "), errdefs.ErrUnavailable), hint)
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.spread != b.spread {
			return a.spread < b.spread
		}
		if a.free != b.free {
			return a.free < b.free
		}
		return a.id < b.id
	})
	id := cands[0].id
	Hold(usage, id, req)
	return id, nil
}

// bytesIEC renders n bytes for people, as specs write memory: 512 B,
// 64 MiB, 23.5 GiB.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
