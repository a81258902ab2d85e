// Package mcptest holds a test double of the cluster behind Gantry's MCP
// API: an in-memory implementation of mcp.Services and mcp.Images for tests
// of the API layer and its clients (the CLI) only. It starts no containers,
// pulls nothing and keeps everything in maps; the real implementation lives
// in package cluster and is tested with real parts.
//
// Conventions that let tests provoke failures: an image whose reference
// contains "crash" makes instances go to backoff (exit code 1), one whose
// reference contains "slow" leaves them starting until Advance; pulling a
// reference containing "missing" fails with errdefs.ErrNotFound; SetPanic
// makes a method panic.
package mcptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
)

var (
	_ mcp.Services = (*Cluster)(nil)
	_ mcp.Images   = (*Cluster)(nil)
)

// Cluster is the in-memory test double. The zero value is not usable: call New.
type Cluster struct {
	mu       sync.Mutex
	services map[string]*service
	images   map[string]api.Image
	logs     map[string][]string // instance ID -> lines
	calls    []string
	panicOn  string
	nextID   int
	now      func() time.Time
	changed  chan struct{} // closed by the rollout helpers (rollout.go)
}

type service struct {
	spec      spec.Service
	version   int
	instances []api.InstanceStatus
	events    []api.Event
	created   time.Time
	updated   time.Time
	prev      spec.Service // the spec of version-1, for RevertRollout
}

// New returns an empty cluster with one node.
func New() *Cluster {
	return &Cluster{
		services: map[string]*service{},
		images:   map[string]api.Image{},
		logs:     map[string][]string{},
		now:      time.Now,
	}
}

// Calls returns the names of the methods called so far, in order.
func (c *Cluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// SetPanic makes the named method (e.g. "Scale") panic when called.
func (c *Cluster) SetPanic(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.panicOn = method
}

// SetLogs sets the log lines that Logs returns for an instance.
func (c *Cluster) SetLogs(instance string, lines []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logs[instance] = lines
}

// enter records a call; the caller holds c.mu.
func (c *Cluster) enter(method string) {
	c.calls = append(c.calls, method)
	if c.panicOn == method {
		panic("mcptest: injected panic in " + method)
	}
}

// Deploy stores the spec, bumps the version when it changed and replaces
// the instances at once.
func (c *Cluster) Deploy(ctx context.Context, svc *spec.Service) (*api.DeployResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("Deploy")
	now := c.now()
	s, ok := c.services[svc.Name]
	res := &api.DeployResult{Service: svc.Name, Desired: svc.Replicas}
	switch {
	case !ok:
		s = &service{spec: *svc, version: 1, created: now, updated: now}
		c.services[svc.Name] = s
		res.Created, res.Changed = true, true
		res.Message = "instances are being created"
	default:
		res.Changes = spec.Changes(&s.spec, svc)
		res.Version = s.version
		switch {
		case len(res.Changes) == 0:
			return res, nil
		case slices.Equal(res.Changes, []string{"replicas"}):
			// Only the count changed: scale, keep the version.
			res.Changed = true
			s.spec.Replicas = svc.Replicas
			c.reconcile(s)
			return res, nil
		}
		res.Changed = true
		s.version++
		s.prev = s.spec
		s.spec = *svc
		s.updated = now
		s.instances = nil // replaced: new instances at the new version
	}
	res.Version = s.version
	s.events = append(s.events, api.Event{Time: now, Type: "Deployed", Message: fmt.Sprintf("version %d", s.version)})
	c.reconcile(s)
	return res, nil
}

// reconcile makes the instance list match the desired replicas.
func (c *Cluster) reconcile(s *service) {
	for len(s.instances) > s.spec.Replicas {
		gone := s.instances[len(s.instances)-1]
		s.instances = s.instances[:len(s.instances)-1]
		s.events = append(s.events, api.Event{Time: c.now(), Type: "Stopped", Instance: gone.ID, Message: "scaled down"})
	}
	for slot := len(s.instances); slot < s.spec.Replicas; slot++ {
		c.nextID++
		// The double's instances start at once and stay up: report them as
		// up for two seconds, past the one-second minimum uptime of readiness.
		started := c.now().Add(-2 * time.Second)
		inst := api.InstanceStatus{
			ID:          fmt.Sprintf("%s-%d-%06x", s.spec.Name, slot, c.nextID),
			Slot:        slot,
			Node:        "node-1",
			State:       "running",
			Healthy:     true, // like the real server: running and passing its check, or running with none
			IP:          fmt.Sprintf("10.88.0.%d", 1+c.nextID%250),
			SpecVersion: s.version,
			StartedAt:   &started,
		}
		for i, p := range s.spec.Ports {
			if inst.Ports == nil {
				inst.Ports = map[string]int{}
			}
			inst.Ports[p.Name] = 30000 + 10*c.nextID + i
		}
		if strings.Contains(s.spec.Image, "slow") { // made ready by Advance
			inst.State, inst.Healthy, inst.Ports, inst.StartedAt = "starting", false, nil, nil
		}
		if strings.Contains(s.spec.Image, "crash") {
			code := 1
			inst.State, inst.Healthy, inst.Restarts = "backoff", false, 3
			inst.ExitCode, inst.Reason, inst.Message = &code, "Error", "exited with code 1; restarting in 8s"
			inst.Ports, inst.StartedAt = nil, nil
		}
		s.instances = append(s.instances, inst)
		s.events = append(s.events, api.Event{Time: started, Type: "Started", Instance: inst.ID, Message: "instance started"})
	}
}

func (c *Cluster) status(s *service) api.ServiceStatus {
	st := api.ServiceStatus{
		Name:      s.spec.Name,
		Image:     s.spec.Image,
		Version:   s.version,
		Desired:   s.spec.Replicas,
		Instances: slices.Clone(s.instances),
		Events:    slices.Clone(s.events),
		CreatedAt: s.created,
		UpdatedAt: s.updated,
	}
	if h := s.spec.Health; h != nil {
		switch {
		case h.HTTP != nil:
			st.Check = "http"
		case h.TCP != nil:
			st.Check = "tcp"
		default:
			st.Check = "exec"
		}
	}
	if st.Instances == nil {
		st.Instances = []api.InstanceStatus{}
	}
	for _, in := range s.instances {
		if in.State == "running" {
			st.Running++
		}
	}
	if data, err := json.Marshal(s.spec); err == nil {
		_ = json.Unmarshal(data, &st.Spec)
	}
	return st
}

func notFound(name string) error {
	return fmt.Errorf("service %q: %w", name, errdefs.ErrNotFound)
}

// ListServices returns every service sorted by name.
func (c *Cluster) ListServices(ctx context.Context) ([]api.ServiceStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("ListServices")
	names := make([]string, 0, len(c.services))
	for n := range c.services {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]api.ServiceStatus, 0, len(names))
	for _, n := range names {
		out = append(out, c.status(c.services[n]))
	}
	return out, nil
}

