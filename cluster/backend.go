package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/logs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// Backend implements the MCP tools' interfaces over the state store, the
// image store and the local worker's log files.
type Backend struct {
	Store   *state.Store
	Images  *image.Store
	LogPath func(instanceID string) string
	// Secrets, when set, enables the secret tools and scrubs secret values
	// from service logs.
	Secrets *Secrets
	// InstanceEnv, when set, returns the values that instance id runs with
	// for the environment variables vars (nil when this node does not run
	// it): the worker's SecretEnv. Scrubbing uses them too, since a value
	// replaced twice since an instance started is no longer in the store.
	InstanceEnv func(id string, vars []string) map[string]string
}

var (
	_ mcp.Services = (*Backend)(nil)
	_ mcp.Images   = (*Backend)(nil)
)

// maxLogBytes bounds one service_logs answer.
const maxLogBytes = 256 << 10

// Deploy creates or updates a service. A change to anything but replicas
// bumps the spec version, which rolls the instances.
func (b *Backend) Deploy(ctx context.Context, svc *spec.Service) (*api.DeployResult, error) {
	if err := svc.Validate(); err != nil {
		return nil, err
	}
	if err := b.checkSecretRefs(svc); err != nil {
		return nil, err
	}
	// Another deploy of the same service may land between the read and the
	// write: the write is conditional (absent for a create, the modify index
	// read for an update), and a lost race reads again, so every caller is
	// told what its own deploy did. Each round lets at least one through.
	for attempt := 0; ; attempt++ {
		res, err := b.deployOnce(ctx, svc)
		if errdefs.IsConflict(err) && attempt < 10 {
			continue
		}
		return res, err
	}
}

func (b *Backend) deployOnce(ctx context.Context, svc *spec.Service) (*api.DeployResult, error) {
	now := time.Now().UTC()
	old, err := b.Store.Service(svc.Name)
	res := &api.DeployResult{Service: svc.Name, Desired: svc.Replicas}
	var rec state.Service
	var expect uint64
	switch {
	case errdefs.IsNotFound(err):
		rec = state.Service{Name: svc.Name, Spec: *svc, Version: 1, CreatedAt: now, UpdatedAt: now}
		res.Created, res.Changed, res.Version = true, true, 1
		res.Message = fmt.Sprintf("service %s created with %d replica(s)", svc.Name, svc.Replicas)
	case err != nil:
		return nil, err
	case old.Removing:
		return nil, removingErr(svc.Name)
	default:
		changes := spec.Changes(&old.Spec, svc)
		res.Changes = changes
		res.Version = old.Version
		if len(changes) == 0 {
			res.Message = "no changes: the stored spec is identical"
			return res, nil
		}
		rec = *old
		rec.Spec = *svc
		rec.UpdatedAt = now
		if !(len(changes) == 1 && changes[0] == "replicas") {
			rec.Version++
		}
		res.Version, res.Changed = rec.Version, true
		expect = old.ModifyIndex
		if rec.Version != old.Version {
			res.Message = fmt.Sprintf("service %s updated to version %d: instances are replaced one at a time", svc.Name, rec.Version)
		} else {
			res.Message = fmt.Sprintf("service %s scaled to %d replica(s)", svc.Name, svc.Replicas)
		}
	}
	ev := state.Event{Time: now, Service: svc.Name, Type: "Deployed", Message: res.Message}
	ops := []state.Op{state.PutService{Service: rec, ExpectModifyIndex: expect}, state.AppendEvent{Event: ev}}
	if res.Created {
		ops = append([]state.Op{state.ServiceAbsent{Name: svc.Name}}, ops...)
	}
	if _, err := b.Store.Apply(ctx, ops...); err != nil {
		return nil, err
	}
	return res, nil
}

// ListServices returns every service with its instances.
func (b *Backend) ListServices(ctx context.Context) ([]api.ServiceStatus, error) {
	svcs, _ := b.Store.Services()
	out := make([]api.ServiceStatus, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, b.status(s, false))
	}
	return out, nil
}

// GetService returns one service with its instances, spec and events.
func (b *Backend) GetService(ctx context.Context, name string) (*api.ServiceStatus, error) {
	s, err := b.Store.Service(name)
	if err != nil {
		return nil, err
	}
	st := b.status(s, true)
	return &st, nil
}

