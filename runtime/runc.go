package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// The driver executes the runtime binary itself rather than going through
// go-runc: it needs a per-call --log file to put the runtime's own error
// message into Go errors (go-runc only has one global log), the container's
// stdio must be a plain file inherited by `create` (no IO relay), and exec
// needs its own timeout handling that kills the exec'd process, not only the
// runtime CLI. The CLI surface used (create, start, state, list, kill,
// delete, exec with --root/--log/--log-format) is common to runc, crun and
// youki.

// DefaultRoot is where the runtime keeps its state (`runc --root`).
const DefaultRoot = "/run/gantry/runc"

// maxExecOutput bounds the combined output Exec returns.
const maxExecOutput = 64 << 10

// execKillWait bounds how long a cancelled Exec waits for the exec'd
// process to appear, and then for the runtime CLI to exit.
const execKillWait = 5 * time.Second

// cleanupTimeout bounds deleting a half-created container.
const cleanupTimeout = 10 * time.Second

// Options configure New.
type Options struct {
	// Binary is a name in PATH or a path of a runc-compatible CLI (runc,
	// crun, youki). Default "runc".
	Binary string
	// Root is the runtime's state directory. Default DefaultRoot.
	Root string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Exit is how a container's init process ended.
type Exit struct {
	Code      int    // exit code; 128+N when killed by signal N
	Signal    string // e.g. SIGKILL, when killed by a signal
	OOMKilled bool   // the container's cgroup recorded an OOM kill
	// Known is false when the code could not be collected because the
	// process was not our child (adopted after a restart of Gantry).
	Known bool
}

// Container is a container as the runtime reports it.
type Container struct {
	ID      string
	PID     int
	Status  string // creating, created, running, paused, stopped
	Bundle  string
	Created time.Time
}

// Runtime drives a runc-compatible CLI. Its methods are safe for concurrent
// use on different containers.
type Runtime struct {
	binary  string
	root    string
	info    runtimeInfo
	cgroups CgroupMode
	log     *slog.Logger
	// maxNoFile is the highest RLIMIT_NOFILE containers can get: our own
	// hard limit when we cannot raise it (no CAP_SYS_RESOURCE), else 0.
	maxNoFile uint64
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// New finds and checks the runtime binary, detects the cgroup mode and makes
// this process a child subreaper (PR_SET_CHILD_SUBREAPER), so that container
// init processes, orphaned when `create` exits, become its children and Wait
// can collect their exit status. The subreaper flag is process-wide: every
// orphaned descendant of this process (not only containers) is re-parented
// to it and stays a zombie until something waits for it.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	bin := opts.Binary
	if bin == "" {
		bin = "runc"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, errdefs.WithHint(
			fmt.Errorf("container runtime %q not found: %w: %w", bin, err, errdefs.ErrUnavailable),
			"install the runc package (apt-get install runc), or name another runc-compatible runtime binary such as crun or youki")
	}
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w: %s: %w", path, err, bytes.TrimSpace(out), errdefs.ErrUnavailable)
	}
	info := parseVersion(string(out))
	mode, err := DetectCgroupMode()
	if err != nil {
		return nil, err
	}
	if err := checkCompat(info, mode); err != nil {
		return nil, err
	}
	root := opts.Root
	if root == "" {
		root = DefaultRoot
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runtime state directory: %w", err)
	}
	r := &Runtime{binary: path, root: root, info: info, cgroups: mode, log: logger, maxNoFile: noFileCeiling()}
	if r.maxNoFile > 0 {
		logger.Info("this process cannot raise RLIMIT_NOFILE (no CAP_SYS_RESOURCE); container limits are capped", "max_nofile", r.maxNoFile)
	}
	// Probe: a runtime that cannot list its (possibly empty) root in JSON
	// does not speak runc's CLI.
	if _, err := r.List(ctx); err != nil {
		return nil, errdefs.WithHint(
			fmt.Errorf("%s (%s) does not behave like runc: %w", path, info, err),
			"use runc, crun or youki")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	logger.Info("container runtime ready", "runtime", info.String(), "binary", path, "root", root, "cgroups", mode.String())
	return r, nil
}

// Name returns the runtime's name and version, e.g. "runc 1.1.5".
func (r *Runtime) Name() string { return r.info.String() }

// CgroupMode returns the host's cgroup mode detected by New.
func (r *Runtime) CgroupMode() CgroupMode { return r.cgroups }

// Start writes bundleDir/config.json from s, creates and starts the
// container with stdin /dev/null and stdout and stderr appended to logPath
// (the file is handed to the container, so output survives Gantry), and
// returns the PID of the container's init. The runtime's own complaints
// during create land in that log too, and its error message is in the
// returned error. When s runs gantry-init, Start returns once the init
// forwards signals. On failure it deletes the
// container again. Every started container must be waited for (Wait reaps
// its init).
func (r *Runtime) Start(ctx context.Context, id, bundleDir string, s *specs.Spec, logPath string) (int, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	if err := writeConfig(bundleDir, r.capRlimits(s)); err != nil {
		return 0, fmt.Errorf("container %s: %w", id, err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("container %s: open log: %w", id, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()

	pidFile := filepath.Join(bundleDir, "init.pid")
	_ = os.Remove(pidFile)
	_, err = r.run(ctx, runOpts{stdin: devnull, stdout: logf, stderr: logf},
		"create", "--bundle", bundleDir, "--pid-file", pidFile, id)
	if err != nil {
		r.cleanupFailedStart(ctx, id, pidFile)
		return 0, fmt.Errorf("create container %s: %w", id, err)
	}
	pid, err := readPIDFile(pidFile)
	if err != nil {
		r.cleanupFailedStart(ctx, id, pidFile)
		return 0, fmt.Errorf("create container %s: %w", id, err)
	}
	if _, err := r.run(ctx, runOpts{}, "start", id); err != nil {
		r.cleanupFailedStart(ctx, id, pidFile)
		return 0, fmt.Errorf("start container %s: %w", id, err)
	}
	if usesInit(s) && !waitInitReady(ctx, pid, initReadyTimeout) {
		r.log.Warn("gantry-init did not install its signal handlers in time; an early stop signal may be lost", "instance", id, "pid", pid)
	}
	r.log.Debug("container started", "instance", id, "pid", pid)
	return pid, nil
}

// initReadyTimeout bounds how long Start waits for gantry-init to forward
// signals.
const initReadyTimeout = 2 * time.Second

func usesInit(s *specs.Spec) bool {
	return s.Process != nil && len(s.Process.Args) > 0 && s.Process.Args[0] == InitMountPath
}

// initReadyName is the name (/proc/PID/comm) gantry-init takes once it
// forwards signals (see cmd/gantry-init).
const initReadyName = "gantry-init"

// waitInitReady waits until gantry-init (pid) has taken its ready name.
// Until then a signal would be lost: `start` returns before the container
// process has even exec'd the init, and the kernel discards signals sent to
// a PID namespace's init that has no handler for them.
func waitInitReady(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	commPath := fmt.Sprintf("/proc/%d/comm", pid)
	for {
		data, err := os.ReadFile(commPath)
		if err != nil {
			return false // gone already
		}
		if strings.TrimSpace(string(data)) == initReadyName {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// capRlimits returns s with RLIMIT_NOFILE lowered to what the runtime can
// set (see noFileCeiling); s itself is not modified.
func (r *Runtime) capRlimits(s *specs.Spec) *specs.Spec {
	if s == nil || s.Process == nil || r.maxNoFile == 0 {
		return s
	}
	var out *specs.Spec
	for i, rl := range s.Process.Rlimits {
		if rl.Type != "RLIMIT_NOFILE" || rl.Hard <= r.maxNoFile {
			continue
		}
		if out == nil {
			cp, proc := *s, *s.Process
			proc.Rlimits = append([]specs.POSIXRlimit(nil), s.Process.Rlimits...)
			cp.Process = &proc
			out = &cp
		}
		out.Process.Rlimits[i].Hard = r.maxNoFile
		out.Process.Rlimits[i].Soft = min(rl.Soft, r.maxNoFile)
	}
	if out == nil {
		return s
	}
	return out
}

// noFileCeiling returns this process's hard RLIMIT_NOFILE when it lacks
// CAP_SYS_RESOURCE (so the runtime, our child, cannot give a container
// more), or 0 when there is no such ceiling.
func noFileCeiling() uint64 {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0
	}
	if data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0 {
		return 0
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Max
}

// cleanupFailedStart deletes a container that failed to start and reaps its
// init, which is our child once `create` has exited.
func (r *Runtime) cleanupFailedStart(ctx context.Context, id, pidFile string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := r.Delete(ctx, id); err != nil {
		r.log.Warn("delete container after failed start", "instance", id, "err", err)
	}
	pid, err := readPIDFile(pidFile)
	if err != nil {
		return
	}
	for i := 0; i < 50; i++ {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || err != nil { // reaped, or not our child
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends sig to the container's init, or to all its processes.
// A container that is stopped or gone is not an error.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	args = append(args, id, strconv.Itoa(int(sig)))
	_, err := r.run(ctx, runOpts{}, args...)
	if err == nil || errdefs.IsNotFound(err) || errors.Is(err, errNotRunning) {
		return nil
	}
	return fmt.Errorf("kill container %s: %w", id, err)
}

// Delete removes the container, killing it first if it still runs.
// Deleting a container that does not exist is not an error.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, runOpts{}, "delete", "--force", id)
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("delete container %s: %w", id, err)
}

// runcState is `runc state` / `runc list --format json` output.
type runcState struct {
	ID      string    `json:"id"`
	PID     int       `json:"pid"`
	Status  string    `json:"status"`
	Bundle  string    `json:"bundle"`
	Created time.Time `json:"created"`
}

func (s runcState) container() Container {
	return Container{ID: s.ID, PID: s.PID, Status: s.Status, Bundle: s.Bundle, Created: s.Created}
}

// State returns the container's state; errdefs.ErrNotFound when it does not
// exist.
func (r *Runtime) State(ctx context.Context, id string) (Container, error) {
	out, err := r.run(ctx, runOpts{}, "state", id)
	if err != nil {
		return Container{}, fmt.Errorf("state of container %s: %w", id, err)
	}
	var st runcState
	if err := json.Unmarshal(out, &st); err != nil {
		return Container{}, fmt.Errorf("state of container %s: parse %s output: %w", id, r.info.kind, err)
	}
	return st.container(), nil
}

// List returns every container in the runtime's root.
func (r *Runtime) List(ctx context.Context) ([]Container, error) {
	out, err := r.run(ctx, runOpts{}, "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var sts []runcState
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &sts); err != nil {
			return nil, fmt.Errorf("list containers: parse %s output: %w", r.info.kind, err)
		}
	}
	cs := make([]Container, 0, len(sts))
	for _, s := range sts {
		cs = append(cs, s.container())
	}
	return cs, nil
}

// Exec runs argv in the running container and returns its exit code and
// combined output (at most 64 KiB; the rest is dropped). When timeout (if
// positive) or ctx expires the process is killed and the error wraps
// context.DeadlineExceeded or context.Canceled.
func (r *Runtime) Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (int, []byte, error) {
	if len(argv) == 0 {
		return -1, nil, fmt.Errorf("exec in container %s: empty command: %w", id, errdefs.ErrInvalid)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	pidf, err := os.CreateTemp("", "gantry-exec-*.pid")
	if err != nil {
		return -1, nil, err
	}
	pidFile := pidf.Name()
	pidf.Close()
	os.Remove(pidFile) // runc refuses an existing pid file on some versions
	defer os.Remove(pidFile)

	out := &boundedBuffer{max: maxExecOutput}
	args := append([]string{"exec", "--pid-file", pidFile, id}, argv...)
	_, err = r.run(ctx, runOpts{stdout: out, stderr: out, execPIDFile: pidFile}, args...)
	code := 0
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, out.Bytes(), fmt.Errorf("exec %q in container %s: %w", argv[0], id, ctx.Err())
	case errors.As(err, &exitErr):
		// The runtime reported no error of its own: the code is the
		// process's (128+N when it was killed by signal N).
		code = exitErr.ExitCode()
	case err != nil:
		return -1, out.Bytes(), fmt.Errorf("exec %q in container %s: %w", argv[0], id, err)
	}
	return code, out.Bytes(), nil
}

// runOpts are the stdio of one runtime invocation. A nil stdout is
// captured and returned; a nil stderr is captured for error messages.
type runOpts struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// execPIDFile, for exec: on cancel, the exec'd process (whose PID is
	// there) is killed, and the runtime CLI exits on its own after
	// reaping it (killing the CLI would orphan the process to us).
	execPIDFile string
}

// errNotRunning marks "container not running"-style runtime errors.
var errNotRunning = errors.New("container not running")

// run executes the runtime with the global flags and a private JSON log.
// A failure that the runtime explained in its log is returned as an error
// carrying that message and an errdefs category; a non-zero exit without
// such a message is returned as the *exec.ExitError itself.
func (r *Runtime) run(ctx context.Context, o runOpts, args ...string) ([]byte, error) {
	lf, err := os.CreateTemp("", "gantry-runc-*.log")
	if err != nil {
		return nil, fmt.Errorf("runtime log file: %w", err)
	}
	logPath := lf.Name()
	lf.Close()
	defer os.Remove(logPath)

	full := append([]string{"--root", r.root, "--log", logPath, "--log-format", "json"}, args...)
	cmd := exec.CommandContext(ctx, r.binary, full...)
	cmd.Stdin = o.stdin
	var stdout bytes.Buffer
	stderr := &boundedBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = o.stdout, o.stderr
	if o.stdout == nil {
		cmd.Stdout = &stdout
	}
	if o.stderr == nil {
		cmd.Stderr = stderr
	}
	if o.execPIDFile != "" {
		cmd.Cancel = func() error {
			// The runtime writes the pid file once the process exists;
			// give a slow setup time to get there.
			deadline := time.Now().Add(execKillWait)
			for {
				if pid, err := readPIDFile(o.execPIDFile); err == nil {
					return unix.Kill(pid, unix.SIGKILL)
				}
				if time.Now().After(deadline) {
					return cmd.Process.Kill()
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		// Then allow the CLI to reap the process and exit, and output
		// pipes held by the process's own children to close.
		cmd.WaitDelay = execKillWait
	}
	runErr := cmd.Run()
	if runErr == nil {
		return stdout.Bytes(), nil
	}
	msg := lastLogError(logPath)
	if msg == "" {
		msg = strings.TrimSpace(stderr.String())
	}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) && msg == "" {
		return stdout.Bytes(), runErr
	}
	if msg == "" {
		msg = runErr.Error()
	}
	return stdout.Bytes(), fmt.Errorf("%s %s: %s: %w", r.info.kind, args[0], msg, classify(msg))
}

// classify maps a runtime error message to an error category.
func classify(msg string) error {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "does not exist"),
		strings.Contains(m, "no such file or directory") && strings.Contains(m, "status"), // crun
		strings.Contains(m, "container not found"):
		return errdefs.ErrNotFound
	case strings.Contains(m, "already exists"):
		return errdefs.ErrConflict
	case strings.Contains(m, "not running"),
		strings.Contains(m, "stopped"),
		strings.Contains(m, "process already finished"):
		return fmt.Errorf("%w: %w", errNotRunning, errdefs.ErrConflict)
	case strings.Contains(m, "executable file not found"),
		strings.Contains(m, "exec format error"),
		strings.Contains(m, "permission denied") && strings.Contains(m, "exec"):
		return errdefs.ErrInvalid
	}
	return errdefs.ErrUnavailable
}

// lastLogError returns the message of the last error-level entry of a
// runtime JSON log ({"level":"error","msg":"..."} per line).
func lastLogError(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var msg string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Level == "error" || e.Level == "fatal" {
			msg = e.Msg
		}
	}
	return strings.TrimSpace(msg)
}

func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("container id %q: want letters, digits, '_', '.', '+', '-' (at most 128): %w", id, errdefs.ErrInvalid)
	}
	return nil
}

// writeConfig writes bundleDir/config.json atomically.
func writeConfig(bundleDir string, s *specs.Spec) error {
	if s == nil {
		return fmt.Errorf("no runtime spec: %w", errdefs.ErrInvalid)
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bundleDir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(bundleDir, ".config-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(bundleDir, "config.json"))
}

func readPIDFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, data)
	}
	return pid, nil
}

// boundedBuffer keeps the first max bytes written to it and drops the rest
// (reporting success, so the writer is never blocked or failed).
type boundedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *boundedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *boundedBuffer) String() string { return b.buf.String() }
