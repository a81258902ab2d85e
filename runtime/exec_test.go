package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// TestExecProcess runs commands in a container whose main process is an
// unprivileged user with one capability and an extra environment variable:
// exec'd commands get exactly those settings, split stdout and stderr,
// their exit code, bounded output, and a timeout that leaves nothing behind.
func TestExecProcess(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "xp", spec.Service{
		Command: []string{"sleep", "1000"},
		User:    "app:staff",
		CapAdd:  []string{"net_bind_service"},
		Env:     map[string]string{"GREETING": "hello there"},
		Workdir: "/tmp",
	})
	c.start(t, r)
	ctx := context.Background()
	run := func(argv []string, o ExecOptions) ExecResult {
		t.Helper()
		res, err := r.ExecProcess(ctx, c.id, argv, o)
		if err != nil {
			t.Fatalf("ExecProcess %q: %v", argv, err)
		}
		return res
	}

	res := run([]string{"sh", "-c", `echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd) greeting=$GREETING"; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status >&2; exit 3`}, ExecOptions{Timeout: 10 * time.Second})
	if res.ExitCode != 3 || res.TimedOut {
		t.Errorf("exit = %d (timed out %v), want 3", res.ExitCode, res.TimedOut)
	}
	if got, want := string(res.Stdout), "uid=1000 gid=50 cwd=/tmp greeting=hello there\n"; got != want {
		t.Errorf("stdout = %q, want %q (the main process's user, cwd and env)", got, want)
	}
	for _, w := range []string{"CapEff:\t0000000000000400", "CapBnd:\t0000000000000400", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(res.Stderr), w) {
			t.Errorf("stderr lacks %q (no more privilege than the main process):\n%s", w, res.Stderr)
		}
	}

	// No shell: a shell metacharacter string is one literal argument.
	res = run([]string{"echo", "; rm -rf / $(id)"}, ExecOptions{})
	if string(res.Stdout) != "; rm -rf / $(id)\n" || res.ExitCode != 0 {
		t.Errorf("echo of metacharacters = %q, exit %d", res.Stdout, res.ExitCode)
	}

	res = run([]string{"head", "-c", "300000", "/dev/zero"}, ExecOptions{MaxOutput: 1000})
	if len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StderrTruncated || res.ExitCode != 0 {
		t.Errorf("big output: %d bytes, truncated %v/%v, exit %d; want 1000 bytes, stdout truncated, exit 0", len(res.Stdout), res.StdoutTruncated, res.StderrTruncated, res.ExitCode)
	}

	// A timeout kills the command and its children (sh and the sleep it
	// forks), and returns promptly.
	begin := time.Now()
	res = run([]string{"sh", "-c", "echo started; sleep 171; echo never"}, ExecOptions{Timeout: 500 * time.Millisecond})
	if !res.TimedOut || string(res.Stdout) != "started\n" {
		t.Errorf("timed-out exec: timed out %v, stdout %q", res.TimedOut, res.Stdout)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("timed-out exec took %v", d)
	}
	ps := run([]string{"ps", "-o", "args"}, ExecOptions{Timeout: 10 * time.Second})
	if strings.Contains(string(ps.Stdout), "sleep 171") {
		t.Errorf("the timed-out command left processes behind:\n%s", ps.Stdout)
	}

	// A child left in the background is reparented to the container's
	// init, so it is no descendant of the command any more; it still holds
	// the output pipes and belongs to the command's session: the timeout
	// kills it too, promptly.
	begin = time.Now()
	res = run([]string{"sh", "-c", "sleep 173 & echo forked"}, ExecOptions{Timeout: 500 * time.Millisecond})
	if !res.TimedOut || string(res.Stdout) != "forked\n" {
		t.Errorf("exec leaving a background child: timed out %v, stdout %q; want a timeout (its pipes stay open) and forked", res.TimedOut, res.Stdout)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("exec leaving a background child took %v to return, want about its timeout", d)
	}
	ps = run([]string{"ps", "-o", "args"}, ExecOptions{Timeout: 10 * time.Second})
	if strings.Contains(string(ps.Stdout), "sleep 173") {
		t.Errorf("the background child of a timed-out command was left running:\n%s", ps.Stdout)
	}
	if !strings.Contains(string(ps.Stdout), "sleep 1000") {
		t.Errorf("the container's main process was killed with the command:\n%s", ps.Stdout)
	}

	// Cancelling ctx is an error, not a result.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := r.ExecProcess(cctx, c.id, []string{"sleep", "172"}, ExecOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled exec: err = %v, want DeadlineExceeded", err)
	}

	if _, err := r.ExecProcess(ctx, c.id, []string{"/no/such/program"}, ExecOptions{}); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("missing program: err = %v, want ErrInvalid naming it", err)
	}
	if _, err := r.ExecProcess(ctx, testTag+"-nosuch", []string{"true"}, ExecOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("exec in a missing container: err = %v, want ErrNotFound", err)
	}
	if _, err := r.ExecProcess(ctx, c.id, nil, ExecOptions{}); !errdefs.IsInvalid(err) {
		t.Errorf("empty argv: err = %v, want ErrInvalid", err)
	}
}

// TestExecProcessNotRunning: a container that is created but not started
// is refused with its status.
func TestExecProcessNotRunning(t *testing.T) {
	t.Parallel()
	r := newTestRuntime(t)
	c := newContainer(t, "xpstop", spec.Service{Command: []string{"true"}, Init: boolp(false)})
	pid := c.start(t, r)
	waitExit(t, r, c, pid)
	_, err := r.ExecProcess(context.Background(), c.id, []string{"true"}, ExecOptions{})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("exec in a stopped container: err = %v, want ErrConflict saying it is stopped", err)
	}
}
