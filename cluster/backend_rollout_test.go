package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

func rolloutSvc(t *testing.T, env string, replicas int) *spec.Service {
	t.Helper()
	s, err := spec.Parse([]byte(fmt.Sprintf("name: rev\nimage: busybox:1.36\ncommand: [sleep, '1000']\nenv: {V: %s}\nreplicas: %d\n", env, replicas)), "rev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RevertRollout puts the previous spec back as a new version (keeping the
// scale) with the cancel recorded as its cause, refuses a version that is
// no longer current, and removes a service whose first version it cancels.
func TestRevertRollout(t *testing.T) {
	e := newPlanEnv(t)
	be := &Backend{Store: e.store}
	ctx := context.Background()
	if _, err := be.Deploy(ctx, rolloutSvc(t, "one", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Deploy(ctx, rolloutSvc(t, "two", 3)); err != nil {
		t.Fatal(err)
	}
	res, err := be.RevertRollout(ctx, "rev", 2, "deploy of version 2 cancelled")
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != api.ActionRollback || res.RestoredVersion != 1 || res.Version != 3 || !strings.HasPrefix(res.Message, "deploy of version 2 cancelled: ") {
		t.Fatalf("revert = %+v", res)
	}
	svc, err := e.store.Service("rev")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Version != 3 || svc.Spec.Env["V"] != "one" || svc.Spec.Replicas != 3 {
		t.Fatalf("after the revert: version %d env %v replicas %d", svc.Version, svc.Spec.Env, svc.Spec.Replicas)
	}
	h := e.store.History("rev")
	if len(h) != 3 || h[2].Cause != "deploy of version 2 cancelled" || h[1].Cause != state.CauseDeploy {
		t.Fatalf("history = %+v", h)
	}
	if evs := e.store.Events(state.EventFilter{Service: "rev"}); evs[len(evs)-1].Type != "DeployCancelled" {
		t.Fatalf("last event = %+v", evs[len(evs)-1])
	}
	if _, err := be.RevertRollout(ctx, "rev", 2, "again"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "at version 3, not 2") {
		t.Fatalf("revert of a version no longer current: %v", err)
	}
	// Version 3 is the revert: cancelling it (a second gantry cancel while
	// it rolls out) would deploy version 2's cancelled spec again.
	if _, err := be.RevertRollout(ctx, "rev", 3, mcp.CancelCause(3)); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "cancelled spec again") {
		t.Fatalf("revert of a revert: %v", err)
	}
	if svc, _ := e.store.Service("rev"); svc.Version != 3 || svc.Spec.Env["V"] != "one" {
		t.Fatalf("after a refused revert of the revert: version %d env %v, want 3 and one", svc.Version, svc.Spec.Env)
	}
	// A restart has no earlier spec to go back to.
	if _, err := e.store.Apply(ctx, state.RestartService{Name: "rev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := be.RevertRollout(ctx, "rev", 4, "x"); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "a restart") {
		t.Fatalf("revert of a restart: %v", err)
	}

	if _, err := be.Deploy(ctx, &spec.Service{Name: "first", Image: "busybox:1.36", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	res, err = be.RevertRollout(ctx, "first", 1, "deploy of version 1 cancelled")
	if err != nil || res.Action != api.ActionRemove {
		t.Fatalf("revert of a first deploy: %+v, %v", res, err)
	}
	if s, err := e.store.Service("first"); err != nil || !s.Removing {
		t.Fatalf("first after its revert: %+v, %v", s, err)
	}
	if _, err := be.RevertRollout(ctx, "nope", 1, "x"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown service: %v", err)
	}
}

// A deploy with wait over the real store and controller follows the
// instances' status as it changes, and a cancelled wait reverts.
func TestDeployWaitFollowsState(t *testing.T) {
	e := newPlanEnv(t)
	be := &Backend{Store: e.store}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Rollouts: be, Token: "t0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); _ = e.ctl.Run(ctx) }()
	go func() { defer wg.Done(); fakeWorker(ctx, e.store) }()
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	var (
		mu    sync.Mutex
		notes []*sdk.ProgressNotificationParams
		first = make(chan struct{})
	)
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
		mu.Lock()
		defer mu.Unlock()
		notes = append(notes, r.Params)
		if len(notes) == 1 {
			close(first)
		}
	}}).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	yaml := func(env string) string {
		return "name: rev\nimage: busybox:1.36\ncommand: [sleep, '1000']\nenv: {V: " + env + "}\nreplicas: 2\n"
	}
	p := &sdk.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: yaml("one"), Wait: true, Timeout: "15s"}}
	p.SetProgressToken(1)
	res, err := cs.CallTool(ctx, p)
	if err != nil || res.IsError {
		t.Fatalf("deploy with wait: %v %+v", err, res)
	}
	if !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "Rollout ready") {
		t.Fatalf("result: %s", res.Content[0].(*sdk.TextContent).Text)
	}
	<-first

	// v2 never gets ready: cancel its wait.
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go func() {
		for {
			mu.Lock()
			more := false
			for _, n := range notes {
				more = more || n.ProgressToken == float64(2) || n.ProgressToken == 2
			}
			mu.Unlock()
			if more || cctx.Err() != nil {
				ccancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	p = &sdk.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: yaml("two"), Wait: true}}
	p.SetProgressToken(2)
	if _, err := cs.CallTool(cctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		svc, _ := e.store.Service("rev")
		if svc != nil && svc.Version == 3 && svc.Spec.Env["V"] == "one" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reverted: %+v", svc)
		}
	}
}

