package mcp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
)

// Rollouts is what deploys with wait and cancel_deploy need from the
// cluster, besides Services.
type Rollouts interface {
	// Changed returns a channel that is closed at the next state change.
	Changed() <-chan struct{}
	// RevertRollout cancels the rollout of version of service name: for
	// version 1 the service is removed; otherwise the spec of version-1 is
	// deployed again as a new version (the replica count stays), its
	// history entry carrying cause. It fails with an errdefs.ErrConflict
	// error when the service is no longer at version.
	RevertRollout(ctx context.Context, name string, version int, cause string) (*api.CancelDeployResult, error)
}

const (
	// rolloutMinGap coalesces bursts of state changes: the service is read
	// at most this often while waiting.
	rolloutMinGap = 100 * time.Millisecond
	// rolloutRecheck rereads the service even without a change
	// notification, so a missed one cannot stall a wait.
	rolloutRecheck = 2 * time.Second
	// minReadyWithoutCheck is how long an instance of a service without a
	// health check must have been running to count as ready, so that a
	// process that exits at once (a bad command, a missing file) fails the
	// rollout instead of passing it in the instant it ran. Nomad's
	// min_healthy_time and Kubernetes' minReadySeconds do this job.
	minReadyWithoutCheck = time.Second
	// revertTimeout bounds the revert made after a waiting call is
	// cancelled (its own context is done by then).
	revertTimeout = 15 * time.Second
)

// registerRolloutTools adds cancel_deploy and enables wait on deploy when
// cfg has Rollouts.
func registerRolloutTools(s *Server, cfg Config) {
	if cfg.Rollouts == nil {
		return
	}
	s.rollouts = cfg.Rollouts
	addTool(s, &sdk.Tool{
		Name: api.ToolCancelDeploy,
		Description: "Cancel the rollout in progress of a service (a deploy whose new version is not yet running and ready on every replica, " +
			"started without wait or by someone else): the previous spec version is deployed again as a new version (the replica count stays), " +
			"or, when the deploy created the service, the service is removed. Refused when no rollout is in progress. " +
			"version, when set, cancels only if that version is the one rolling out. With dry_run true nothing changes and the plan is returned with a plan ID for apply_plan.",
		Annotations: &sdk.ToolAnnotations{Title: "Cancel deploy", DestructiveHint: boolPtr(true), OpenWorldHint: boolPtr(false)},
	}, s.cancelDeploy)
}

// parseRolloutTimeout checks deploy's timeout: a Go duration, default 5m,
// at most 1h.
func parseRolloutTimeout(s string) (time.Duration, error) {
	if s == "" {
		s = api.DefaultRolloutTimeout
	}
	d, err := time.ParseDuration(s)
	maxD, _ := time.ParseDuration(api.MaxRolloutTimeout)
	switch {
	case err != nil:
		return 0, invalidf("invalid timeout %s: pass a duration such as 90s or 10m (default %s, at most %s)", quote(s), api.DefaultRolloutTimeout, api.MaxRolloutTimeout)
	case d <= 0 || d > maxD:
		return 0, invalidf("invalid timeout %s: it must be more than 0 and at most %s", quote(s), api.MaxRolloutTimeout)
	}
	return d, nil
}

// madeVersion reports whether a deploy result made a new spec version (a
// create, or a change to more than replicas): only such a deploy is
// reverted when its wait is cancelled.
func madeVersion(res *api.DeployResult) bool {
	return res.Created || (res.Changed && !slices.Equal(res.Changes, []string{"replicas"}))
}

// rolloutView is a service's rollout of one version, read from its status
// with the rules `gantry deploy` has always used.
type rolloutView struct {
	ready   int                 // instances of the version running and ready
	old     int                 // instances of older versions still live
	waiting []string            // "ID state" of the version's instances not ready
	failed  *api.InstanceStatus // an instance of the version that failed
	done    bool
}

