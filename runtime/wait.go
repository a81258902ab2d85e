package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Wait blocks until the container's init process pid exits or ctx is done.
//
// When the process is our child (we are its subreaper, see New) it reaps it
// and returns the real exit status (Known). When it is not (the container
// was adopted after Gantry restarted), it only learns that the process has
// gone, through the pidfd becoming readable, and returns Known=false. In
// both cases OOMKilled comes from the container cgroup's OOM-kill counter,
// so the container must not be deleted before Wait returns; Wait does not
// delete it. Wait never waits for arbitrary children (no wait4(-1)), so it
// does not steal exit statuses from os/exec users in the same process.
//
// While it waits, Wait also reaps orphans that would keep the container's
// init from finishing its exit (see orphans.go).
//
// When the container runs gantry-init, an exit code 128+N is the init
// passing on its child's death by signal N, and Signal is set accordingly.
func (r *Runtime) Wait(ctx context.Context, id string, pid int) (Exit, error) {
	// Read the container's config first: it names the cgroup, and it is
	// gone once the caller deletes the container.
	cgroupsPath, withInit := r.containerConfig(ctx, id)

	ex, err := waitPID(ctx, pid, func() {
		if !processExiting(pid) {
			return
		}
		n, err := reapOrphans()
		if n > 0 || err != nil {
			r.log.Warn("reaped orphaned container processes that kept the container's init from exiting", "instance", id, "reaped", n, "err", err)
		}
	})
	if err != nil {
		return Exit{}, fmt.Errorf("wait for container %s (pid %d): %w", id, pid, err)
	}
	if ex.Signal == "" && withInit && ex.Code > 128 && ex.Code <= 128+64 {
		ex.Signal = unix.SignalName(unix.Signal(ex.Code - 128))
	}
	n, err := oomKillCount(r.cgroups, cgroupsPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.log.Debug("container cgroup gone (deleted before Wait returned?); OOM kills unknown", "instance", id, "cgroup", cgroupsPath)
	case err != nil:
		r.log.Warn("cannot read the container's OOM-kill count", "instance", id, "cgroup", cgroupsPath, "err", err)
	}
	ex.OOMKilled = n > 0
	r.log.Debug("container exited", "instance", id, "pid", pid, "code", ex.Code, "signal", ex.Signal, "oom_killed", ex.OOMKilled, "known", ex.Known)
	return ex, nil
}

// containerConfig returns the cgroups path of a container and whether its
// process runs gantry-init, from its bundle's config.json. When the
// container cannot be found it falls back to the default cgroups path.
func (r *Runtime) containerConfig(ctx context.Context, id string) (cgroupsPath string, withInit bool) {
	cgroupsPath = DefaultCgroupsPath(id)
	st, err := r.State(ctx, id)
	if err != nil {
		r.log.Debug("container state unavailable; assuming the default cgroup", "instance", id, "err", err)
		return cgroupsPath, false
	}
	data, err := os.ReadFile(filepath.Join(st.Bundle, "config.json"))
	if err != nil {
		r.log.Debug("container config unavailable; assuming the default cgroup", "instance", id, "err", err)
		return cgroupsPath, false
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return cgroupsPath, false
	}
	if s.Linux != nil && s.Linux.CgroupsPath != "" {
		cgroupsPath = s.Linux.CgroupsPath
	}
	return cgroupsPath, usesInit(&s)
}

// longAgo is a deadline in the past, to wake a blocked pidfd read.
var longAgo = time.Unix(1, 0)

// waitTick is how often a waiting Wait checks that the init is not stuck
// exiting behind orphans (see orphans.go).
const waitTick = time.Second

// waitPID waits for pid to exit through a pidfd on the Go netpoller (a
// pidfd becomes readable when its process exits), so ctx can interrupt it.
// Our child is reaped and its status returned (Known); any other process is
// only observed to exit (Known false). tick, if not nil, runs every
// waitTick while the process lives.
func waitPID(ctx context.Context, pid int, tick func()) (Exit, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) { // kernel before 5.10: no PIDFD_NONBLOCK
		if fd, err = unix.PidfdOpen(pid, 0); err == nil {
			err = unix.SetNonblock(fd, true)
		}
	}
	if errors.Is(err, unix.ESRCH) {
		// Already gone (and reaped by someone else): nothing to collect.
		return Exit{}, nil
	}
	if err != nil {
		return Exit{}, fmt.Errorf("pidfd_open: %w", err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))
	defer f.Close()
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return Exit{}, fmt.Errorf("pidfd cannot be polled (kernel 5.3 or newer needed): %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return Exit{}, err
	}
	// The deadline wakes the read for ticks and, set in the past, for
	// cancellation; the mutex keeps a tick from re-arming a cancelled wait.
	var (
		mu        sync.Mutex
		cancelled bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		cancelled = true
		_ = f.SetReadDeadline(longAgo)
	})
	defer stop()
	arm := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if cancelled {
			return false
		}
		_ = f.SetReadDeadline(time.Now().Add(waitTick))
		return true
	}

	var (
		ex      Exit
		waitErr error
		child   = true
	)
	check := func(pfd uintptr) bool {
		if child {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PIDFD, int(pfd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
			switch {
			case errors.Is(err, unix.ECHILD):
				child = false // not ours: fall through to polling
			case err != nil:
				waitErr = fmt.Errorf("waitid: %w", err)
				return true
			case info.Signo == 0:
				return false // still running
			default:
				// It is our exited child, a zombie that cannot be
				// reaped by anyone else: reap it by PID.
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
					waitErr = fmt.Errorf("wait4: %w", err)
					return true
				}
				ex = exitFromStatus(ws)
				return true
			}
		}
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			waitErr = fmt.Errorf("poll pidfd: %w", err)
			return true
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	}
	for arm() {
		err := rc.Read(check)
		if err == nil {
			return ex, waitErr
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return Exit{}, err
		}
		if ctx.Err() == nil && tick != nil {
			tick()
		}
	}
	return Exit{}, ctx.Err()
}

func exitFromStatus(ws unix.WaitStatus) Exit {
	switch {
	case ws.Exited():
		return Exit{Code: ws.ExitStatus(), Known: true}
	case ws.Signaled():
		return Exit{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal()), Known: true}
	}
	return Exit{Code: -1, Known: true}
}
