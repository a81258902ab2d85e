package e2e

// A worker's view of the servers over time.

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/e2e/netns"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// A worker that joined through the only server there was finds the servers
// that joined later through gossip: when the first server dies for good,
// the worker starts again with them (its containers keep running) and
// runs what it is given.
func TestClusterWorkerFindsLaterServers(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bed := netns.NewT(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", net.JoinHostPort(bed.HostIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	regSrv := &http.Server{Handler: registry.New(registry.Logger(log.New(discard{}, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go regSrv.Serve(ln)
	t.Cleanup(func() { regSrv.Close() })
	reg := ln.Addr().String()
	ref := reg + "/e2e/later:1"
	imagetest.PushImage(t, imagetest.Busybox(t, nil), ref)

	nodes := make([]*clusterNode, 4)
	for i := range nodes {
		n := bed.Node(i + 1)
		name := fmt.Sprintf("s%d", i+1)
		if i == 3 {
			name = "w1"
		}
		c := &clusterNode{t: t, name: name, node: n, dataDir: t.TempDir(), runDir: "/run/gantry-" + bed.Tag() + "-" + name}
		nodes[i] = c
		c.args = []string{"--data-dir", c.dataDir, "--name", c.name, "--advertise", n.IP.String(), "--log-level", "debug"}
		t.Cleanup(func() {
			c.kill9()
			_ = n.KillAll(context.Background())
			_ = syscall.Unmount(filepath.Join(c.runDir, "netns"), syscall.MNT_DETACH)
			_ = os.RemoveAll(c.runDir)
			_ = os.Remove("/run/gantry-bridges/g" + bed.Tag() + name + ".lock")
		})
	}
	allLogs := func() string {
		var b strings.Builder
		for _, c := range nodes {
			fmt.Fprintf(&b, "=== %s\n%s\n", c.name, c.log())
		}
		return b.String()
	}
	s1, w := nodes[0], nodes[3]
	s1.args = append([]string{"server", "--bootstrap"}, s1.args...)
	s1.start(ctx)
	waitHealth(t, ctx, s1, 30*time.Second, func(h health) bool { return h.role == "leader" })
	tok := func(f string) string {
		b, err := os.ReadFile(filepath.Join(s1.dataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	joinAddr := net.JoinHostPort(s1.node.IP.String(), "7434")
	w.args = append([]string{"worker", "--join", joinAddr, "--token", tok("worker-join.token"), "--insecure-registry", reg,
		"--bridge", "g" + bed.Tag() + w.name, "--subnet", "10.77.0.0/24", "--run-dir", w.runDir}, w.args...)
	w.start(ctx)
	for _, s := range nodes[1:3] {
		s.args = append([]string{"server", "--join", joinAddr, "--token", tok("server-join.token")}, s.args...)
		s.start(ctx)
	}
	for _, s := range nodes[:3] {
		waitHealth(t, ctx, s, 30*time.Second, func(h health) bool { return len(h.voters) == 3 })
	}
	// The worker learns the new servers through gossip.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(w.dataDir, "peers.json"))
		if strings.Contains(string(b), nodes[1].node.IP.String()) && strings.Contains(string(b), nodes[2].node.IP.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's peers.json does not list the later servers: %s\n%s", b, allLogs())
		}
	}
	s1.kill9()
	killed := time.Now()
	sess := nodes[1].mcpSession(ctx)
	spec := fmt.Sprintf("name: later\nimage: %s\ncommand: [\"/bin/sleep\", \"3600\"]\nresources: {cpu: 50m, memory: 16Mi}\n", ref)
	if err := clusterCall(ctx, sess, "deploy", map[string]any{"spec_yaml": spec}, nil); err != nil {
		t.Fatalf("deploy through s2 after s1 died: %v\n%s", err, allLogs())
	}
	waitService(t, ctx, sess, "later", 60*time.Second, "1 running on w1", func(s api.ServiceStatus) bool { return runningOn(s)["w1"] == 1 }, allLogs)
	if !strings.Contains(w.log(), "starting the worker again") {
		t.Errorf("the worker did not start again with the later servers:\n%s", w.log())
	}
	t.Logf("MEASURED the worker runs new work through the later servers %v after its join server died", time.Since(killed).Round(time.Millisecond))
	_ = clusterCall(ctx, sess, "remove_service", map[string]any{"name": "later"}, nil)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(runcRunning(w.runDir)) > 0; {
		time.Sleep(200 * time.Millisecond)
	}
}
