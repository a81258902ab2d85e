package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/state"
)

// Exec refuses instances this node does not supervise and instances whose
// process is not up, naming their state, before reaching the runtime.
func TestExecRefusesInstancesNotUp(t *testing.T) {
	w := &Worker{cfg: Config{NodeID: "n1"}, log: slog.New(slog.DiscardHandler), sups: map[string]*supervisor{}}
	add := func(id, st, desired string) {
		w.sups[id] = &supervisor{w: w, id: id, svc: "web", desired: desired, status: state.InstanceStatus{State: st}}
	}
	add("web-0-a", state.StateBackoff, state.DesiredRun)
	add("web-1-b", state.StateRunning, state.DesiredStop)
	add("web-2-c", "", state.DesiredRun)
	ctx := context.Background()
	for _, c := range []struct {
		id, want string
		cat      error
	}{
		{"web-9-z", "does not run on node n1", errdefs.ErrNotFound},
		{"web-0-a", "is backoff, not running", errdefs.ErrConflict},
		{"web-1-b", "being stopped", errdefs.ErrConflict},
		{"web-2-c", "not started", errdefs.ErrConflict},
	} {
		_, err := w.Exec(ctx, c.id, []string{"true"}, runtime.ExecOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, c.cat) {
			t.Errorf("Exec in %s: err = %v, want %v saying %q", c.id, err, c.cat, c.want)
		}
	}
}
