package worker

import (
	"context"
	"fmt"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/state"
)

// Execer is the optional part of a Runtime that runs commands in running
// containers (runtime.Runtime implements it). It is separate from Runtime
// so that runtimes without it still supervise instances.
type Execer interface {
	ExecProcess(ctx context.Context, id string, argv []string, o runtime.ExecOptions) (runtime.ExecResult, error)
}

var _ Execer = (*runtime.Runtime)(nil)

// Exec runs argv in the container of instance id, which this worker must
// supervise and whose process must be up (running or unhealthy). The
// container's ID is the instance ID. An instance this node does not run is
// errdefs.ErrNotFound; one that is not up is errdefs.ErrConflict naming
// its state.
func (w *Worker) Exec(ctx context.Context, id string, argv []string, o runtime.ExecOptions) (runtime.ExecResult, error) {
	w.mu.Lock()
	sup := w.sups[id]
	w.mu.Unlock()
	if sup == nil {
		return runtime.ExecResult{}, fmt.Errorf("instance %s does not run on node %s: %w", id, w.cfg.NodeID, errdefs.ErrNotFound)
	}
	sup.mu.Lock()
	st, desired := sup.status.State, sup.desired
	sup.mu.Unlock()
	if desired != state.DesiredRun {
		return runtime.ExecResult{}, fmt.Errorf("instance %s is being stopped (state %s), not running: %w", id, st, errdefs.ErrConflict)
	}
	if st != state.StateRunning && st != state.StateUnhealthy {
		return runtime.ExecResult{}, fmt.Errorf("instance %s is %s, not running: %w", id, orDefault(st, "not started"), errdefs.ErrConflict)
	}
	ex, ok := w.cfg.Runtime.(Execer)
	if !ok {
		return runtime.ExecResult{}, fmt.Errorf("the container runtime of node %s cannot run commands in containers: %w", w.cfg.NodeID, errdefs.ErrUnavailable)
	}
	res, err := ex.ExecProcess(ctx, id, argv, o)
	if err != nil {
		return res, fmt.Errorf("instance %s: %w", id, err)
	}
	w.log.Info("command run in instance", "instance", id, "service", sup.svc, "program", argv[0], "args", len(argv)-1,
		"exit_code", res.ExitCode, "timed_out", res.TimedOut, "duration", res.Duration)
	return res, nil
}
