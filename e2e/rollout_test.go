package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// progressSession connects a second MCP client whose progress
// notifications go to a log.
func (d *dev) progressSession(t *testing.T) (*mcp.ClientSession, *progressNotes) {
	t.Helper()
	pn := &progressNotes{first: make(chan struct{})}
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-progress", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) { pn.add(req.Params) },
	})
	tr := &mcp.StreamableClientTransport{Endpoint: "http://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{d.token, http.DefaultTransport}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect MCP: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, pn
}

type progressNotes struct {
	mu    sync.Mutex
	notes []*mcp.ProgressNotificationParams
	first chan struct{}
}

func (p *progressNotes) add(n *mcp.ProgressNotificationParams) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, n)
	if len(p.notes) == 1 {
		close(p.first)
	}
}

func (p *progressNotes) all() []*mcp.ProgressNotificationParams {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*mcp.ProgressNotificationParams(nil), p.notes...)
}

// rolloutSpec is a service that sleeps; check "" has no health check,
// "ok" one that passes and "never" one that never passes (without ever
// restarting the instance).
func rolloutSpec(name, ref string, replicas int, check, greeting string) string {
	s := fmt.Sprintf("name: %s\nimage: %s\ncommand: [sleep, '1000']\nreplicas: %d\nenv: {GREETING: %s}\nresources: {cpu: 20m, memory: 16Mi, pids: 16}\n",
		name, ref, replicas, greeting)
	switch check {
	case "ok":
		s += "health: {exec: {command: ['true']}, interval: 500ms}\n"
	case "never":
		s += "health: {exec: {command: ['false']}, interval: 500ms, grace: 10m}\n"
	}
	return s
}

// cancelAfterFirstProgress calls deploy with wait and a progress token on
// s, and cancels the call at its first progress notification.
func cancelAfterFirstProgress(t *testing.T, s *mcp.ClientSession, pn *progressNotes, specYAML string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		select {
		case <-pn.first:
			cancel()
		case <-ctx.Done():
		}
	}()
	params := &mcp.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: specYAML, Wait: true, Timeout: "80s"}}
	params.SetProgressToken("cancel-me")
	_, err := s.CallTool(ctx, params)
	return err
}