func viewRollout(st *api.ServiceStatus, version int, now time.Time) rolloutView {
	var v rolloutView
	_, checked := st.Spec["health"]
	for i := range st.Instances {
		in := &st.Instances[i]
		switch {
		case in.SpecVersion == version && (in.State == "failed" || in.State == "backoff" || in.State == "crashloop"):
			if v.failed == nil {
				v.failed = in
			}
		case in.SpecVersion == version && in.State == "running" && in.Healthy &&
			(checked || in.StartedAt == nil || now.Sub(*in.StartedAt) >= minReadyWithoutCheck):
			v.ready++ // an instance without a check is healthy once it runs
		case in.SpecVersion == version:
			v.waiting = append(v.waiting, in.ID+" "+in.State)
		case in.SpecVersion < version && in.State != "stopped" && in.State != "exited" && in.State != "failed":
			v.old++
		}
	}
	v.done = st.Version == version && v.ready >= st.Desired && v.old == 0
	return v
}

// failure describes the failed instance as `gantry deploy` always has.
func (v rolloutView) failure() string {
	in := v.failed
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s is %s", in.ID, in.State)
	if in.ExitCode != nil {
		fmt.Fprintf(&b, ": exit code %d", *in.ExitCode)
		if in.Reason != "" {
			fmt.Fprintf(&b, " (%s)", in.Reason)
		}
	}
	if in.Message != "" {
		fmt.Fprintf(&b, ": %s", in.Message)
	}
	if in.Restarts > 0 {
		fmt.Fprintf(&b, " after %d restarts", in.Restarts)
	}
	return b.String()
}

// progressLine is the progress message, e.g. "web: 2/3 instances of
// version 4 ready; web-2-3f9a2c starting".
func progressLine(st *api.ServiceStatus, version int, v rolloutView) string {
	s := fmt.Sprintf("%s: %d/%d instances of version %d ready", st.Name, v.ready, st.Desired, version)
	if len(v.waiting) > 0 {
		w := v.waiting
		if len(w) > 3 {
			w = append(w[:3:3], fmt.Sprintf("%d more", len(v.waiting)-3))
		}
		s += "; " + strings.Join(w, ", ")
	}
	if v.old > 0 && v.ready >= st.Desired {
		s += fmt.Sprintf("; %d older instance%s still stopping", v.old, plural(v.old))
	}
	if p := pendingReason(st.Events); p != "" {
		s += "; waiting: " + p
	}
	return s
}

// pendingReason is why instances cannot be placed, when the newest
// placement event is a "Pending" one (no "Scheduled" since).
func pendingReason(events []api.Event) string {
	var newest *api.Event
	for i, ev := range events {
		if (ev.Type == "Pending" || ev.Type == "Scheduled") && (newest == nil || !ev.Time.Before(newest.Time)) {
			newest = &events[i]
		}
	}
	if newest == nil || newest.Type != "Pending" {
		return ""
	}
	return newest.Message
}

// waitRollout waits until the rollout of res.Version is ready, failed or
// timed out, sending progress for req's token as the ready count grows.
// When ctx ends first (the call was cancelled), a deploy that made a new
// version is reverted with a context of its own.
func (s *Server) waitRollout(ctx context.Context, req *sdk.CallToolRequest, res *api.DeployResult, prev int, timeout time.Duration) *api.Rollout {
	start := time.Now()
	out := &api.Rollout{RolloutProgress: api.RolloutProgress{Service: res.Service, Version: res.Version, PreviousVersion: prev, Desired: res.Desired}}
	finish := func(outcome, msg string) *api.Rollout {
		out.Outcome, out.Message, out.Elapsed = outcome, msg, time.Since(start).Round(100*time.Millisecond).String()
		return out
	}
	notify := s.rolloutNotifier(ctx, req)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	sent := -1
	var last *api.ServiceStatus
	for {
		changed := s.rollouts.Changed()
		read := time.Now()
		st, err := s.services.GetService(ctx, res.Service)
		switch {
		case errdefs.IsNotFound(err):
			return finish(api.RolloutCancelled, fmt.Sprintf("service %s was removed before version %d was ready", res.Service, res.Version))
		case err != nil && ctx.Err() == nil:
			s.log.Warn("reading a service during a rollout", "service", res.Service, "error", err)
		case err == nil && st != nil:
			last = st
			v := viewRollout(st, res.Version, time.Now())
			out.Ready, out.Desired = v.ready, st.Desired
			if v.ready > sent {
				sent = v.ready
				notify(out.RolloutProgress, progressLine(st, res.Version, v))
			}
			switch {
			case st.Removing:
				return finish(api.RolloutCancelled, fmt.Sprintf("service %s is being removed: the rollout of version %d stopped", res.Service, res.Version))
			case st.Version != res.Version:
				return finish(api.RolloutCancelled, fmt.Sprintf("service %s moved on to version %d before version %d was ready (the deploy was cancelled or another one replaced it)", res.Service, st.Version, res.Version))
			case v.failed != nil:
				out.Instance, out.State, out.ExitCode, out.Reason = v.failed.ID, v.failed.State, v.failed.ExitCode, v.failed.Reason
				return finish(api.RolloutFailed, v.failure())
			case v.done:
				return finish(api.RolloutReady, fmt.Sprintf("service %s: %d/%d instances running at version %d", res.Service, v.ready, st.Desired, res.Version))
			}
		}
		recheck := time.NewTimer(rolloutRecheck)
		select {
		case <-ctx.Done():
			recheck.Stop()
			return s.cancelWait(ctx, out, finish)
		case <-deadline.C:
			recheck.Stop()
			msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, res.Service)
			if last != nil {
				v := viewRollout(last, res.Version, time.Now())
				msg += ": " + progressLine(last, res.Version, v)
			}
			return finish(api.RolloutTimedOut, msg)
		case <-changed:
		case <-recheck.C:
		}
		recheck.Stop()
		if gap := rolloutMinGap - time.Since(read); gap > 0 {
			select {
			case <-ctx.Done():
				return s.cancelWait(ctx, out, finish)
			case <-time.After(gap):
			}
		}
	}
}