// GetService returns one service.
func (c *Cluster) GetService(ctx context.Context, name string) (*api.ServiceStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("GetService")
	s, ok := c.services[name]
	if !ok {
		return nil, notFound(name)
	}
	st := c.status(s)
	return &st, nil
}

// Scale sets the desired replicas.
func (c *Cluster) Scale(ctx context.Context, name string, replicas int) (*api.ScaleResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("Scale")
	s, ok := c.services[name]
	if !ok {
		return nil, notFound(name)
	}
	res := &api.ScaleResult{Service: name, Previous: s.spec.Replicas, Desired: replicas}
	s.spec.Replicas = replicas
	s.events = append(s.events, api.Event{Time: c.now(), Type: "Scaled", Message: fmt.Sprintf("from %d to %d", res.Previous, replicas)})
	c.reconcile(s)
	return res, nil
}

// Remove deletes a service.
func (c *Cluster) Remove(ctx context.Context, name string) (*api.RemoveResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("Remove")
	s, ok := c.services[name]
	if !ok {
		return nil, notFound(name)
	}
	delete(c.services, name)
	return &api.RemoveResult{Service: name, Removed: true, Stopped: len(s.instances)}, nil
}

// Logs returns the lines set with SetLogs, or three generated lines per
// instance.
func (c *Cluster) Logs(ctx context.Context, in api.LogsInput) (*api.LogsResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("Logs")
	s, ok := c.services[in.Name]
	if !ok {
		return nil, notFound(in.Name)
	}
	res := &api.LogsResult{Service: in.Name, Instances: []api.LogBlock{}}
	for _, inst := range s.instances {
		if in.Instance != "" && inst.ID != in.Instance {
			continue
		}
		lines, ok := c.logs[inst.ID]
		if !ok {
			lines = []string{"starting " + inst.ID, "listening on :8080", "ready"}
		}
		if in.Tail > 0 && len(lines) > in.Tail {
			lines = lines[len(lines)-in.Tail:]
		}
		res.Instances = append(res.Instances, api.LogBlock{Instance: inst.ID, Lines: slices.Clone(lines)})
	}
	if in.Instance != "" && len(res.Instances) == 0 {
		return nil, fmt.Errorf("instance %q of service %q: %w", in.Instance, in.Name, errdefs.ErrNotFound)
	}
	return res, nil
}

// Nodes returns the single node.
func (c *Cluster) Nodes(ctx context.Context) ([]api.Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("Nodes")
	n := 0
	for _, s := range c.services {
		n += len(s.instances)
	}
	return []api.Node{{ID: "node-1", Name: "node-1", Status: "ready", Addr: "127.0.0.1", CPU: 2000, Memory: 4 << 30, Runtime: "runc 1.1.5", Instances: n}}, nil
}

// ListImages returns the cached images sorted by reference.
func (c *Cluster) ListImages(ctx context.Context) ([]api.Image, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("ListImages")
	out := make([]api.Image, 0, len(c.images))
	for _, img := range c.images {
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// ImportImage "imports" an existing file as image imported/<base>:latest.
func (c *Cluster) ImportImage(ctx context.Context, path string) ([]api.Image, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enter("ImportImage")
	fi, err := os.Stat(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("image archive %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("image archive: %w", err)
	}
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	img := api.Image{Ref: "imported/" + strings.ToLower(base) + ":latest", Digest: fmt.Sprintf("sha256:%064x", fi.Size()), Size: fi.Size(), Layers: 1}
	c.images[img.Ref] = img
	return []api.Image{img}, nil
}

// PullImage reports progress in four steps and caches the image.
func (c *Cluster) PullImage(ctx context.Context, ref string, progress func(done, total int64)) (*api.Image, error) {
	func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.enter("PullImage")
	}()
	if strings.Contains(ref, "missing") {
		return nil, fmt.Errorf("image %s: manifest unknown: %w", ref, errdefs.ErrNotFound)
	}
	const total = 4 << 20
	for done := int64(0); done <= total; done += total / 4 {
		if progress != nil {
			progress(done, total)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(120 * time.Millisecond):
		}
	}
	img := api.Image{Ref: ref, Digest: "sha256:" + strings.Repeat("ab", 32), Size: total, Layers: 2}
	c.mu.Lock()
	c.images[ref] = img
	c.mu.Unlock()
	return &img, nil
}
