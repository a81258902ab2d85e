package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// Draining the only node leaves a service's instances pending, and explain,
// events and cluster say why; making it eligible again brings them back.
func TestDrainExplainEventsThroughCLI(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(`name: drained
image: ` + ref + `
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
replicas: 2
resources: {cpu: 50m, memory: 16Mi, pids: 32}
`)
	d.waitFor("drained", 90*time.Second, "2 running instances", running(2))
	var nodes api.NodeList
	d.call("list_nodes", nil, &nodes)
	if len(nodes.Nodes) != 1 {
		t.Fatalf("nodes = %+v", nodes)
	}
	node := nodes.Nodes[0].ID

	out, err := d.cli("drain", node)
	if err != nil || !strings.Contains(out, "2 instance(s) stopped") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	d.waitFor("drained", 60*time.Second, "no live instance", func(s api.ServiceStatus) bool {
		for _, in := range s.Instances {
			if in.State != "stopping" && in.State != "stopped" {
				return false
			}
		}
		return true
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err = d.cli("explain", "drained")
		if err == nil && strings.Contains(out, "node "+node+" is drained") && strings.Contains(out, "cannot place") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("explain does not say the node is drained: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := d.cli("events", "drained", "--type", "Pending"); err != nil || !strings.Contains(out, "draining, takes no new instances") {
		t.Errorf("events --type Pending: %v\n%s", err, out)
	}
	if out, err := d.cli("cluster"); err != nil || !strings.Contains(out, "drained") {
		t.Errorf("cluster: %v\n%s", err, out)
	}

	if out, err := d.cli("eligible", node, "true"); err != nil {
		t.Fatalf("eligible: %v\n%s", err, out)
	}
	d.waitFor("drained", 90*time.Second, "2 running instances again", running(2))
	if out, err := d.cli("explain", "drained"); err != nil || !strings.Contains(out, "nothing is wrong") {
		t.Errorf("explain after recovery: %v\n%s", err, out)
	}

	// A rolling restart replaces every instance without a spec change.
	before := d.service("drained")
	if out, err := d.cli("restart", "drained"); err != nil || !strings.Contains(out, "now version") {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	after := d.waitFor("drained", 90*time.Second, "2 new instances of the next version", func(s api.ServiceStatus) bool {
		if s.Version != before.Version+1 || !running(2)(s) {
			return false
		}
		for _, in := range s.Instances {
			if in.SpecVersion != s.Version {
				return false
			}
		}
		return true
	})
	for _, old := range before.Instances {
		for _, in := range after.Instances {
			if in.ID == old.ID {
				t.Errorf("instance %s survived the restart", in.ID)
			}
		}
	}
}
