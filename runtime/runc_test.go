package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

func TestNewMissingBinary(t *testing.T) {
	_, err := New(context.Background(), Options{Binary: "/nonexistent/runc", Root: t.TempDir()})
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "install the runc package") {
		t.Errorf("error does not tell how to fix it: %v", err)
	}
}

func TestNewName(t *testing.T) {
	r := newTestRuntime(t)
	if !strings.HasPrefix(r.Name(), "runc 1.") {
		t.Errorf("Name() = %q, want runc 1.x", r.Name())
	}
	if r.CgroupMode() == CgroupUnknown {
		t.Errorf("cgroup mode unknown")
	}
}

func TestStdoutAndStderrGoToLog(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "logs", spec.Service{Command: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2"}})
	pid := c.start(t, r)
	ex := waitExit(t, r, c, pid)
	if ex != (Exit{Code: 0, Known: true}) {
		t.Errorf("exit = %+v, want code 0 known", ex)
	}
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"to-stdout\n", "to-stderr\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("log %q lacks %q", data, want)
		}
	}
	st, err := os.Stat(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600 (a log can hold what the container prints, secrets included)", st.Mode().Perm())
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	for _, tc := range []struct {
		name string
		init bool
	}{{"init", true}, {"noinit", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newContainer(t, "exit3-"+tc.name, spec.Service{Command: []string{"sh", "-c", "exit 3"}, Init: boolp(tc.init)})
			ex := waitExit(t, r, c, c.start(t, r))
			if ex != (Exit{Code: 3, Known: true}) {
				t.Errorf("exit = %+v, want {Code:3 Known:true}", ex)
			}
		})
	}
}

func TestOOMKilled(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "oom", spec.Service{
		Command:   []string{"sh", "-c", `x=$(head -c 100000000 /dev/zero | tr "\0" a); sleep 100`},
		Resources: spec.Resources{Memory: 16 << 20},
	})
	ex := waitExit(t, r, c, c.start(t, r))
	if !ex.OOMKilled || ex.Code != 137 || !ex.Known {
		t.Errorf("exit = %+v, want OOMKilled, code 137, known", ex)
	}
}

func TestKilledBySignalNotOOM(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "kill9", spec.Service{
		Command:   []string{"sh", "-c", "kill -9 $$"},
		Resources: spec.Resources{Memory: 16 << 20},
	})
	ex := waitExit(t, r, c, c.start(t, r))
	want := Exit{Code: 137, Signal: "SIGKILL", Known: true}
	if ex != want {
		t.Errorf("exit = %+v, want %+v", ex, want)
	}
}

func TestKillForwardedByInit(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "term", spec.Service{Command: []string{"sleep", "1000"}})
	pid := c.start(t, r)
	// gantry-init runs in every container: keep it small.
	if rss := vmRSSKiB(t, pid); rss > 8<<10 {
		t.Errorf("gantry-init VmRSS %d KiB, want under 8 MiB", rss)
	} else {
		t.Logf("gantry-init VmRSS %d KiB", rss)
	}
	ctx := context.Background()
	if err := r.Kill(ctx, c.id, syscall.SIGTERM, false); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	start := time.Now()
	ex := waitExit(t, r, c, pid)
	want := Exit{Code: 143, Signal: "SIGTERM", Known: true}
	if ex != want {
		t.Errorf("exit = %+v, want %+v", ex, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("SIGTERM took %v to stop the container", d)
	}
	// Killing a stopped container is not an error.
	if err := r.Kill(ctx, c.id, syscall.SIGKILL, true); err != nil {
		t.Errorf("Kill of a stopped container: %v", err)
	}
}

