package e2e

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// Stopping gantry dev (say, to change its policy) while gantry deploy waits
// for a rollout ends the wait, but nobody cancelled the deploy: after the
// restart the new version is still current, not reverted, its call is in
// the audit log, and the CLI said what happened.
func TestShutdownKeepsAWaitingDeploy(t *testing.T) {
	d := startDev(t)
	ref := webImage(t)
	d.deploy("name: keep\nimage: " + ref + "\ncommand: [sleep, '1000']\n")
	d.waitFor("keep", 30*time.Second, "v1 running", func(s api.ServiceStatus) bool { return s.Running == 1 })

	spec := t.TempDir() + "/v2.yaml"
	if err := os.WriteFile(spec, []byte("name: keep\nimage: "+ref+"\ncommand: [sleep, '1001']\nhealth: {exec: {command: [sh, -c, 'exit 1']}, grace: 10m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gantryBin, "deploy", "-f", spec, "--timeout", "2m")
	cmd.Env = append(cmd.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.waitFor("keep", 30*time.Second, "v2 rolling out", func(s api.ServiceStatus) bool { return s.Version == 2 })
	time.Sleep(500 * time.Millisecond) // the CLI has seen progress

	if d.session != nil {
		d.session.Close()
		d.session = nil
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_, _ = d.cmd.Process.Wait()
	err := cmd.Wait()
	if err == nil || !strings.Contains(out.String(), "lost the connection while waiting for keep version 2") {
		t.Errorf("gantry deploy when the server stopped: %v\n%s", err, out.String())
	}

	d.start()
	var h api.History
	d.call(api.ToolServiceHistory, map[string]any{"name": "keep"}, &h)
	if n := len(h.Versions); n != 2 || h.Versions[n-1].Cause != "deploy" {
		t.Fatalf("history after the restart: %+v, want version 2 kept (no revert)\n%s", h.Versions, d.log())
	}
	if strings.Contains(d.log(), "audit entry lost") {
		t.Errorf("an audit entry was lost at the shutdown:\n%s", d.log())
	}
}