// Deploys with wait report progress as instances become ready; cancelling
// the call reverts the deploy (or removes a new service); cancel_deploy
// refuses when nothing is rolling out.
func TestDeployProgressAndCancel(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)

	// (a) Progress to 3 of 3, never decreasing.
	s, pn := d.progressSession(t)
	params := &mcp.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: rolloutSpec("prog", ref, 3, "", "a"), Wait: true, Timeout: "90s"}}
	params.SetProgressToken("prog-1")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	res, err := s.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("deploy with wait: %v %+v\n%s", err, res, d.log())
	}
	var out api.DeployResult
	decodeInto(t, res, &out)
	if r := out.Rollout; r == nil || r.Outcome != api.RolloutReady || r.Ready != 3 || r.Desired != 3 {
		t.Fatalf("rollout = %+v", out.Rollout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n := pn.all(); len(n) == 0 || n[len(n)-1].Progress != 3; n = pn.all() {
		if time.Now().After(deadline) {
			t.Fatalf("progress never reached 3: %+v", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	notes := pn.all()
	for i, n := range notes {
		if n.Total != 3 || (i > 0 && n.Progress < notes[i-1].Progress) || !strings.HasPrefix(n.Message, "prog: ") {
			t.Errorf("progress %d = %+v", i, n)
		}
	}

	// (e) Nothing in progress: cancel_deploy refuses.
	err = d.callErr(api.ToolCancelDeploy, map[string]any{"name": "prog"}, nil)
	if err == nil || !strings.Contains(err.Error(), `no rollout of service "prog" is in progress`) {
		t.Fatalf("cancel_deploy with nothing in progress: %v", err)
	}

	// (b) v1 healthy; v2 never healthy, cancelled at its first progress.
	v1 := rolloutSpec("canc", ref, 1, "ok", "one")
	d.deploy(v1)
	d.waitFor("canc", 60*time.Second, "v1 healthy", running(1))
	s2, pn2 := d.progressSession(t)
	err = cancelAfterFirstProgress(t, s2, pn2, rolloutSpec("canc", ref, 1, "never", "two"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled deploy: err = %v", err)
	}
	st := d.waitFor("canc", 60*time.Second, "back to v1's spec, running", func(s api.ServiceStatus) bool {
		return s.Version == 3 && running(1)(s) && s.Instances[0].SpecVersion == 3
	})
	if env, _ := st.Spec["env"].(map[string]any); env["GREETING"] != "one" {
		t.Fatalf("spec after the cancel = %v, want v1's", st.Spec)
	}
	var h api.History
	d.call(api.ToolServiceHistory, map[string]any{"name": "canc"}, &h)
	if n := len(h.Versions); n != 3 || h.Versions[2].Cause != "deploy of version 2 cancelled" {
		t.Fatalf("history = %+v", h.Versions)
	}
	var evs api.EventList
	d.call(api.ToolListEvents, map[string]any{"service": "canc", "type": "DeployCancelled"}, &evs)
	found := false
	for _, e := range evs.Events {
		found = found || e.Type == "DeployCancelled"
	}
	if !found {
		t.Errorf("no DeployCancelled event: %+v", evs.Events)
	}

	// A rollout started without wait: cancel_deploy plans, then reverts it.
	d.deploy(rolloutSpec("canc", ref, 1, "never", "four"))
	var plan api.CancelDeployResult
	d.call(api.ToolCancelDeploy, map[string]any{"name": "canc", "dry_run": true}, &plan)
	if p := plan.Plan; p == nil || p.ID == "" || p.Action != api.ActionRollback || p.FromVersion != 4 || p.ToVersion != 5 || plan.RestoredVersion != 3 {
		t.Fatalf("cancel_deploy dry run = %+v plan %+v", plan, plan.Plan)
	}
	if st := d.service("canc"); st.Version != 4 {
		t.Fatalf("the dry run changed the service: version %d", st.Version)
	}
	var done api.CancelDeployResult
	d.call(api.ToolCancelDeploy, map[string]any{"name": "canc", "version": 4}, &done)
	if done.Version != 5 || done.Cancelled != 4 {
		t.Fatalf("cancel_deploy = %+v", done)
	}
	d.waitFor("canc", 60*time.Second, "back to the healthy spec", func(s api.ServiceStatus) bool {
		return s.Version == 5 && running(1)(s) && s.Instances[0].SpecVersion == 5
	})

	// (c) A first deploy cancelled: the service is removed.
	s3, pn3 := d.progressSession(t)
	err = cancelAfterFirstProgress(t, s3, pn3, rolloutSpec("fresh", ref, 1, "never", "x"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled first deploy: err = %v", err)
	}
	waitGone(t, d, "fresh")
}

func decodeInto(t *testing.T, res *mcp.CallToolResult, out any) {
	t.Helper()
	raw, err := json.Marshal(res.StructuredContent)
	if err == nil {
		err = json.Unmarshal(raw, out)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func waitGone(t *testing.T, d *dev, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var list api.ServiceList
		d.call("list_services", map[string]any{}, &list)
		present := false
		for _, s := range list.Services {
			present = present || s.Name == name
		}
		if !present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s still exists: %+v", name, list.Services)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Ctrl-C during `gantry deploy` cancels the deploy, which reverts it.
func TestDeployInterruptedThroughCLI(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(rolloutSpec("cli", ref, 1, "ok", "one"))
	d.waitFor("cli", 60*time.Second, "v1 healthy", running(1))
	f := filepath.Join(t.TempDir(), "cli.yaml")
	if err := os.WriteFile(f, []byte(rolloutSpec("cli", ref, 1, "never", "two")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gantryBin, "deploy", "-f", f, "--pull", "never")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	signalled := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !signalled && strings.Contains(sc.Text(), "instances of version 2 ready") {
			signalled = true
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	out := strings.Join(lines, "\n") + "\n" + stderr.String()
	if err == nil || !signalled {
		t.Fatalf("gantry deploy interrupted: err %v, signalled %v\n%s", err, signalled, out)
	}
	if !strings.Contains(out, "cancelling deploy of cli version 2: reverting to version 1") ||
		!strings.Contains(out, "deploy of cli version 2 cancelled: the spec of version 1 is back, as version 3") {
		t.Fatalf("output:\n%s", out)
	}
	st := d.waitFor("cli", 60*time.Second, "back to v1's spec, running", func(s api.ServiceStatus) bool {
		return s.Version == 3 && running(1)(s) && s.Instances[0].SpecVersion == 3
	})
	if env, _ := st.Spec["env"].(map[string]any); env["GREETING"] != "one" {
		t.Fatalf("spec after the cancel = %v, want v1's", st.Spec)
	}
}

// A service without a health check whose process exits at once fails its
// deploy: running for an instant is not ready (minimum uptime of 1s).
func TestDeployOfAnInstantExitFails(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	f := filepath.Join(t.TempDir(), "svc.yaml")
	if err := os.WriteFile(f, []byte("name: quick\nimage: "+ref+"\ncommand: [sh, -c, 'exit 3']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := d.cli("deploy", "-f", f, "--timeout", "60s")
	if err == nil || !strings.Contains(out, "exit code 3") {
		t.Fatalf("deploy of a command that exits at once: err %v, want a failure naming exit code 3\n%s", err, out)
	}
}

// gantry restart and rollback can wait for their rollout like deploy does.
func TestRestartAndRollbackWaitThroughCLI(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy("name: rw\nimage: " + ref + "\ncommand: [/bin/httpd]\nargs: [-f, -p, '8080', -h, /www]\nreplicas: 2\n")
	d.waitFor("rw", 60*time.Second, "2 running", running(2))
	out, err := d.cli("restart", "rw", "--wait", "--timeout", "60s")
	if err != nil || !strings.Contains(out, "2/2 instances running at version 2") {
		t.Fatalf("gantry restart --wait: %v\n%s", err, out)
	}
	d.deploy("name: rw\nimage: " + ref + "\ncommand: [/bin/httpd]\nargs: [-f, -p, '8080', -h, /www]\nreplicas: 2\nenv: {V: '3'}\n")
	d.waitFor("rw", 60*time.Second, "version 3 running", func(s api.ServiceStatus) bool {
		return s.Version == 3 && s.Running == 2 && len(s.Instances) == 2 && s.Instances[0].SpecVersion == 3 && s.Instances[1].SpecVersion == 3
	})
	out, err = d.cli("rollback", "rw", "1", "--wait", "--timeout", "60s")
	if err != nil || !strings.Contains(out, "2/2 instances running at version 4") {
		t.Fatalf("gantry rollback --wait: %v\n%s", err, out)
	}
	if s := d.service("rw"); s.Version != 4 || s.Running != 2 {
		t.Fatalf("after rollback: version %d, %d running", s.Version, s.Running)
	}
}