func TestExecListStateDelete(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "exec", spec.Service{Command: []string{"sleep", "1000"}})
	pid := c.start(t, r)
	ctx := context.Background()

	code, out, err := r.Exec(ctx, c.id, []string{"echo", "hi"}, 10*time.Second)
	if err != nil || code != 0 || string(out) != "hi\n" {
		t.Errorf("Exec echo hi = %d, %q, %v; want 0, \"hi\\n\", nil", code, out, err)
	}
	code, out, err = r.Exec(ctx, c.id, []string{"sh", "-c", "echo oops >&2; exit 4"}, 10*time.Second)
	if err != nil || code != 4 || string(out) != "oops\n" {
		t.Errorf("Exec exit 4 = %d, %q, %v; want 4, \"oops\\n\", nil", code, out, err)
	}
	begin := time.Now()
	_, _, err = r.Exec(ctx, c.id, []string{"sleep", "100"}, 300*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec past its timeout: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("timed-out Exec took %v", d)
	}
	code, out, err = r.Exec(ctx, c.id, []string{"head", "-c", "200000", "/dev/zero"}, 10*time.Second)
	if err != nil || code != 0 || len(out) != maxExecOutput {
		t.Errorf("Exec of a big output = %d, %d bytes, %v; want 0, %d bytes", code, len(out), err, maxExecOutput)
	}

	list, err := r.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	found := false
	for _, lc := range list {
		if lc.ID == c.id {
			found = true
			if lc.PID != pid || lc.Status != "running" || lc.Bundle != c.bundle {
				t.Errorf("listed %+v, want pid %d running in %s", lc, pid, c.bundle)
			}
		}
	}
	if !found {
		t.Errorf("List does not show %s: %+v", c.id, list)
	}
	st, err := r.State(ctx, c.id)
	if err != nil || st.Status != "running" || st.PID != pid || st.Created.IsZero() {
		t.Errorf("State = %+v, %v; want running pid %d", st, err, pid)
	}

	waited := make(chan Exit, 1)
	go func() {
		ex, _ := r.Wait(ctx, c.id, pid)
		waited <- ex
	}()
	if err := r.Delete(ctx, c.id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	select {
	case ex := <-waited:
		if ex.Code != 137 || !ex.Known {
			t.Errorf("exit after delete = %+v, want 137 known", ex)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Delete")
	}
	if err := r.Delete(ctx, c.id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := r.State(ctx, c.id); !errdefs.IsNotFound(err) {
		t.Errorf("State after Delete: err = %v, want ErrNotFound", err)
	}
	if err := r.Kill(ctx, c.id, syscall.SIGTERM, false); err != nil {
		t.Errorf("Kill after Delete: %v", err)
	}
	if _, _, err := r.Exec(ctx, c.id, []string{"true"}, 10*time.Second); !errdefs.IsNotFound(err) {
		t.Errorf("Exec after Delete: err = %v, want ErrNotFound", err)
	}
}

func TestStartFailureCarriesRuncMessage(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "badcmd", spec.Service{Command: []string{"/no/such/program"}, Init: boolp(false)})
	_, err := r.Start(context.Background(), c.id, c.bundle, c.spec, c.logPath)
	if err == nil {
		_ = r.Delete(context.Background(), c.id)
		t.Fatal("Start of a missing program succeeded")
	}
	if !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("error lacks runc's message: %v", err)
	}
	if _, err := r.State(context.Background(), c.id); !errdefs.IsNotFound(err) {
		t.Errorf("failed container left behind: State err = %v", err)
	}
}

func TestInitReportsMissingCommand(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "initnf", spec.Service{Command: []string{"no-such-program"}})
	ex := waitExit(t, r, c, c.start(t, r))
	if ex != (Exit{Code: 127, Known: true}) {
		t.Errorf("exit = %+v, want 127", ex)
	}
	data, _ := os.ReadFile(c.logPath)
	if !strings.Contains(string(data), "no-such-program: command not found") {
		t.Errorf("log lacks init's message: %q", data)
	}
}

