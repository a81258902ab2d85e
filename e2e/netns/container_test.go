package netns

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// gantry dev in a node pulls from a registry on the host's bridge address
// and runs a container (runc sees the cgroups through the node's /sys);
// the container keeps running when gantry is killed with SIGKILL, and
// KillAll ends it, as a machine losing power.
func TestGantryRunsAContainerInANode(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: runs a container")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	b := NewT(t, 1)
	n := b.Node(1)
	img := imagetest.Busybox(t, nil)
	ln, err := net.Listen("tcp4", b.HostIP.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	reg := ln.Addr().String()
	ref := reg + "/netns/busybox:1"
	imagetest.PushImage(t, img, ref)

	dataDir, runDir := t.TempDir(), "/run/gantry-"+b.Tag()
	bridge := "g" + b.Tag()
	runc := func(args ...string) (string, error) {
		out, err := exec.Command("runc", append([]string{"--root", runDir + "/runc"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// Runs before the bed's Close: kill the node (the container too), then
	// let runc remove the containers' cgroups and state.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.KillAll(ctx); err != nil {
			t.Error(err)
		}
		out, _ := runc("list", "-q")
		for _, id := range strings.Fields(out) {
			if out, err := runc("delete", "--force", id); err != nil {
				t.Errorf("runc delete %s: %v: %s", id, err, out)
			}
		}
		_ = os.RemoveAll(runDir)
		_ = os.Remove("/run/gantry-bridges/" + bridge + ".lock")
	})

	logPath := filepath.Join(dataDir, "gantry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const addr = "127.0.0.1:7433"
	cmd := n.Exec(context.Background(), gantryBin, "dev", "--data-dir", dataDir, "--run-dir", runDir, "--listen", addr,
		"--bridge", bridge, "--subnet", "10.90.0.0/24", "--insecure-registry", reg, "--confirm-destructive=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited })
	gantryLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	tr := &http.Transport{DialContext: n.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := healthz(tr, "http://"+addr, time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("gantry dev did not start: %v\n%s", err, gantryLog())
		}
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-netns-test", Version: "1"}, nil)
	s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{strings.TrimSpace(string(tok)), tr}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call := func(tool string, args map[string]any, out any) error {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			return err
		}
		if res.IsError {
			return fmt.Errorf("%s: %+v", tool, res.Content)
		}
		if out != nil {
			_, err = jsonRoundTrip(res.StructuredContent, out)
		}
		return err
	}
	spec := fmt.Sprintf("name: nap\nimage: %s\ncommand: [sleep, \"1000\"]\ninit: false\nreplicas: 1\n", ref)
	if err := call("deploy", map[string]any{"spec_yaml": spec}, nil); err != nil {
		t.Fatalf("%v\n%s", err, gantryLog())
	}
	var st api.ServiceStatus
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := call("get_service", map[string]any{"name": "nap"}, &st); err != nil {
			t.Fatal(err)
		}
		if st.Running == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not run: %+v\n%s", st.Instances, gantryLog())
		}
	}

	// The container's sleep is the node's (tracked by its cgroup) though it
	// lives in a network namespace of its own.
	pids, err := n.Pids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sleep := 0
	for _, p := range pids {
		if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); string(c) == "sleep\x001000\x00" {
			sleep = p
		}
	}
	if sleep == 0 {
		t.Fatalf("the container's sleep 1000 is not among the node's processes %v", pids)
	}
	if nsInode(t, fmt.Sprintf("/proc/%d/ns/net", sleep)) == nsInode(t, "/run/netns/"+n.NS) {
		t.Error("the container runs in the node's own network namespace, want one of its own")
	}

	// SIGKILL gantry: the container stays (static stability)...
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-waited
	time.Sleep(200 * time.Millisecond)
	if procState(sleep) == "" {
		t.Error("the container died with gantry")
	}
	// ...until the machine goes.
	if err := n.KillAll(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, sleep, "")
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
