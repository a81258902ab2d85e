package mcp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// The rollout rules `gantry deploy` has always used, now on the server.
func TestViewRollout(t *testing.T) {
	code := 137
	inst := func(v int, state string) api.InstanceStatus {
		return api.InstanceStatus{ID: fmt.Sprintf("web-%d-%s", v, state), SpecVersion: v, State: state, Healthy: state == "running"}
	}
	unhealthy := api.InstanceStatus{ID: "web-2-u", SpecVersion: 2, State: "running"}
	for _, tc := range []struct {
		name      string
		instances []api.InstanceStatus
		desired   int
		done      bool
		fail      string
	}{
		{"all new running", []api.InstanceStatus{inst(2, "running"), inst(2, "running")}, 2, true, ""},
		{"one starting", []api.InstanceStatus{inst(2, "running"), inst(2, "starting")}, 2, false, ""},
		{"old still running", []api.InstanceStatus{inst(2, "running"), inst(1, "running")}, 1, false, ""},
		{"old stopped", []api.InstanceStatus{inst(2, "running"), inst(1, "stopped")}, 1, true, ""},
		{"scaled to zero", nil, 0, true, ""},
		{"running but not yet healthy", []api.InstanceStatus{inst(2, "running"), unhealthy}, 2, false, ""},
		{"new crash loop", []api.InstanceStatus{{ID: "web-0-c", SpecVersion: 2, State: "crashloop", ExitCode: &code, Reason: "Error"}}, 1, false, "crashloop"},
		{"new failed", []api.InstanceStatus{{ID: "web-0-x", SpecVersion: 2, State: "failed", ExitCode: &code, Reason: "OOMKilled"}}, 1, false, "exit code 137 (OOMKilled)"},
		{"old failed is ignored", []api.InstanceStatus{inst(1, "failed"), inst(2, "running")}, 1, true, ""},
	} {
		v := viewRollout(&api.ServiceStatus{Name: "web", Version: 2, Desired: tc.desired, Instances: tc.instances}, 2, time.Now())
		fail := ""
		if v.failed != nil {
			fail = v.failure()
		}
		if v.done != tc.done || (fail == "") != (tc.fail == "") || !strings.Contains(fail, tc.fail) {
			t.Errorf("%s: done=%v failure=%q", tc.name, v.done, fail)
		}
	}
	// Without a health check, an instance counts once it has run for
	// minReadyWithoutCheck: one that exits at once must not pass.
	now := time.Now()
	just, before := now.Add(-100*time.Millisecond), now.Add(-2*minReadyWithoutCheck)
	fresh := api.InstanceStatus{ID: "web-2-f", SpecVersion: 2, State: "running", Healthy: true, StartedAt: &just}
	settled := api.InstanceStatus{ID: "web-2-s", SpecVersion: 2, State: "running", Healthy: true, StartedAt: &before}
	if v := viewRollout(&api.ServiceStatus{Version: 2, Desired: 1, Instances: []api.InstanceStatus{fresh}}, 2, now); v.done || v.ready != 0 {
		t.Errorf("an instance running for 100ms without a check counts as ready: %+v", v)
	}
	if v := viewRollout(&api.ServiceStatus{Version: 2, Desired: 1, Instances: []api.InstanceStatus{settled}}, 2, now); !v.done {
		t.Errorf("an instance running for 2s without a check is not ready: %+v", v)
	}
	checked := &api.ServiceStatus{Version: 2, Desired: 1, Spec: map[string]any{"health": map[string]any{}}, Instances: []api.InstanceStatus{fresh}}
	if v := viewRollout(checked, 2, now); !v.done {
		t.Errorf("a passing health check is enough, whatever the uptime: %+v", v)
	}
	// A service at another version is not done with this one.
	if v := viewRollout(&api.ServiceStatus{Version: 3, Desired: 1, Instances: []api.InstanceStatus{inst(2, "running")}}, 2, time.Now()); v.done {
		t.Error("a superseded version counts as done")
	}
}

// Progress messages name what is not ready yet and why instances cannot be
// placed (a Pending event with no Scheduled event after it).
func TestProgressLine(t *testing.T) {
	t0 := time.Now()
	st := &api.ServiceStatus{Name: "web", Version: 4, Desired: 3, Instances: []api.InstanceStatus{
		{ID: "web-0-a", SpecVersion: 4, State: "running", Healthy: true},
		{ID: "web-1-b", SpecVersion: 4, State: "running", Healthy: true},
		{ID: "web-2-c", SpecVersion: 4, State: "starting"},
	}}
	if got := progressLine(st, 4, viewRollout(st, 4, t0)); got != "web: 2/3 instances of version 4 ready; web-2-c starting" {
		t.Errorf("progress line = %q", got)
	}
	st.Events = []api.Event{
		{Time: t0, Type: "Scheduled", Instance: "web-0-a"},
		{Time: t0.Add(time.Second), Type: "Pending", Message: "no node has 2 CPUs free"},
	}
	if got := progressLine(st, 4, viewRollout(st, 4, t0)); !strings.HasSuffix(got, "; waiting: no node has 2 CPUs free") {
		t.Errorf("progress line with a pending reason = %q", got)
	}
	st.Events = append(st.Events, api.Event{Time: t0.Add(2 * time.Second), Type: "Scheduled", Instance: "web-2-c"})
	if got := pendingReason(st.Events); got != "" {
		t.Errorf("a reason resolved by a later placement = %q", got)
	}
}

func TestParseRolloutTimeout(t *testing.T) {
	if d, err := parseRolloutTimeout(""); err != nil || d != 5*time.Minute {
		t.Errorf("default = %v, %v", d, err)
	}
	if d, err := parseRolloutTimeout("1h"); err != nil || d != time.Hour {
		t.Errorf("1h = %v, %v", d, err)
	}
	for _, bad := range []string{"0s", "-1m", "61m", "x"} {
		if _, err := parseRolloutTimeout(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
