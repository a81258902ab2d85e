package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

// Explain says, in plain language, why an instance (by ID) or the instances
// of a service (by name) are pending or not running, from the stored state
// and events: placement failures, pull and start errors, exits with their
// code and reason, backoff, health checks and node drains.
func (b *Backend) Explain(ctx context.Context, id string) (*api.Explanation, error) {
	now := time.Now()
	if in, err := b.Store.Instance(id); err == nil {
		svc, _ := b.Store.Service(in.Service)
		f := b.instanceFinding(in, svc, now)
		sum := fmt.Sprintf("instance %s of service %s is %s: %s", in.ID, in.Service, f.State, f.Reason)
		return &api.Explanation{Target: id, Kind: "instance", Summary: sum, Findings: []api.Finding{f}}, nil
	}
	svc, err := b.Store.Service(id)
	if errdefs.IsNotFound(err) {
		return nil, errdefs.WithHint(fmt.Errorf("no instance or service %q: %w", id, errdefs.ErrNotFound),
			"pass an instance ID from get_service or a service name from list_services")
	}
	if err != nil {
		return nil, err
	}
	return b.explainService(svc, now), nil
}

func (b *Backend) explainService(svc *state.Service, now time.Time) *api.Explanation {
	out := &api.Explanation{Target: svc.Name, Kind: "service", Findings: []api.Finding{}}
	insts, _ := b.Store.Instances(state.InstanceFilter{Service: svc.Name})
	if svc.Removing {
		out.Summary = fmt.Sprintf("service %s is being removed: its %d remaining instance(s) are stopping, then the service disappears", svc.Name, len(insts))
		return out
	}
	live, running, outdated := 0, 0, 0
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			live++
			if in.State == state.StateRunning && in.Healthy {
				running++
			}
			if in.SpecVersion != svc.Version {
				outdated++
			}
		}
	}
	if missing := svc.Spec.Replicas - live; missing > 0 {
		out.Findings = append(out.Findings, b.placementFinding(svc, missing))
	}
	if outdated > 0 {
		out.Findings = append(out.Findings, api.Finding{Reason: fmt.Sprintf(
			"a rolling update to version %d is under way: %d instance(s) still run an older version and are replaced one at a time, each once the others are ready", svc.Version, outdated)})
	}
	problems := 0
	for _, in := range insts {
		f := b.instanceFinding(in, svc, now)
		if f.Problem {
			problems++
		}
		out.Findings = append(out.Findings, f)
	}
	for _, f := range out.Findings {
		if f.Problem && f.Instance == "" {
			problems++
		}
	}
	out.Summary = fmt.Sprintf("service %s: %d of %d replicas running", svc.Name, running, svc.Spec.Replicas)
	switch {
	case problems == 0 && running == svc.Spec.Replicas:
		out.Summary += "; nothing is wrong"
	case problems == 0:
		out.Summary += "; the others are on their way (see the findings)"
	default:
		for _, f := range out.Findings {
			if f.Problem {
				out.Summary += "; " + f.Reason
				break
			}
		}
	}
	return out
}

// placementFinding explains slots that have no instance: the controller's
// latest Pending event, and nodes that are drained or ineligible.
func (b *Backend) placementFinding(svc *state.Service, missing int) api.Finding {
	f := api.Finding{Problem: true, Reason: fmt.Sprintf("%d replica(s) have no instance yet", missing)}
	var pending *state.Event
	for _, e := range b.Store.Events(state.EventFilter{Service: svc.Name}) {
		if e.Type == "Pending" && e.Instance == "" {
			pending = e
			f.Events = []api.EventRecord{eventView(e)}
		}
	}
	if pending != nil {
		msg, hint := splitHint(pending.Message)
		f.Reason += ": the scheduler cannot place them: " + msg
		f.Hint = hint
		if f.Hint == "" {
			f.Hint = "lower the service's resources, scale other services down, or add a node"
		}
	}
	nodes, _ := b.Store.Nodes()
	var marked []string
	for _, n := range nodes {
		switch {
		case state.Draining(n):
			marked = append(marked, fmt.Sprintf("node %s is drained", n.ID))
		case !state.Schedulable(n):
			marked = append(marked, fmt.Sprintf("node %s is marked ineligible", n.ID))
		case n.Status != "ready":
			marked = append(marked, fmt.Sprintf("node %s is %s", n.ID, n.Status))
		}
	}
	if len(marked) > 0 {
		f.Reason += "; " + strings.Join(marked, ", ") + " so it takes no new instances"
		f.Hint = "make a node eligible again with set_node_eligibility (eligible true), or add a node"
	}
	return f
}

// splitHint takes apart a Pending event's message, the scheduler's error
// text "WHAT: unavailable (hint: HINT)", so a finding shows WHAT as its
// reason and HINT once, as its hint (a fixed host port has its own).
func splitHint(msg string) (string, string) {
	var hint string
	if i := strings.LastIndex(msg, " (hint: "); i >= 0 && strings.HasSuffix(msg, ")") {
		msg, hint = msg[:i], msg[i+len(" (hint: "):len(msg)-1]
	}
	return strings.TrimSuffix(msg, ": "+errdefs.ErrUnavailable.Error()), hint
}

