package worker

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
)

// A node that comes back after its instances were replaced elsewhere:
// the controller marked one lost (desired stop, state lost) and deleted
// the record of another. The running worker stops and removes both
// containers, and reports the lost one stopped so its record can go.
func TestWorkerStopsLostAndVanishedInstances(t *testing.T) {
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
	img := imagetest.Busybox(t, nil)
	ref := imagetest.Registry(t) + "/worker/lost:1"
	imagetest.PushImage(t, img, ref)

	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	data := t.TempDir()
	run := filepath.Join("/run", "gantry-wktest-"+suffix)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	rt, err := runtime.New(ctx, runtime.Options{Root: filepath.Join(run, "runc"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ctx, state.Config{DataDir: filepath.Join(data, "state"), NodeID: "wk"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	imgs, err := image.Open(filepath.Join(data, "images"), image.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	netOpts := network.Options{CacheDir: filepath.Join(data, "cni"), NetNSDir: filepath.Join(run, "netns"),
		Bridge: "gw" + suffix, Subnet: fmt.Sprintf("10.93.%d.0/24", int(b[0])), NetworkName: "wk" + suffix, Logger: log}
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

	apply := func(ops ...state.Op) {
		t.Helper()
		if _, err := st.Apply(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	noInit := false
	sp := spec.Service{Name: "lost", Image: ref, Replicas: 2, Command: []string{"sleep", "1000"}, Init: &noInit,
		Restart: spec.RestartAlways, Stop: spec.Stop{Signal: "SIGKILL", Grace: spec.Duration(time.Second)}}
	apply(state.PutNode{Node: state.Node{ID: "wk", Name: "wk"}}, state.PutService{Service: state.Service{Spec: sp}},
		state.PutInstance{Instance: state.Instance{ID: "lost-0-aaaaaa", Service: "lost", Slot: 0, SpecVersion: 1, Node: "wk"}},
		state.PutInstance{Instance: state.Instance{ID: "lost-1-bbbbbb", Service: "lost", Slot: 1, SpecVersion: 1, Node: "wk"}})

	w, err := New(Config{NodeID: "wk", Dir: instDir, Store: st, Images: imgs, Runtime: rt, Network: nw, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	start := func(w *Worker) (stop func()) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
		}
	}
	stop := start(w)
	defer func() { stop() }()

	containers := func() map[string]bool {
		m := map[string]bool{}
		ctrs, _ := rt.List(ctx)
		for _, c := range ctrs {
			m[c.ID] = c.Status == "running"
		}
		return m
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				insts, _ := st.Instances(state.InstanceFilter{})
				for _, in := range insts {
					t.Logf("instance %s: desired %s state %s %s", in.ID, in.Desired, in.State, in.Message)
				}
				t.Fatalf("timed out waiting for %s; containers %v", what, containers())
			}
		}
	}
	stateOf := func(id string) string {
		in, err := st.Instance(id)
		if err != nil {
			return "deleted"
		}
		return in.State
	}
	waitFor("both instances running", func() bool {
		c := containers()
		return stateOf("lost-0-aaaaaa") == state.StateRunning && stateOf("lost-1-bbbbbb") == state.StateRunning &&
			c["lost-0-aaaaaa"] && c["lost-1-bbbbbb"]
	})

	// What the controller writes for an instance of a node down past its
	// service's tolerance, and the deletion of a record the node never
	// reported on.
	apply(state.SetInstanceDesired{ID: "lost-0-aaaaaa", Desired: state.DesiredStop},
		state.SetInstanceStatus{ID: "lost-0-aaaaaa", Status: state.InstanceStatus{State: state.StateLost, Message: "node wk down"}},
		state.DeleteInstance{ID: "lost-1-bbbbbb"})
	waitFor("the lost instance stopped and the vanished one removed", func() bool {
		c := containers()
		_, a := c["lost-0-aaaaaa"]
		_, b := c["lost-1-bbbbbb"]
		return stateOf("lost-0-aaaaaa") == state.StateStopped && !a && !b && w.Running() == 0
	})
	for _, id := range []string{"lost-0-aaaaaa", "lost-1-bbbbbb"} {
		if _, err := os.Stat(filepath.Join(instDir, id)); !os.IsNotExist(err) {
			t.Errorf("instance directory of %s left behind: %v", id, err)
		}
	}
	if ids, _ := nw.List(ctx); len(ids) != 0 {
		t.Errorf("network attachments left behind: %v", ids)
	}

	// The gantry process of the node restarts (the machine rebooted, or it
	// was killed) while its instance is marked lost: the new worker adopts
	// the container and stops it.
	apply(state.PutInstance{Instance: state.Instance{ID: "lost-0-cccccc", Service: "lost", Slot: 0, SpecVersion: 1, Node: "wk"}})
	waitFor("a third instance running", func() bool {
		return stateOf("lost-0-cccccc") == state.StateRunning && containers()["lost-0-cccccc"]
	})
	stop() // detaches: the container keeps running
	if !containers()["lost-0-cccccc"] {
		t.Fatal("the container did not survive its worker")
	}
	apply(state.SetInstanceDesired{ID: "lost-0-cccccc", Desired: state.DesiredStop},
		state.SetInstanceStatus{ID: "lost-0-cccccc", Status: state.InstanceStatus{State: state.StateLost, Message: "node wk down"}})
	w, err = New(Config{NodeID: "wk", Dir: instDir, Store: st, Images: imgs, Runtime: rt, Network: nw, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	stop = start(w)
	waitFor("the adopted lost instance stopped", func() bool {
		_, c := containers()["lost-0-cccccc"]
		return stateOf("lost-0-cccccc") == state.StateStopped && !c
	})
	// The spec's stop signal (SIGKILL) was used, not SIGTERM and the
	// default 10s grace that PID 1 sleep would sit out.
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("stopping the adopted instance took %s: its spec's stop settings were not used", took)
	}
}
