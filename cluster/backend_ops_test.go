package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/state"
)

func TestListEventsFilters(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)

	var l api.EventList
	e.call(t, api.ToolListEvents, api.EventsInput{Service: "web", Type: "Scheduled"}, &l, false)
	if len(l.Events) != 3 || l.Truncated {
		t.Fatalf("Scheduled events = %+v, want 3", l)
	}
	for _, ev := range l.Events {
		if ev.Instance == "" || ev.Node != "n1" || ev.Service != "web" {
			t.Errorf("event lacks its instance, node or service: %+v", ev)
		}
	}
	e.call(t, api.ToolListEvents, api.EventsInput{Service: "web", Limit: 2}, &l, false)
	if len(l.Events) != 2 || !l.Truncated || l.Events[1].Type != "Scheduled" {
		t.Fatalf("limit 2 = %+v, want the 2 newest, truncated", l)
	}
	e.call(t, api.ToolListEvents, api.EventsInput{Since: "1h"}, &l, false)
	if len(l.Events) != 4 {
		t.Errorf("since 1h: %d events, want 4 (Deployed and 3 Scheduled)", len(l.Events))
	}
	e.call(t, api.ToolListEvents, api.EventsInput{Since: time.Now().Add(time.Hour).Format(time.RFC3339)}, &l, false)
	if len(l.Events) != 0 {
		t.Errorf("since a future time: %d events, want 0", len(l.Events))
	}
	for _, bad := range []api.EventsInput{{Since: "yesterday"}, {Since: "-5m"}, {Limit: 5000}, {Type: "a b"}, {Service: "../x"}} {
		msg := e.call(t, api.ToolListEvents, bad, nil, true)
		if !strings.Contains(msg, "invalid") {
			t.Errorf("%+v: error %q does not say what is invalid", bad, msg)
		}
	}
	e.call(t, api.ToolListEvents, api.EventsInput{Service: "nope"}, nil, true)
}

func TestDrainMakesInstancesPendingAndExplainSaysWhy(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": planSpec}, nil, false)
	e.settle(t)

	var nr api.NodeSchedulingResult
	e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "n1"}, &nr, false)
	if nr.Stopped != 3 || nr.Eligible || !nr.Draining {
		t.Fatalf("drain = %+v", nr)
	}
	e.settle(t) // the controller cannot place the replacements
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			t.Fatalf("instance %s placed on a drained node", in.ID)
		}
	}
	var ex api.Explanation
	text := e.call(t, api.ToolExplain, api.ExplainInput{ID: "web"}, &ex, false)
	for _, want := range []string{"0 of 3 replicas running", "3 replica(s) have no instance", "n1: draining, takes no new instances", "node n1 is drained", "set_node_eligibility"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "(hint:") || strings.Contains(text, "unavailable") {
		t.Errorf("explain repeats the scheduler's hint or error category inside its reason:\n%s", text)
	}
	var cs api.ClusterStatus
	e.call(t, api.ToolClusterStatus, nil, &cs, false)
	if len(cs.Nodes) != 1 || cs.Nodes[0].Eligible || !cs.Nodes[0].Draining || cs.Desired != 3 || cs.Services != 1 || cs.Index == 0 {
		t.Fatalf("cluster status = %+v", cs)
	}
	// The mark survives the node registering again (a restart).
	n, _ := e.store.Node("n1")
	n.Labels = nil
	if _, err := e.store.Apply(context.Background(), state.PutNode{Node: *n}); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.store.Node("n1"); !state.Draining(n) {
		t.Fatalf("drain mark lost when the node registered again: %+v", n.Labels)
	}

	e.call(t, api.ToolSetNodeEligibility, api.NodeEligibilityInput{Node: "n1", Eligible: true}, &nr, false)
	e.settle(t)
	insts, _ = e.store.Instances(state.InstanceFilter{Service: "web"})
	live := 0
	for _, in := range insts {
		if in.Desired == state.DesiredRun {
			live++
		}
	}
	if live != 3 {
		t.Errorf("%d live instances after the node is eligible again, want 3", live)
	}
	e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "nope"}, nil, true)
	e.call(t, api.ToolDrainNode, api.DrainNodeInput{Node: "--all"}, nil, true)
}

func TestExplainInstanceCrashLoop(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "replicas: 3", "replicas: 1", 1)}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 1 {
		t.Fatalf("%d instances, want 1", len(insts))
	}
	id := insts[0].ID
	st := state.InstanceStatus{State: state.StateCrashLoop, Restarts: 4, NextStart: time.Now().Add(30 * time.Second),
		LastExit: &state.Exit{Code: 137, Signal: "SIGKILL", Reason: "OOMKilled", At: time.Now()}}
	if _, err := e.store.Apply(context.Background(), state.SetInstanceStatus{ID: id, Status: st}); err != nil {
		t.Fatal(err)
	}
	var ex api.Explanation
	text := e.call(t, api.ToolExplain, api.ExplainInput{ID: id}, &ex, false)
	if ex.Kind != "instance" || len(ex.Findings) != 1 || !ex.Findings[0].Problem {
		t.Fatalf("explanation = %+v", ex)
	}
	for _, want := range []string{"crash loop", "code 137", "OOMKilled", "raise resources.memory", "next start is in"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
	// A start error has no exit: the worker's message says why.
	st = state.InstanceStatus{State: state.StateBackoff, Restarts: 1,
		Message: "image 127.0.0.1:1/nope:1: registry unreachable; restarting in 2s"}
	if _, err := e.store.Apply(context.Background(), state.SetInstanceStatus{ID: id, Status: st}); err != nil {
		t.Fatal(err)
	}
	text = e.call(t, api.ToolExplain, api.ExplainInput{ID: "web"}, &ex, false)
	for _, want := range []string{"0 of 1 replicas running", "registry unreachable", "could not be pulled"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "it exited") {
		t.Errorf("explain invents an exit for a start error:\n%s", text)
	}
	e.call(t, api.ToolExplain, api.ExplainInput{ID: "nothing-here"}, nil, true)
}
