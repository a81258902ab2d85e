package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// A fixed host port fits once per node: on the single dev node, replicas 2
// gives 1 running instance and 1 replica pending with the port and node
// named (in the plan, explain and events), and no crash loop. The CLI's
// --dry-run verbs print plans and change nothing.
func TestFixedHostPortOncePerNodeAndDryRunVerbs(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	port := freePort(t)
	spec := fmt.Sprintf(`name: hostport
image: %s
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
replicas: 2
ports:
  - {name: http, port: 8080, host_port: %d}
resources: {cpu: 50m, memory: 16Mi, pids: 32}
`, ref, port)
	want := fmt.Sprintf("host port %d/tcp", port)

	var plan api.DeployResult
	d.call("deploy", map[string]any{"spec_yaml": spec, "dry_run": true}, &plan)
	if plan.Plan == nil || len(plan.Plan.Create) != 1 || !strings.Contains(plan.Plan.Pending, want) {
		t.Fatalf("deploy plan = %+v, want 1 create and 1 pending on %s", plan.Plan, want)
	}
	d.deploy(spec)
	d.waitFor("hostport", 90*time.Second, "1 running instance", running(1))
	time.Sleep(3 * time.Second) // a crash loop would show by now
	s := d.service("hostport")
	if s.Running != 1 || len(s.Instances) != 1 || s.Instances[0].Restarts != 0 {
		t.Fatalf("service = %+v, want 1 instance running without restarts", s)
	}
	node := s.Instances[0].Node
	out, err := d.cli("explain", "hostport")
	if err != nil || !strings.Contains(out, want) || !strings.Contains(out, node) {
		t.Errorf("explain does not name %s on %s: %v\n%s", want, node, err, out)
	}
	if out, err := d.cli("events", "hostport", "--type", "Pending"); err != nil || !strings.Contains(out, want) {
		t.Errorf("events --type Pending: %v\n%s", err, out)
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || !strings.Contains(body, "gantry e2e") {
		t.Errorf("the running instance does not answer on host port %d: %v %q", port, err, body)
	}

	// Dry runs through the CLI change nothing.
	out, err = d.cli("drain", node, "--dry-run")
	if err != nil || !strings.Contains(out, "plan plan-") || !strings.Contains(out, "stop") || !strings.Contains(out, "gantry apply") {
		t.Fatalf("drain --dry-run: %v\n%s", err, out)
	}
	if out, err := d.cli("cluster"); err != nil || strings.Contains(out, "not eligible") {
		t.Errorf("a drain dry run changed the node: %v\n%s", err, out)
	}
	if s := d.service("hostport"); s.Running != 1 {
		t.Errorf("a drain dry run stopped instances: %+v", s)
	}
	out, err = d.cli("image", "pull", ref, "--dry-run")
	if err != nil || !strings.Contains(out, "nothing downloaded") || !strings.Contains(out, "cached") || !strings.Contains(out, "0 B to fetch") {
		t.Errorf("image pull --dry-run of a cached image: %v\n%s", err, out)
	}
	img := imagetest.Busybox(t, map[string]string{"/dry.txt": "dry\n"})
	tarPath := t.TempDir() + "/dry.tar"
	if err := tarball.WriteToFile(tarPath, name.MustParseReference("local.test/e2e/dry:1").(name.Tag), img); err != nil {
		t.Fatal(err)
	}
	out, err = d.cli("image", "import", tarPath, "--dry-run")
	if err != nil || !strings.Contains(out, "nothing imported") || !strings.Contains(out, "valid docker-save tarball with 1 image") || !strings.Contains(out, "local.test/e2e/dry:1") {
		t.Errorf("image import --dry-run: %v\n%s", err, out)
	}
	if out, err := d.cli("image", "ls"); err != nil || strings.Contains(out, "local.test/e2e/dry") {
		t.Errorf("an import dry run imported: %v\n%s", err, out)
	}
	out, err = d.cli("token", "create", "--name", "dry", "--scope", "read", "--dry-run")
	if err != nil || !strings.Contains(out, "nothing created") || strings.Contains(out, "gty_") {
		t.Errorf("token create --dry-run: %v\n%s", err, out)
	}
	if out, err := d.cli("token", "ls"); err != nil || strings.Contains(out, " dry ") {
		t.Errorf("a token dry run created a token: %v\n%s", err, out)
	}
	if out, err := d.cli("token", "revoke", "0123456789ab", "--dry-run"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("token revoke --dry-run of an unknown ID: %v\n%s", err, out)
	}

	// With its last instance gone the network's masquerade and guard rules
	// go too, while gantry dev still runs.
	masq := "gantry: masquerade " + d.bridge
	if nat, _ := exec.Command("iptables-save").Output(); !strings.Contains(string(nat), masq) {
		t.Fatalf("no masquerade rule for %s while an instance runs", d.bridge)
	}
	if out, err := d.cli("rm", "hostport"); err != nil {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		nat, _ := exec.Command("iptables-save").Output()
		if !strings.Contains(string(nat), masq) && !strings.Contains(string(nat), "-i "+d.bridge+" ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules of %s left after its last instance was removed:\n%s", d.bridge, nat)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
