package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// DefaultExecOutput bounds each of an exec's stdout and stderr when
// ExecOptions.MaxOutput is 0.
const DefaultExecOutput = 64 << 10

// execDrainWait is how long output is still read after the runtime CLI
// exits: a background process the command left may hold the pipes open.
const execDrainWait = 500 * time.Millisecond

// ExecOptions tune ExecProcess.
type ExecOptions struct {
	// Timeout, when positive, bounds the command; when it expires the
	// command and its descendants are killed and TimedOut is set.
	Timeout time.Duration
	// MaxOutput bounds stdout and stderr each (DefaultExecOutput when 0);
	// the rest is read and dropped, so the command never blocks on a pipe.
	MaxOutput int
}

// ExecResult is how a command run by ExecProcess ended.
type ExecResult struct {
	// ExitCode is the command's exit code (128+N when killed by signal N).
	ExitCode        int
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	// TimedOut is true when the timeout expired and the command was killed.
	TimedOut bool
	Duration time.Duration
}

// ExecProcess runs argv (no shell) in the running container id, as the
// container's own process runs: the user, environment, working directory,
// capabilities, no_new_privileges, rlimits and security labels come from
// the container's bundle config.json, so the command gets no more privilege
// than the container's main process. stdin is /dev/null; stdout and stderr
// are captured separately and bounded.
//
// When the timeout expires or ctx is cancelled, the exec'd process (found
// through --pid-file), its descendants and the rest of its session (a
// child it left in the background) are killed, and ExecProcess waits
// for the runtime CLI to reap them, so nothing is left running. A timeout
// is a result (TimedOut); a cancelled ctx is an error wrapping ctx.Err().
// A container that does not exist is errdefs.ErrNotFound; one that is not
// running is errdefs.ErrConflict naming its status; a command the runtime
// cannot start (no such executable) is errdefs.ErrInvalid.
func (r *Runtime) ExecProcess(ctx context.Context, id string, argv []string, o ExecOptions) (ExecResult, error) {
	if err := checkID(id); err != nil {
		return ExecResult{}, err
	}
	if len(argv) == 0 || argv[0] == "" {
		return ExecResult{}, fmt.Errorf("exec in container %s: empty command: %w", id, errdefs.ErrInvalid)
	}
	c, err := r.State(ctx, id)
	if err != nil {
		return ExecResult{}, err
	}
	if c.Status != "running" {
		return ExecResult{}, fmt.Errorf("container %s is %s, not running: %w", id, c.Status, errdefs.ErrConflict)
	}
	proc, err := execProcess(c.Bundle, argv)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	tmp, err := os.MkdirTemp("", "gantry-exec-")
	if err != nil {
		return ExecResult{}, err
	}
	defer os.RemoveAll(tmp)
	procFile, pidFile, logPath := filepath.Join(tmp, "process.json"), filepath.Join(tmp, "exec.pid"), filepath.Join(tmp, "runtime.log")
	data, err := json.Marshal(proc)
	if err != nil {
		return ExecResult{}, err
	}
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		return ExecResult{}, err
	}

	limit := o.MaxOutput
	if limit <= 0 {
		limit = DefaultExecOutput
	}
	stdout, err := newCapture(limit)
	if err != nil {
		return ExecResult{}, err
	}
	defer stdout.close()
	stderr, err := newCapture(limit)
	if err != nil {
		return ExecResult{}, err
	}
	defer stderr.close()

	cmd := exec.Command(r.binary, "--root", r.root, "--log", logPath, "--log-format", "json",
		"exec", "--process", procFile, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = stdout.w, stderr.w // *os.File: Wait does not wait for readers
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: start %s: %w", id, r.binary, err)
	}
	stdout.started()
	stderr.started()
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()

	tctx := ctx
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var res ExecResult
	var waitErr error
	select {
	case waitErr = <-waitc:
	case <-tctx.Done():
		res.TimedOut = ctx.Err() == nil
		r.killExec(cmd, pidFile, c.PID)
		select {
		case waitErr = <-waitc:
		case <-time.After(execKillWait):
			// The CLI did not exit after its process died: kill it too.
			_ = cmd.Process.Kill()
			waitErr = <-waitc
		}
	}
	res.Duration = time.Since(start)
	res.Stdout, res.StdoutTruncated = stdout.finish(execDrainWait)
	res.Stderr, res.StderrTruncated = stderr.finish(execDrainWait)
	if !res.TimedOut && ctx.Err() != nil {
		return res, fmt.Errorf("exec %q in container %s: %w", argv[0], id, ctx.Err())
	}
	if msg := lastLogError(logPath); msg != "" && !res.TimedOut {
		return res, fmt.Errorf("exec %q in container %s: %s: %w", argv[0], id, msg, classifyExec(msg))
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if res.ExitCode < 0 { // the CLI itself was killed by a signal
			res.ExitCode = 128 + int(unix.SIGKILL)
		}
	default:
		return res, fmt.Errorf("exec %q in container %s: %w", argv[0], id, waitErr)
	}
	return res, nil
}