// instanceFinding explains one instance.
func (b *Backend) instanceFinding(in *state.Instance, svc *state.Service, now time.Time) api.Finding {
	v := InstanceView(in)
	f := api.Finding{Instance: in.ID, State: v.State}
	for _, e := range b.Store.Events(state.EventFilter{Instance: in.ID, Limit: 5}) {
		f.Events = append(f.Events, eventView(e))
	}
	lastExit := ""
	if e := in.LastExit; e != nil {
		lastExit = fmt.Sprintf("it last exited with code %d", e.Code)
		if e.Signal != "" {
			lastExit += " (" + e.Signal + ")"
		}
		if e.Reason != "" {
			lastExit += ", reason " + e.Reason
		}
	}
	withMsg := func(s string) string {
		if in.Message != "" {
			return s + ": " + in.Message
		}
		return s
	}
	if in.State == state.StateLost && in.Desired != state.DesiredRun {
		f.Reason = in.Message // "node n2 down since T, longer than disconnect.replace_after ..."
		return f
	}
	if in.Desired == state.DesiredStop {
		f.Reason = "being stopped"
		for _, e := range f.Events {
			if e.Type == "Stopping" {
				f.Reason += " (" + e.Message + ")"
			}
		}
		if in.State == state.StateStopped {
			f.Reason = "stopped and cleaned up; its record is dropped shortly"
		}
		return f
	}
	switch in.State {
	case state.StatePending:
		f.Reason = withMsg(fmt.Sprintf("placed on node %s and waiting for it to start the instance", in.Node))
		if n, err := b.Store.Node(in.Node); err == nil && n.Status != "ready" && n.Status != state.NodeDown {
			f.Problem = true
			f.Reason += fmt.Sprintf("; the node is %s", n.Status)
			f.Hint = "start the node's gantry again, or drain it so the instance goes elsewhere"
		}
	case state.StateStarting:
		f.Reason = withMsg("starting: the node is pulling the image or creating the container")
	case state.StateRunning, state.StateUnhealthy:
		switch {
		case in.Healthy:
			f.Reason = "running and healthy"
			if in.Restarts > 0 {
				f.Reason += fmt.Sprintf(" (restarted %d time(s) before; %s)", in.Restarts, lastExit)
			}
		case in.State == state.StateUnhealthy:
			f.Problem = true
			f.Reason = withMsg("running, but its health check fails")
			f.Hint = "check that the health check's port, path or command match what the program serves, and read its output with service_logs"
		default:
			f.Reason = withMsg("running; its health check has not passed yet")
		}
	case state.StateExited, state.StateBackoff, state.StateCrashLoop:
		f.Problem = true
		// The worker's message says why (an exit, or a start error such as
		// a failed image pull, which has no exit).
		why := orText(in.Message, orText(lastExit, "it exited"))
		f.Reason = fmt.Sprintf("not running: %s; restarted %d time(s)", why, in.Restarts)
		if in.State == state.StateCrashLoop {
			f.Reason = "in a crash loop: it failed several times in a row soon after starting: " + why
		}
		if lastExit != "" && !strings.Contains(why, "exited with code") {
			f.Reason += "; " + lastExit
		}
		if !in.NextStart.IsZero() {
			f.Reason += fmt.Sprintf("; the next start is in %s", max(in.NextStart.Sub(now), 0).Round(time.Second).String())
		}
		f.Hint = exitHint(in.LastExit)
		if low := strings.ToLower(in.Message); strings.Contains(low, "image ") || strings.Contains(low, "pull") {
			f.Hint = "the image could not be pulled or prepared: check the image reference and that the registry is reachable (pull_image shows the error)"
		}
	case state.StateFailed:
		f.Problem = true
		f.Reason = withMsg("failed and will not be restarted")
		if lastExit != "" {
			f.Reason += "; " + lastExit
		}
		f.Hint = "fix the cause (see the message and service_logs), then deploy the spec again: a new version replaces the instance"
		if strings.Contains(strings.ToLower(in.Message), "pull") || strings.Contains(strings.ToLower(in.Message), "image") {
			f.Hint = "check the image reference and that the registry is reachable (pull_image shows the error), then deploy again"
		}
	default:
		f.Reason = withMsg("state " + in.State)
	}
	if svc != nil && in.SpecVersion != svc.Version {
		f.Reason += fmt.Sprintf("; it runs version %d and will be replaced by version %d", in.SpecVersion, svc.Version)
	}
	if n, err := b.Store.Node(in.Node); err == nil && n.Status == state.NodeDown {
		f.Problem = true
		f.Reason += "; " + controller.DownReason(n.ID, controller.NodeDownSince(n), controller.ReplaceAfter(svc), now)
		f.Hint = "start the node's gantry again, or wait: the instance is then replaced on another node (the spec's disconnect.replace_after sets how long)"
	}
	return f
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// exitHint suggests a fix from how the process ended.
func exitHint(e *state.Exit) string {
	switch {
	case e == nil:
		return "read its output with service_logs"
	case e.Reason == "OOMKilled":
		return "it went over its memory limit: raise resources.memory in the spec"
	case e.Code == 127:
		return "exit code 127 means the command was not found in the image: check command and args in the spec"
	case e.Code == 126:
		return "exit code 126 means the command is not executable: check command and args in the spec"
	case e.Code == 0:
		return "the command finished successfully; a service's command should keep running (or use restart: never for a one-off task)"
	}
	return "read its output with service_logs to see why it exited"
}