// fakeWorker stands in for the worker: instances of service rev whose
// spec has env V=one become running and healthy, others stay starting;
// stopped ones are reported stopped.
func fakeWorker(ctx context.Context, store *state.Store) {
	for {
		ch := store.Notify()
		insts, _ := store.Instances(state.InstanceFilter{Service: "rev"})
		for _, in := range insts {
			if in.Desired == state.DesiredRun && in.State == state.StatePending {
				st := state.InstanceStatus{State: state.StateStarting}
				if sv, err := store.SpecAt("rev", in.SpecVersion); err == nil && sv.Spec.Env["V"] == "one" {
					st = state.InstanceStatus{State: state.StateRunning, Healthy: true}
				}
				_, _ = store.Apply(ctx, state.SetInstanceStatus{ID: in.ID, Status: st})
			}
			if in.Desired == state.DesiredStop && in.State != state.StateStopped {
				_, _ = store.Apply(ctx, state.SetInstanceStatus{ID: in.ID, Status: state.InstanceStatus{State: state.StateStopped}})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// restart_service and rollback_service wait like deploy.
func TestRestartAndRollbackWait(t *testing.T) {
	e := newPlanEnv(t)
	be := &Backend{Store: e.store}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Rollouts: be, Token: "t0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); _ = e.ctl.Run(ctx) }()
	go func() { defer wg.Done(); fakeWorker(ctx, e.store) }()
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func(tool string, args any) (api.ChangeResult, string) {
		t.Helper()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		text := res.Content[0].(*sdk.TextContent).Text
		var out api.ChangeResult
		if !res.IsError {
			raw, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatal(err)
			}
		}
		return out, text
	}
	yaml := func(env string) string {
		return "name: rev\nimage: busybox:1.36\ncommand: [sleep, '1000']\nenv: {V: " + env + "}\nreplicas: 2\n"
	}
	if _, text := call(api.ToolDeploy, api.DeployInput{SpecYAML: yaml("one"), Wait: true, Timeout: "10s"}); !strings.Contains(text, "Rollout ready") {
		t.Fatalf("deploy: %s", text)
	}
	out, text := call(api.ToolRestartService, api.RestartInput{Name: "rev", Wait: true, Timeout: "10s"})
	if r := out.Rollout; r == nil || r.Outcome != api.RolloutReady || r.Version != 2 || r.Ready != 2 {
		t.Fatalf("restart with wait: %+v %s", out.Rollout, text)
	}
	call(api.ToolDeploy, api.DeployInput{SpecYAML: yaml("two")}) // version 3 never gets ready
	out, text = call(api.ToolRollbackService, api.RollbackInput{Name: "rev", Version: 1, Wait: true, Timeout: "10s"})
	if r := out.Rollout; r == nil || r.Outcome != api.RolloutReady || r.Version != 4 || r.Ready != 2 {
		t.Fatalf("rollback with wait: %+v %s", out.Rollout, text)
	}
	if _, text := call(api.ToolRollbackService, api.RollbackInput{Name: "rev", Version: 1, Wait: true, DryRun: true}); !strings.Contains(text, "wait and dry_run") {
		t.Fatalf("wait with dry_run: %s", text)
	}
}

// cancel_deploy twice in a row (two gantry cancel, or a cancel racing a
// waiting deploy's revert): the second would cancel the revert and deploy
// the cancelled spec again; it is refused, dry run or not, saying why.
func TestCancelDeployOfARevertIsRefused(t *testing.T) {
	e := newPlanEnv(t)
	be := &Backend{Store: e.store}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Rollouts: be, Token: "t0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(ctx, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	e.cs = cs
	for _, env := range []string{"good", "bad"} {
		if _, err := be.Deploy(ctx, rolloutSvc(t, env, 2)); err != nil {
			t.Fatal(err)
		}
	}
	var res api.CancelDeployResult
	e.call(t, api.ToolCancelDeploy, map[string]any{"name": "rev"}, &res, false)
	if res.Version != 3 || res.RestoredVersion != 1 {
		t.Fatalf("first cancel = %+v, want version 3 restoring 1", res)
	}
	for _, dry := range []bool{true, false} {
		msg := e.call(t, api.ToolCancelDeploy, map[string]any{"name": "rev", "dry_run": dry}, nil, true)
		if !strings.Contains(msg, "cancelled spec again") || !strings.Contains(msg, "version 3") {
			t.Errorf("second cancel (dry run %v): %s", dry, msg)
		}
	}
	if svc, _ := e.store.Service("rev"); svc.Version != 3 || svc.Spec.Env["V"] != "good" {
		t.Fatalf("after the second cancel: version %d env %v, want 3 and good", svc.Version, svc.Spec.Env)
	}
}