// classifyExec maps the runtime's complaint about an exec to a category:
// a command that cannot be started (missing, not executable) is the
// caller's to fix.
func classifyExec(msg string) error {
	m := strings.ToLower(msg)
	if strings.Contains(m, "exec:") && (strings.Contains(m, "no such file or directory") ||
		strings.Contains(m, "not found") || strings.Contains(m, "permission denied") || strings.Contains(m, "exec format error")) {
		return errdefs.ErrInvalid
	}
	return classify(msg)
}

// execProcess is the container's own process from bundle/config.json with
// argv in place of its arguments and no terminal.
func execProcess(bundle string, argv []string) (*specs.Process, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's bundle config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("%s has no process: %w", filepath.Join(bundle, "config.json"), errdefs.ErrInvalid)
	}
	p := *s.Process
	p.Args = append([]string(nil), argv...)
	p.CommandLine = ""
	p.Terminal = false
	p.ConsoleSize = nil
	return &p, nil
}

// killExec kills the exec'd process, its descendants and every process of
// its session (the runtime starts it as a session leader): a child it put
// in the background and left behind is reparented to the container's init,
// so it is no longer a descendant, yet it still holds the output pipes and
// would keep the runtime CLI waiting. Only processes in the container's PID
// namespace are killed, so a PID reused meanwhile on the host is spared.
// The process's PID (in the host's namespace) appears in pidFile once the
// runtime started it; while it has not, the runtime CLI itself is killed
// instead.
func (r *Runtime) killExec(cmd *exec.Cmd, pidFile string, initPID int) {
	deadline := time.Now().Add(execKillWait)
	for {
		if pid, err := readPIDFile(pidFile); err == nil {
			victims := execVictims(pid, initPID)
			for _, p := range victims {
				_ = unix.Kill(p, unix.SIGKILL)
			}
			r.log.Debug("exec timed out: killed the command", "pid", pid, "processes", len(victims))
			return
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// execProc is what killExec needs from /proc/<pid>/stat.
type execProc struct {
	ppid, session int
}

// execVictims returns pid, its descendants and the other members of its
// session, read from /proc (best effort: processes come and go), keeping
// those in the PID namespace of the container whose init is initPID (all,
// when that namespace cannot be read).
func execVictims(pid, initPID int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	stats := map[int]execProc{}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readExecProc(p); ok {
			stats[p] = st
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	seen := map[int]bool{pid: true}
	out := []int{pid}
	queue := []int{pid}
	for p, st := range stats {
		// Session members and, below, their descendants.
		if st.session == pid && !seen[p] && p != initPID {
			seen[p] = true
			out = append(out, p)
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	ns := pidNamespace(initPID)
	if ns == "" {
		return out
	}
	kept := out[:0]
	for _, p := range out {
		if pidNamespace(p) == ns {
			kept = append(kept, p)
		}
	}
	return kept
}

// pidNamespace identifies the PID namespace of a process ("" when it
// cannot be read, e.g. the process is gone).
func pidNamespace(pid int) string {
	if pid <= 0 {
		return ""
	}
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// readExecProc reads a process's parent PID and session ID from
// /proc/<pid>/stat.
func readExecProc(pid int) (execProc, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return execProc{}, false
	}
	// "pid (comm) state ppid pgrp session ...": comm may hold spaces and
	// parentheses.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return execProc{}, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 4 {
		return execProc{}, false
	}
	pp, err1 := strconv.Atoi(f[1])
	sid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return execProc{}, false
	}
	return execProc{ppid: pp, session: sid}, true
}

// capture reads one output pipe of an exec into a bounded buffer, dropping
// (but still reading) what does not fit.
type capture struct {
	r, w  *os.File
	buf   boundedBuffer
	done  chan struct{}
	total int64
}

func newCapture(limit int) (*capture, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &capture{r: r, w: w, buf: boundedBuffer{max: limit}, done: make(chan struct{})}, nil
}

// started closes our copy of the write end (the child has its own) and
// starts reading; finish stops the reader.
func (c *capture) started() {
	_ = c.w.Close()
	c.w = nil
	go func() {
		defer close(c.done)
		n, _ := io.Copy(&c.buf, c.r)
		c.total = n
	}()
}

// finish waits up to wait for the writers to close the pipe, then stops
// reading, and returns what was kept and whether anything was dropped.
func (c *capture) finish(wait time.Duration) ([]byte, bool) {
	select {
	case <-c.done:
	case <-time.After(wait):
		_ = c.r.SetReadDeadline(time.Now())
		<-c.done
	}
	return c.buf.Bytes(), c.total > int64(c.buf.buf.Len())
}

func (c *capture) close() {
	if c.w != nil {
		_ = c.w.Close()
	}
	_ = c.r.Close()
}