func (b *Backend) status(s *state.Service, detail bool) api.ServiceStatus {
	insts, _ := b.Store.Instances(state.InstanceFilter{Service: s.Name})
	out := api.ServiceStatus{Name: s.Name, Image: s.Spec.Image, Version: s.Version, Desired: s.Spec.Replicas, Removing: s.Removing,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Instances: []api.InstanceStatus{}}
	if s.Removing {
		out.Desired = 0
	}
	if h := s.Spec.Health; h != nil {
		switch {
		case h.HTTP != nil:
			out.Check = "http"
		case h.TCP != nil:
			out.Check = "tcp"
		case h.Exec != nil:
			out.Check = "exec"
		}
	}
	for _, in := range insts {
		if in.Desired == state.DesiredRun && in.State == state.StateRunning && in.Healthy {
			out.Running++
		}
		out.Instances = append(out.Instances, InstanceView(in))
	}
	if detail {
		for _, ev := range b.Store.Events(state.EventFilter{Service: s.Name, Limit: 30}) {
			out.Events = append(out.Events, api.Event{Time: ev.Time, Type: ev.Type, Instance: ev.Instance, Message: ev.Message})
		}
		if raw, err := json.Marshal(s.Spec); err == nil {
			_ = json.Unmarshal(raw, &out.Spec)
		}
	}
	return out
}

// InstanceView converts a stored instance to its wire form.
func InstanceView(in *state.Instance) api.InstanceStatus {
	v := api.InstanceStatus{ID: in.ID, Slot: in.Slot, Node: in.Node, State: in.State, Healthy: in.Healthy,
		Restarts: in.Restarts, Message: in.Message, IP: in.IP, Ports: in.Ports, ImageDigest: in.ImageDigest,
		SpecVersion: in.SpecVersion}
	if in.Desired == state.DesiredStop && in.State != state.StateStopped && in.State != state.StateLost {
		v.State = state.StateStopping
	}
	if e := in.LastExit; e != nil {
		code := e.Code
		v.ExitCode, v.Signal, v.Reason = &code, e.Signal, e.Reason
	}
	if !in.StartedAt.IsZero() {
		t := in.StartedAt
		v.StartedAt = &t
	}
	return v
}

// Scale changes a service's replica count without changing its version.
func (b *Backend) Scale(ctx context.Context, name string, replicas int) (*api.ScaleResult, error) {
	if replicas < 0 || replicas > 1000 {
		return nil, errdefs.WithHint(fmt.Errorf("replicas %d out of range: %w", replicas, errdefs.ErrInvalid), "use 0 to 1000")
	}
	s, err := b.Store.Service(name)
	if err != nil {
		return nil, err
	}
	if s.Removing {
		return nil, removingErr(name)
	}
	res := &api.ScaleResult{Service: name, Previous: s.Spec.Replicas, Desired: replicas}
	if s.Spec.Replicas == replicas {
		return res, nil
	}
	// One op that sets the count inside the FSM: a concurrent change to the
	// service cannot make it fail (the Previous above may be a moment old).
	if _, err := b.Store.Apply(ctx, state.ScaleService{Name: name, Replicas: replicas}); err != nil {
		if errdefs.IsConflict(err) {
			return nil, removingErr(name)
		}
		return nil, err
	}
	return res, nil
}