// cancelWait reverts the deploy whose wait was cancelled, on a context
// that outlives the call's, unless the call ended because the server is
// shutting down.
func (s *Server) cancelWait(ctx context.Context, out *api.Rollout, finish func(string, string) *api.Rollout) *api.Rollout {
	if out.PreviousVersion < 0 {
		return finish(api.RolloutCancelled, fmt.Sprintf("stopped waiting for %s; the deploy made no new version, so nothing was reverted", out.Service))
	}
	if s.router != nil && s.router.closing() {
		// The server is stopping, which ends every call: nobody
		// cancelled this deploy, so it is not reverted.
		s.log.Info("stopped waiting for a rollout: the server is shutting down; the deploy is kept", "service", out.Service, "version", out.Version)
		return finish(api.RolloutCancelled, fmt.Sprintf("the server is shutting down: stopped waiting for %s version %d, which is kept and rolls out when the server is back; follow it with get_service, or cancel it with cancel_deploy", out.Service, out.Version))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revertTimeout)
	defer cancel()
	cause := CancelCause(out.Version)
	rev, err := s.rollouts.RevertRollout(rctx, out.Service, out.Version, cause)
	if err != nil {
		s.log.Warn("reverting a cancelled deploy", "service", out.Service, "version", out.Version, "error", err)
		return finish(api.RolloutCancelled, fmt.Sprintf("%s, but it was not reverted: %v", cause, err))
	}
	s.log.Info("reverted a cancelled deploy", "service", out.Service, "version", out.Version, "action", rev.Action, "now", rev.Version)
	out.Reverted = rev
	return finish(api.RolloutCancelled, rev.Message)
}

// rolloutNotifier returns a function that sends a progress notification
// for req's token (a no-op without one), with the progress in _meta.
func (s *Server) rolloutNotifier(ctx context.Context, req *sdk.CallToolRequest) func(api.RolloutProgress, string) {
	if req == nil || req.Params == nil || req.Session == nil || req.Params.GetProgressToken() == nil {
		return func(api.RolloutProgress, string) {}
	}
	token := req.Params.GetProgressToken()
	return func(p api.RolloutProgress, msg string) {
		n := &sdk.ProgressNotificationParams{ProgressToken: token, Progress: float64(p.Ready), Total: float64(p.Desired), Message: msg,
			Meta: sdk.Meta{api.ProgressMetaKey: p}}
		if err := req.Session.NotifyProgress(ctx, n); err != nil && ctx.Err() == nil {
			s.log.Debug("sending progress failed", "tool", api.ToolDeploy, "error", err)
		}
	}
}