func TestSecurityDefaultsAndUser(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	for _, tc := range []struct {
		name, user string
		caps       []string
		want       []string
	}{
		{"default", "", nil, []string{"uid=0 gid=0", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"}},
		{"app-netbind", "app:staff", []string{"net_bind_service"}, []string{"uid=1000 gid=50", "CapEff:\t0000000000000400", "CapBnd:\t0000000000000400"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newContainer(t, "sec-"+tc.name, spec.Service{
				Command: []string{"sh", "-c", "echo uid=$(id -u) gid=$(id -g); grep -E 'Cap|NoNewPrivs' /proc/self/status; cat /proc/kcore | wc -c"},
				User:    tc.user,
				CapAdd:  tc.caps,
			})
			ex := waitExit(t, r, c, c.start(t, r))
			data, _ := os.ReadFile(c.logPath)
			if ex.Code != 0 {
				t.Fatalf("exit %+v; log:\n%s", ex, data)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(data), w) {
					t.Errorf("log lacks %q:\n%s", w, data)
				}
			}
			// /proc/kcore is masked: it reads as empty.
			if !strings.HasSuffix(strings.TrimSpace(string(data)), "\n0") {
				t.Errorf("/proc/kcore not masked:\n%s", data)
			}
		})
	}
}

func TestWaitCancel(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "cancel", spec.Service{Command: []string{"sleep", "1000"}})
	pid := c.start(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(ctx, c.id, pid); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with an expiring context: %v", err)
	}
	// The container is still there; a later Wait collects its status.
	if err := r.Kill(context.Background(), c.id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, r, c, pid); ex.Code != 137 || !ex.Known {
		t.Errorf("exit = %+v, want 137 known", ex)
	}
}

// TestWaitNotOurChild runs the container from a second process (the test
// binary as a helper), as after a restart of Gantry: this process is not the
// parent of the container's init, so Wait sees the exit through the pidfd
// only and reports Known=false, while the parent gets the real code.
func TestWaitNotOurChild(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "adopt", spec.Service{Command: []string{"sleep", "1000"}})
	if err := writeConfig(c.bundle, c.spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Delete(context.Background(), c.id) })
	args, _ := json.Marshal(adoptHelperArgs{Root: testRoot, ID: c.id, Bundle: c.bundle, Log: c.logPath})
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(args))
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	helperDone := false
	t.Cleanup(func() {
		if !helperDone {
			_ = helper.Process.Kill()
			_ = helper.Wait()
		}
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("helper printed no pid")
	}
	pid, err := strconv.Atoi(lines.Text())
	if err != nil {
		t.Fatalf("helper pid line %q", lines.Text())
	}

	waited := make(chan Exit, 1)
	errc := make(chan error, 1)
	go func() {
		ex, err := r.Wait(context.Background(), c.id, pid)
		waited <- ex
		errc <- err
	}()
	select {
	case ex := <-waited:
		t.Fatalf("Wait returned %+v before the container exited", ex)
	case <-time.After(300 * time.Millisecond):
	}
	if err := r.Kill(context.Background(), c.id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-waited:
		if err := <-errc; err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if ex.Known || ex.OOMKilled {
			t.Errorf("Wait on a non-child = %+v, want Known=false, OOMKilled=false", ex)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait on a non-child did not return after the container was killed")
	}
	if !lines.Scan() {
		t.Fatal("helper printed no exit")
	}
	var parentSaw Exit
	if err := json.Unmarshal(lines.Bytes(), &parentSaw); err != nil {
		t.Fatal(err)
	}
	if parentSaw != (Exit{Code: 137, Signal: "SIGKILL", Known: true}) {
		t.Errorf("the parent saw %+v, want 137 SIGKILL known", parentSaw)
	}
	helperDone = true
	if err := helper.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// TestWaitReapsOrphanedExec leaves a process in the container whose parent
// (a detached `runc exec`) is gone, so it is re-parented to this subreaper.
// When the container is killed, its init cannot finish exiting until that
// process is reaped; Wait must notice and reap it.
func TestWaitReapsOrphanedExec(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "orphan", spec.Service{Command: []string{"sleep", "1000"}})
	pid := c.start(t, r)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ctx := context.Background()
	if _, err := r.run(ctx, runOpts{stdout: devnull, stderr: devnull}, "exec", "--detach", c.id, "sleep", "1000"); err != nil {
		t.Fatalf("exec --detach: %v", err)
	}
	if err := r.Kill(ctx, c.id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ex, err := r.Wait(ctx, c.id, pid)
	if err != nil {
		t.Fatalf("Wait: %v (the init stayed stuck behind the orphan)", err)
	}
	if ex.Code != 137 || !ex.Known {
		t.Errorf("exit = %+v, want 137 known", ex)
	}
}

func vmRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
