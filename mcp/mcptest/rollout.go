package mcptest

import (
	"context"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
)

var _ mcp.Rollouts = (*Cluster)(nil)

// Changed returns a channel closed at the next Advance or RevertRollout;
// waiters see other changes when they read again on their own.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// notifyLocked wakes the waiters of Changed; the caller holds c.mu.
func (c *Cluster) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// Advance makes the first instance of a service that is not running
// running and healthy (for images containing "slow"), and reports whether
// there was one.
func (c *Cluster) Advance(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.services[name]
	if !ok {
		return false
	}
	for i := range s.instances {
		if in := &s.instances[i]; in.State != "running" {
			started := c.now().Add(-2 * time.Second) // settled, as in cluster.go
			in.State, in.Healthy, in.StartedAt = "running", true, &started
			c.notifyLocked()
			return true
		}
	}
	return false
}

// RevertRollout removes the service (version 1) or puts back the spec it
// had before its last deploy as a new version.
func (c *Cluster) RevertRollout(ctx context.Context, name string, version int, cause string) (*api.CancelDeployResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("RevertRollout")
	s, ok := c.services[name]
	if !ok {
		return nil, notFound(name)
	}
	if s.version != version {
		return nil, fmt.Errorf("service %q is at version %d, not %d: %w", name, s.version, version, errdefs.ErrConflict)
	}
	defer c.notifyLocked()
	res := &api.CancelDeployResult{Service: name, Cancelled: version}
	if version == 1 {
		delete(c.services, name)
		res.Action, res.Message = api.ActionRemove, cause+": service "+name+" removed"
		return res, nil
	}
	replicas := s.spec.Replicas
	s.spec, s.prev = s.prev, s.spec
	s.spec.Replicas = replicas
	s.version++
	s.updated = c.now()
	s.instances = nil
	s.events = append(s.events, api.Event{Time: s.updated, Type: "DeployCancelled", Message: cause})
	c.reconcile(s)
	res.Action, res.RestoredVersion, res.Version = api.ActionRollback, version-1, s.version
	res.Message = fmt.Sprintf("%s: the spec of version %d is deployed again as version %d", cause, version-1, s.version)
	return res, nil
}
