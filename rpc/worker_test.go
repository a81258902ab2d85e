package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
	"github.com/gantry-dev/gantry/worker"
)

// Static stability with a real worker and real containers: a worker whose
// servers all stop keeps its container running, a worker restarted while
// they are still down re-adopts it from the disk cache instead of removing
// it, and once the servers are back its queued reports arrive and it
// follows new orders again.
func TestWorkerKeepsRunningWithoutServers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs runc containers in network namespaces")
	}
	for _, bin := range []string{"runc", "iptables", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s on PATH", bin)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs the CNI plugins in /usr/lib/cni")
	}
	t.Parallel()
	img := imagetest.Busybox(t, nil)
	ref := imagetest.Registry(t) + "/rpc/static:1"
	imagetest.PushImage(t, img, ref)

	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	node := "wk-" + suffix
	data := t.TempDir()
	run := filepath.Join("/run", "gantry-rpctest-"+suffix)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	rt, err := runtime.New(ctx, runtime.Options{Root: filepath.Join(run, "runc"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := image.Open(filepath.Join(data, "images"), image.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	netOpts := network.Options{CacheDir: filepath.Join(data, "cni"), NetNSDir: filepath.Join(run, "netns"),
		Bridge: "gr" + suffix, Subnet: fmt.Sprintf("10.94.%d.0/24", int(b[0])), NetworkName: "rp" + suffix, Logger: log}
	nw, err := network.New(ctx, netOpts)
	if err != nil {
		t.Fatal(err)
	}
	instDir := filepath.Join(data, "instances")
	t.Cleanup(func() { // whatever the test left: containers, attachments, the bridge, mounts
		bg := context.Background()
		if ctrs, err := rt.List(bg); err == nil {
			for _, c := range ctrs {
				_ = rt.Kill(bg, c.ID, syscall.SIGKILL, true)
				_ = rt.Delete(bg, c.ID)
			}
		}
		if ids, err := nw.List(bg); err == nil {
			for _, id := range ids {
				_ = nw.Teardown(bg, id)
			}
		}
		if ents, err := os.ReadDir(instDir); err == nil {
			for _, e := range ents {
				_ = imgs.Unmount(bg, filepath.Join(instDir, e.Name()))
			}
		}
		_ = network.RemoveNetwork(bg, netOpts.Bridge, netOpts.Subnet)
		_ = unix.Unmount(netOpts.NetNSDir, unix.MNT_DETACH)
		_ = os.RemoveAll(run)
	})

	c := newCluster(t)
	noInit := false
	id := "static-0-" + suffix[:6]
	sp := spec.Service{Name: "static", Image: ref, Replicas: 1, Command: []string{"sleep", "1000"}, Init: &noInit,
		Restart: spec.RestartAlways, Stop: spec.Stop{Signal: "SIGKILL", Grace: spec.Duration(time.Second)}}
	mustApply(t, c.st, state.PutNode{Node: state.Node{ID: node, Name: node}}, state.PutService{Service: state.Service{Spec: sp}},
		state.PutInstance{Instance: state.Instance{ID: id, Service: "static", Slot: 0, SpecVersion: 1, Node: node}})

	cl := c.client(t, RoleWorker, node)
	cache := filepath.Join(data, "assignment.json")
	open := func() *RemoteStore {
		rs, err := OpenRemoteStore(ctx, RemoteStoreConfig{Client: cl, Node: node, CacheFile: cache, Wait: time.Second, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	start := func(rs *RemoteStore) (w *worker.Worker, stop func()) {
		w, err := worker.New(worker.Config{NodeID: node, Dir: instDir, Store: rs, Images: imgs, Runtime: rt, Network: nw, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		return w, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
			_ = rs.Close()
		}
	}
	running := func() bool {
		ctrs, _ := rt.List(ctx)
		for _, ct := range ctrs {
			if ct.ID == id {
				return ct.Status == "running"
			}
		}
		return false
	}
	serverState := func() string {
		in, err := c.st.Instance(id)
		if err != nil {
			return "deleted"
		}
		return in.State
	}

	rs := open()
	w, stop := start(rs)
	eventually(t, 30*time.Second, "the instance running, as the servers see it", func() bool {
		return running() && serverState() == state.StateRunning
	})
	eventually(t, 5*time.Second, "the snapshot with the running status cached", func() bool {
		return rs.Index() >= c.st.Index()
	})

	// Every server stops: the container keeps running.
	c.srv.stop()
	eventually(t, 10*time.Second, "the worker to notice", func() bool { return !rs.Online() })
	time.Sleep(500 * time.Millisecond)
	if !running() || w.Running() != 1 {
		t.Fatalf("cut off from the servers: container running %v, supervisors %d", running(), w.Running())
	}

	// The worker restarts while they are still down: it adopts the
	// container from its cached assignment and reports it (queued).
	stop()
	if !running() {
		t.Fatal("the container did not survive its worker")
	}
	rs = open()
	w, stop = start(rs)
	defer func() { stop() }()
	eventually(t, 10*time.Second, "the re-adoption report queued", func() bool { return rs.Queued() > 0 && w.Running() == 1 })
	time.Sleep(500 * time.Millisecond)
	if !running() {
		t.Fatal("a worker restarted with no server removed its container")
	}
	before := len(c.st.Events(state.EventFilter{Instance: id}))

	// The servers return: the queue is flushed, and the worker follows
	// orders again.
	c.srv.start(c.srv.addr)
	eventually(t, 15*time.Second, "the queued reports flushed", func() bool {
		return rs.Queued() == 0 && len(c.st.Events(state.EventFilter{Instance: id})) > before
	})
	evs := c.st.Events(state.EventFilter{Instance: id})
	if last := evs[len(evs)-1]; last.Type != "Adopted" || last.Node != node {
		t.Errorf("last event = %+v, want the adoption reported by %s", last, node)
	}
	mustApply(t, c.st, state.SetInstanceDesired{ID: id, Desired: state.DesiredStop})
	eventually(t, 20*time.Second, "the instance stopped on the servers' order", func() bool {
		return !running() && serverState() == state.StateStopped
	})
}
