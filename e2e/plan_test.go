package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// Plan then apply through the CLI, a stale plan refused, and a rollback.
func TestPlanApplyStaleAndRollback(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	specText := func(greeting string) string {
		return fmt.Sprintf(`name: planned
image: %s
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
env: {GREETING: %s}
replicas: 3
resources: {cpu: 50m, memory: 16Mi, pids: 32}
`, ref, greeting)
	}
	f := filepath.Join(t.TempDir(), "planned.yaml")
	if err := os.WriteFile(f, []byte(specText("hello")), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := d.cli("deploy", "-f", f, "--dry-run")
	if err != nil {
		t.Fatalf("deploy --dry-run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "3 instances to create") || strings.Count(out, "  create ") != 3 {
		t.Fatalf("dry run does not show 3 creates:\n%s", out)
	}
	id := regexp.MustCompile(`plan-[0-9a-f]{24}`).FindString(out)
	if id == "" {
		t.Fatalf("dry run printed no plan ID:\n%s", out)
	}
	var list api.ServiceList
	d.call("list_services", nil, &list)
	if len(list.Services) != 0 {
		t.Fatalf("the dry run created services: %+v", list.Services)
	}

	out, err = d.cli("apply", id)
	if err != nil {
		t.Fatalf("apply %s: %v\n%s", id, err, out)
	}
	d.waitFor("planned", 90*time.Second, "3 running instances", running(3))

	// A plan made, then overtaken by another change, is refused.
	var sr api.ScaleResult
	d.call("scale_service", map[string]any{"name": "planned", "replicas": 1, "dry_run": true}, &sr)
	if sr.Plan == nil || len(sr.Plan.Stop) != 2 {
		t.Fatalf("scale dry run = %+v", sr.Plan)
	}
	d.deploy(specText("changed"))
	err = d.callErr("apply_plan", map[string]any{"plan_id": sr.Plan.ID}, nil)
	if err == nil || !strings.Contains(err.Error(), "stale") || !strings.Contains(err.Error(), "version 1 to 2") {
		t.Fatalf("stale plan: error %v, want it refused with the version change", err)
	}
	s := d.waitFor("planned", 90*time.Second, "3 instances of version 2", func(s api.ServiceStatus) bool {
		if s.Version != 2 || !running(3)(s) {
			return false
		}
		for _, in := range s.Instances {
			if in.SpecVersion != 2 {
				return false
			}
		}
		return true
	})
	if s.Desired != 3 {
		t.Fatalf("the refused plan changed the replicas: desired %d", s.Desired)
	}

	out, err = d.cli("rollback", "planned", "1")
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	s = d.waitFor("planned", 90*time.Second, "3 instances of version 3", func(s api.ServiceStatus) bool {
		if s.Version != 3 || !running(3)(s) {
			return false
		}
		for _, in := range s.Instances {
			if in.SpecVersion != 3 {
				return false
			}
		}
		return true
	})
	if env, _ := s.Spec["env"].(map[string]any); env["GREETING"] != "hello" {
		t.Errorf("after rollback to 1, env = %v, want GREETING=hello", s.Spec["env"])
	}
	out, err = d.cli("history", "planned")
	if err != nil || !strings.Contains(out, "3 (current)") || strings.Count(out, "deploy") != 2 || !strings.Contains(out, "rollback to version 1") {
		t.Errorf("history: %v\n%s", err, out)
	}
	if out, err := d.cli("scale", "planned", "1", "--dry-run"); err != nil || !strings.Contains(out, "2 to stop") {
		t.Errorf("scale --dry-run: %v\n%s", err, out)
	}
	if out, err := d.cli("rm", "planned", "--dry-run"); err != nil || !strings.Contains(out, "3 to stop") {
		t.Errorf("rm --dry-run: %v\n%s", err, out)
	}
	if s := d.service("planned"); s.Desired != 3 || s.Removing {
		t.Errorf("a dry run changed the service: desired %d, removing %v", s.Desired, s.Removing)
	}
}