// Remove marks a service for removal: the controller stops its instances
// and deletes the service once none is left (get_service then answers not
// found). Removing a service that is already being removed is a no-op.
func (b *Backend) Remove(ctx context.Context, name string) (*api.RemoveResult, error) {
	for attempt := 0; ; attempt++ {
		s, err := b.Store.Service(name)
		if err != nil {
			return nil, err
		}
		insts, _ := b.Store.Instances(state.InstanceFilter{Service: name})
		n := 0
		for _, in := range insts {
			if in.State != state.StateStopped {
				n++
			}
		}
		res := &api.RemoveResult{Service: name, Removed: true, Stopped: n}
		if s.Removing {
			return res, nil
		}
		rec := *s
		rec.Removing = true
		ev := state.Event{Time: time.Now().UTC(), Service: name, Type: "Removing",
			Message: fmt.Sprintf("service removal asked: stopping %d instance(s)", n)}
		_, err = b.Store.Apply(ctx, state.PutService{Service: rec, ExpectModifyIndex: s.ModifyIndex}, state.AppendEvent{Event: ev})
		if errdefs.IsConflict(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	}
}

func removingErr(name string) error {
	return errdefs.WithHint(fmt.Errorf("service %q is being removed: %w", name, errdefs.ErrConflict),
		"wait until the removal finishes (gantry rm waits for it), then deploy again")
}

// Logs returns the tail of each instance's log, bounded in size.
func (b *Backend) Logs(ctx context.Context, in api.LogsInput) (*api.LogsResult, error) {
	if in.Since != "" || in.Grep != "" {
		return b.filteredLogs(ctx, in)
	}
	if _, err := b.Store.Service(in.Name); err != nil {
		return nil, err
	}
	tail := in.Tail
	if tail <= 0 {
		tail = 100
	}
	insts, _ := b.Store.Instances(state.InstanceFilter{Service: in.Name})
	res := &api.LogsResult{Service: in.Name, Instances: []api.LogBlock{}}
	scrub := b.SecretScrubber(in.Name)
	budget := maxLogBytes
	found := false
	for _, inst := range insts {
		if in.Instance != "" && inst.ID != in.Instance {
			continue
		}
		found = true
		lines, trunc, err := logs.Tail(b.LogPath(inst.ID), tail, budget)
		if err != nil && !errdefs.IsNotFound(err) {
			lines = []string{fmt.Sprintf("(log unavailable: %v)", err)}
		}
		lines = scrubTail(scrub, lines, trunc, budget)
		for _, l := range lines {
			budget -= len(l) + 1
		}
		res.Truncated = res.Truncated || trunc
		res.Instances = append(res.Instances, api.LogBlock{Instance: inst.ID, Lines: lines})
		if budget <= 0 {
			res.Truncated = true
			break
		}
	}
	if in.Instance != "" && !found {
		return nil, errdefs.WithHint(fmt.Errorf("instance %q of service %q: %w", in.Instance, in.Name, errdefs.ErrNotFound),
			"list instances with get_service")
	}
	sort.Slice(res.Instances, func(i, j int) bool { return res.Instances[i].Instance < res.Instances[j].Instance })
	return res, nil
}

// Nodes lists the cluster's nodes.
func (b *Backend) Nodes(ctx context.Context) ([]api.Node, error) {
	nodes, _ := b.Store.Nodes()
	insts, _ := b.Store.Instances(state.InstanceFilter{})
	count := map[string]int{}
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			count[in.Node]++
		}
	}
	out := make([]api.Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, api.Node{ID: n.ID, Name: n.Name, Status: n.Status, Addr: n.Addr, CPU: n.CPU, Memory: n.Memory,
			Runtime: n.Runtime, Instances: count[n.ID], Labels: n.Labels})
	}
	return out, nil
}

// ListImages lists cached images.
func (b *Backend) ListImages(ctx context.Context) ([]api.Image, error) {
	imgs, err := b.Images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, im := range imgs {
		out = append(out, imageView(im))
	}
	return out, nil
}

// ImportImage loads a docker-save or OCI-layout tarball from the host.
func (b *Backend) ImportImage(ctx context.Context, path string) ([]api.Image, error) {
	imgs, err := b.Images.Import(ctx, path)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, im := range imgs {
		out = append(out, imageView(im))
	}
	return out, nil
}

// PullImage pulls ref into the cache, reporting bytes as they arrive.
func (b *Backend) PullImage(ctx context.Context, ref string, progress func(done, total int64)) (*api.Image, error) {
	var cb func(image.Progress)
	if progress != nil {
		// Progress arrives per layer (never concurrently); report the sum.
		done, total := map[string]int64{}, map[string]int64{}
		cb = func(p image.Progress) {
			if p.Layer != "" {
				done[p.Layer], total[p.Layer] = p.Done, p.Total
			}
			var d, t int64
			for k := range total {
				d, t = d+done[k], t+total[k]
			}
			progress(d, t)
		}
	}
	im, err := b.Images.Pull(ctx, ref, cb)
	if err != nil {
		return nil, err
	}
	v := imageView(im)
	return &v, nil
}

func imageView(im *image.Image) api.Image {
	return api.Image{Ref: im.Ref, Digest: im.Digest, Size: im.Size, Layers: len(im.Layers)}
}
