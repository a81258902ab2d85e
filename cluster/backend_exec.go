package cluster

import (
	"context"
	"fmt"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/state"
)

// InstanceExec runs commands in instances for exec_instance: the state
// says which service and node an instance belongs to, the local worker
// runs the command in the container.
type InstanceExec struct {
	Store  *state.Store
	Node   string // this node's ID: the worker runs only its own instances
	Worker interface {
		Exec(ctx context.Context, id string, argv []string, o runtime.ExecOptions) (runtime.ExecResult, error)
	}
	// Scrub, when set, gives the scrubber of a service's secret values
	// (nil when it has none): a command can print its environment.
	Scrub func(service string) *Scrubber
}

var _ mcp.Executor = (*InstanceExec)(nil)

// Exec checks that the instance exists, is meant to run and runs on this
// node, then runs the command (or, on a dry run, stops there).
func (e *InstanceExec) Exec(ctx context.Context, req mcp.ExecRequest) (*api.ExecResult, error) {
	in, err := e.Store.Instance(req.Instance)
	if err != nil {
		return nil, err
	}
	res := &api.ExecResult{Instance: in.ID, Service: in.Service, Node: in.Node, Command: req.Command, DryRun: req.DryRun}
	switch {
	case in.Desired != state.DesiredRun:
		return nil, errdefs.WithHint(fmt.Errorf("instance %s of service %s is %s and being stopped, so no command can run in it: %w", in.ID, in.Service, orState(in.State), errdefs.ErrConflict),
			"pick a running instance of the service with get_service")
	case in.State != state.StateRunning && in.State != state.StateUnhealthy:
		return nil, errdefs.WithHint(fmt.Errorf("instance %s of service %s is %s, not running, so no command can run in it: %w", in.ID, in.Service, orState(in.State), errdefs.ErrConflict),
			"pick a running instance with get_service, or see why this one is not running with explain_instance")
	case in.Node != e.Node:
		return nil, errdefs.WithHint(fmt.Errorf("instance %s runs on node %s, and this server runs commands only in instances of its own node %s: %w", in.ID, in.Node, e.Node, errdefs.ErrUnavailable),
			"call exec_instance on the gantry server of that node")
	}
	if req.DryRun {
		return res, nil
	}
	out, err := e.Worker.Exec(ctx, in.ID, req.Command, runtime.ExecOptions{Timeout: req.Timeout, MaxOutput: req.MaxOutput})
	if err != nil {
		if errdefs.IsConflict(err) {
			err = errdefs.WithHint(err, "the instance stopped meanwhile: pick a running instance with get_service")
		}
		return nil, err
	}
	res.ExitCode, res.TimedOut, res.DurationMS = out.ExitCode, out.TimedOut, out.Duration.Milliseconds()
	res.Stdout, res.Stderr = string(out.Stdout), string(out.Stderr)
	if e.Scrub != nil {
		if sc := e.Scrub(in.Service); sc != nil {
			// Output cut at its bound may end inside a value.
			res.Stdout, res.Stderr = sc.Cut(res.Stdout, false, out.StdoutTruncated), sc.Cut(res.Stderr, false, out.StderrTruncated)
		}
	}
	res.StdoutTruncated, res.StderrTruncated = out.StdoutTruncated, out.StderrTruncated
	return res, nil
}

// ServiceOf returns the service of an instance, for policy rules.
func (e *InstanceExec) ServiceOf(_ context.Context, instance string) (string, bool) {
	in, err := e.Store.Instance(instance)
	if err != nil {
		return "", false
	}
	return in.Service, true
}

func orState(s string) string {
	if s == "" {
		return "not started yet"
	}
	return s
}
