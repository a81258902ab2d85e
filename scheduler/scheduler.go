// Package scheduler decides which node runs a new instance. It is pure: it
// sees a snapshot of nodes and of what already runs on them, and returns a
// choice with the reason for every node it passed over.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
)

// Node is a placement candidate.
type Node struct {
	ID     string
	Ready  bool
	CPU    int64 // allocatable millicores
	Memory int64 // allocatable bytes
}

// Usage is what already runs on a node.
type Usage struct {
	CPU       int64          // millicores reserved
	Memory    int64          // bytes reserved
	Instances map[string]int // service -> live instances on the node
}

// Request is one instance to place.
type Request struct {
	Service string
	CPU     int64
	Memory  int64
}

// Place picks a node for req. It filters out nodes that are not ready or
// lack room, then prefers the node with the fewest instances of the same
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
	for _, n := range nodes {
		u := usage[n.ID]
		if u == nil {
			u = &Usage{}
		}
		switch {
		case !n.Ready:
			skipped = append(skipped, n.ID+": not ready")
			continue
		case n.CPU > 0 && u.CPU+req.CPU > n.CPU:
			skipped = append(skipped, fmt.Sprintf("%s: cpu %dm of %dm reserved, %dm asked", n.ID, u.CPU, n.CPU, req.CPU))
			continue
		case n.Memory > 0 && u.Memory+req.Memory > n.Memory:
			skipped = append(skipped, fmt.Sprintf("%s: memory %d of %d bytes reserved, %d asked", n.ID, u.Memory, n.Memory, req.Memory))
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
		return "", errdefs.WithHint(fmt.Errorf("no node can run an instance of %q (%s): %w",
			req.Service, strings.Join(skipped, "; "), errdefs.ErrUnavailable),
			"lower the service's resources, scale other services down, or add a node")
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
	u := usage[id]
	if u == nil {
		u = &Usage{}
		usage[id] = u
	}
	u.CPU += req.CPU
	u.Memory += req.Memory
	if u.Instances == nil {
		u.Instances = map[string]int{}
	}
	u.Instances[req.Service]++
	return id, nil
}