// deployAndWait finishes a deploy called with wait: it waits for the
// rollout and says how it ended.
func (s *Server) deployAndWait(ctx context.Context, req *sdk.CallToolRequest, res *api.DeployResult, text string, timeout time.Duration) (api.DeployResult, string, error) {
	prev := -1
	if madeVersion(res) {
		prev = res.Version - 1
	}
	r := s.waitRollout(ctx, req, res, prev, timeout)
	res.Rollout = r
	switch r.Outcome {
	case api.RolloutReady:
		text += fmt.Sprintf(". Rollout ready in %s: %s", r.Elapsed, r.Message)
	case api.RolloutFailed:
		text += fmt.Sprintf(". Rollout failed: %s; read its output with service_logs (name %q, instance %q)", r.Message, res.Service, r.Instance)
		if prev >= 0 {
			text += "; undo the deploy with cancel_deploy"
		}
	case api.RolloutTimedOut:
		text += ". Rollout " + r.Message + "; it goes on: follow it with get_service, or undo it with cancel_deploy"
	default:
		text += ". Rollout cancelled: " + r.Message
	}
	return *res, text, nil
}

func (s *Server) cancelDeploy(ctx context.Context, _ *sdk.CallToolRequest, in api.CancelDeployInput) (api.CancelDeployResult, string, error) {
	if err := validateName(in.Name); err != nil {
		return api.CancelDeployResult{}, "", err
	}
	if in.Version < 0 {
		return api.CancelDeployResult{}, "", invalidf("invalid version %d: pass the version being rolled out (see get_service), or leave it out", in.Version)
	}
	st, err := s.services.GetService(ctx, in.Name)
	if err == nil && st == nil {
		err = errdefs.ErrNotFound
	}
	if err != nil {
		return api.CancelDeployResult{}, "", describe(api.ToolCancelDeploy, err, serviceNotFound(in.Name))
	}
	switch {
	case st.Removing:
		return api.CancelDeployResult{}, "", &toolError{cat: errdefs.ErrConflict,
			msg: fmt.Sprintf("service %q is being removed: there is no rollout to cancel", in.Name)}
	case in.Version != 0 && in.Version != st.Version:
		return api.CancelDeployResult{}, "", &toolError{cat: errdefs.ErrConflict,
			msg: fmt.Sprintf("service %q is at version %d, not %d: the rollout of version %d is over (cancelled or replaced); nothing changed", in.Name, st.Version, in.Version, in.Version)}
	}
	if err := s.checkNotRevert(ctx, in.Name, st.Version); err != nil {
		return api.CancelDeployResult{}, "", err
	}
	if v := viewRollout(st, st.Version, time.Now()); v.done {
		return api.CancelDeployResult{}, "", &toolError{cat: errdefs.ErrConflict,
			msg: fmt.Sprintf("no rollout of service %q is in progress: all %d instance%s run version %d and are ready; nothing changed. To go back to an earlier version, use rollback_service (versions: service_history)",
				in.Name, v.ready, plural(v.ready), st.Version)}
	}
	cause := CancelCause(st.Version)
	if in.DryRun {
		req := PlanRequest{Kind: PlanRollback, Service: in.Name, Version: st.Version - 1}
		out := api.CancelDeployResult{Service: in.Name, Cancelled: st.Version, Action: api.ActionRollback, RestoredVersion: st.Version - 1}
		if st.Version == 1 {
			req = PlanRequest{Kind: PlanRemove, Service: in.Name}
			out.Action, out.RestoredVersion = api.ActionRemove, 0
		}
		p, text, err := s.dryRun(ctx, api.ToolCancelDeploy, req)
		if err != nil {
			return api.CancelDeployResult{}, "", err
		}
		out.Version, out.Message, out.Plan = p.ToVersion, p.Summary, p
		return out, text, nil
	}
	res, err := s.rollouts.RevertRollout(ctx, in.Name, st.Version, cause)
	if err != nil {
		return api.CancelDeployResult{}, "", describe(api.ToolCancelDeploy, err, serviceNotFound(in.Name))
	}
	if res == nil {
		return api.CancelDeployResult{}, "", errors.New("the cluster returned no result")
	}
	return *res, res.Message, nil
}

// checkWait validates deploy's wait and timeout before anything changes,
// and returns the timeout.
func (s *Server) checkWait(in api.DeployInput) (time.Duration, error) {
	return s.checkWaitArgs(in.Wait, in.Timeout, in.DryRun)
}

// checkWaitArgs validates a tool's wait, timeout and dry_run.
func (s *Server) checkWaitArgs(wait bool, timeout string, dryRun bool) (time.Duration, error) {
	if !wait {
		if timeout != "" {
			return 0, invalidf("timeout is set without wait: pass wait true to wait for the rollout, or leave timeout out")
		}
		return 0, nil
	}
	if dryRun {
		return 0, invalidf("wait and dry_run are both set: a dry run changes nothing, so there is no rollout to wait for; pass one of them")
	}
	if s.rollouts == nil {
		return 0, &toolError{cat: errdefs.ErrInvalid, msg: "this server cannot wait for rollouts: call without wait and follow the instances with get_service"}
	}
	return parseRolloutTimeout(timeout)
}

// deployContext is the context a deploy is applied with. With wait, a
// cancellation must not cut the write short (it could then be applied
// with nobody left to revert it): the deploy finishes on a context of its
// own, and the wait that follows sees the cancellation and reverts it.
func deployContext(ctx context.Context, wait bool) (context.Context, context.CancelFunc) {
	if !wait {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), revertTimeout)
}

// changeAndWait applies a restart or rollback and waits for its rollout
// like deploy's wait; revert says whether a cancelled wait reverts it.
func (s *Server) changeAndWait(ctx context.Context, req *sdk.CallToolRequest, tool string, preq PlanRequest, timeout time.Duration, revert bool) (api.ChangeResult, string, error) {
	dctx, stop := deployContext(ctx, true)
	out, text, err := s.change(dctx, tool, preq, false)
	stop()
	if err != nil || out.Action == api.ActionNone {
		return out, text, err
	}
	desired := 0
	if st, err := s.services.GetService(context.WithoutCancel(ctx), out.Service); err == nil && st != nil {
		desired = st.Desired
	}
	prev := -1
	if revert {
		prev = out.Version - 1
	}
	r := s.waitRollout(ctx, req, &api.DeployResult{Service: out.Service, Version: out.Version, Desired: desired}, prev, timeout)
	out.Rollout = r
	switch r.Outcome {
	case api.RolloutReady:
		text += fmt.Sprintf(". Rollout ready in %s: %s", r.Elapsed, r.Message)
	case api.RolloutFailed:
		text += fmt.Sprintf(". Rollout failed: %s; read its output with service_logs (name %q, instance %q)", r.Message, out.Service, r.Instance)
	default:
		text += ". Rollout " + r.Outcome + ": " + r.Message
	}
	return out, text, nil
}

// CancelCause is the history cause of the version that reverts a cancelled
// deploy of version v.
func CancelCause(v int) string { return fmt.Sprintf("deploy of version %d cancelled", v) }

// IsCancelCause reports whether cause is one that CancelCause makes: the
// version is the revert of a cancelled deploy.
func IsCancelCause(cause string) bool {
	var v int
	n, err := fmt.Sscanf(cause, "deploy of version %d cancelled", &v)
	return err == nil && n == 1 && CancelCause(v) == cause
}

// checkNotRevert refuses to cancel version of service name when it is
// itself the revert of a cancelled deploy: its previous spec is the one
// that was cancelled, so cancelling it (a second gantry cancel, say) would
// deploy that spec again. The backend refuses it too; this check lets a
// dry run say so.
func (s *Server) checkNotRevert(ctx context.Context, name string, version int) error {
	if s.plan == nil || s.plan.history == nil {
		return nil
	}
	h, err := s.plan.history.History(ctx, name)
	if err != nil || h == nil {
		return nil
	}
	for _, v := range h.Versions {
		if v.Version == version && IsCancelCause(v.Cause) {
			return &toolError{cat: errdefs.ErrConflict, msg: RevertOfCancelMessage(name, version, v.Cause)}
		}
	}
	return nil
}

// RevertOfCancelMessage says why the revert of a cancelled deploy cannot
// itself be cancelled, and what to do instead.
func RevertOfCancelMessage(name string, version int, cause string) string {
	return fmt.Sprintf("version %d of service %q is itself the revert of a cancelled deploy (%s): cancelling it would deploy the cancelled spec again; nothing changed. "+
		"Let it finish (follow it with get_service), or deploy the spec you want, or go back further with rollback_service (versions: service_history)", version, name, cause)
}
