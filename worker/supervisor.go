package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/health"
	"github.com/gantry-dev/gantry/logs"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/runtime"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// healthyRun is how long an instance must run before its backoff resets.
const healthyRun = 2 * time.Minute

// A running instance's log size is checked logCheckMin after it starts and
// after every check that rotated the log; the delay then doubles while the
// log stays small, up to logCheckMax. The live log of a container printing
// as fast as it can grows by rate*delay beyond LogMaxBytes before it is
// cut, so a busy log is watched closely, while a quiet one costs one stat a
// second.
const (
	logCheckMin = 100 * time.Millisecond
	logCheckMax = time.Second
)

// nextLogCheck is the delay before the next log size check, given the last
// delay and whether the last check rotated the log.
func nextLogCheck(last time.Duration, rotated bool) time.Duration {
	if rotated {
		return logCheckMin
	}
	return min(2*last, logCheckMax)
}

// teardownTimeout bounds a stop and cleanup that outlives a shutdown.
const teardownTimeout = 45 * time.Second

// finishing returns a context that ignores ctx's cancellation, for work
// that must complete once started (stopping and cleaning up an instance).
func finishing(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// supervisor owns one instance's lifecycle, from preparation to teardown.
type supervisor struct {
	w   *Worker
	id  string
	svc string
	dir string
	log *slog.Logger

	mu      sync.Mutex
	desired string
	status  state.InstanceStatus
	wake    chan struct{}
}

// prepared is everything needed to start the instance's container.
type prepared struct {
	oci     *specs.Spec
	bundle  string
	logPath string
	att     *network.Attachment
	ports   map[string]int // container port by name, for health checks
}

type outcome int

const (
	exited outcome = iota
	stopped
	unhealthy
	detached
)

func newSupervisor(w *Worker, in *state.Instance) *supervisor {
	return &supervisor{
		w:       w,
		id:      in.ID,
		svc:     in.Service,
		dir:     filepath.Join(w.cfg.Dir, in.ID),
		log:     w.log.With("instance", in.ID, "service", in.Service),
		desired: in.Desired,
		status:  in.InstanceStatus,
		wake:    make(chan struct{}, 1),
	}
}

func (s *supervisor) setDesired(d string) {
	s.mu.Lock()
	changed := s.desired != d
	s.desired = d
	s.mu.Unlock()
	if changed {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *supervisor) stopWanted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired != state.DesiredRun
}

// report records observed status (and events) through Raft.
func (s *supervisor) report(ctx context.Context, mutate func(st *state.InstanceStatus), evs ...state.Event) {
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	mutate(&s.status)
	st := s.status
	s.mu.Unlock()
	ops := []state.Op{state.SetInstanceStatus{ID: s.id, Status: st}}
	for _, ev := range evs {
		ev.Time = time.Now().UTC()
		ev.Service, ev.Instance, ev.Node = s.svc, s.id, s.w.cfg.NodeID
		ops = append(ops, state.AppendEvent{Event: ev})
	}
	if _, err := s.w.cfg.Store.Apply(ctx, ops...); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot record instance status", "err", err)
	}
}

// run drives the instance until it is stopped and cleaned up, or until ctx
// is cancelled (the worker detaches and leaves the container running).
func (s *supervisor) run(ctx context.Context, in *state.Instance, adopt *runtime.Container) {
	if in.Desired != state.DesiredRun {
		// Stopped while this worker was away (say, marked lost while the
		// node was down): stop an adopted container the way its spec says.
		var sp *spec.Service
		if svc, err := s.w.cfg.Store.Service(in.Service); err == nil {
			sp = &svc.Spec
		}
		s.teardown(ctx, sp, adopt)
		return
	}
	svc, err := s.w.cfg.Store.Service(in.Service)
	if err != nil {
		// The service is gone; the controller will ask for a stop.
		s.awaitStop(ctx)
		s.teardown(ctx, nil, adopt)
		return
	}
	sp := svc.Spec
	restarts := in.Restarts
	failures := in.Failures // the backoff keeps growing across worker restarts
	var prep *prepared
	for {
		if ctx.Err() != nil {
			return
		}
		if s.stopWanted() {
			s.teardown(ctx, &sp, adopt)
			return
		}
		// Prepare image, root filesystem, network and bundle (idempotent).
		if prep == nil {
			p, err := s.prepare(ctx, &sp, adopt != nil && adopt.Status == "running")
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if adopt != nil {
					// Cannot re-adopt what we cannot describe: start afresh.
					s.log.Warn("cannot re-adopt container, replacing it", "err", err)
					s.killDelete(ctx)
					adopt = nil
					continue
				}
				failures++
				if !s.backoff(ctx, &sp, failures, &restarts, "Failed", fmt.Sprintf("cannot prepare instance: %v", err)) {
					return
				}
				continue
			}
			prep = p
		}

		var pid int
		switch {
		case adopt != nil && adopt.Status == "running" && adopt.PID > 0:
			pid = adopt.PID
			s.log.Info("re-adopted", "pid", pid)
			s.report(ctx, func(st *state.InstanceStatus) {
				st.State, st.PID, st.Message = state.StateRunning, pid, "re-adopted after worker restart"
				st.Healthy = sp.Health == nil
			}, state.Event{Type: "Adopted", Message: fmt.Sprintf("re-adopted running container (pid %d)", pid)})
		case adopt != nil:
			// It stopped while nobody was watching: its exit code is lost.
			s.killDelete(ctx)
			exit := &state.Exit{Code: -1, Reason: "Unknown", At: time.Now().UTC()}
			adopt = nil
			s.report(ctx, func(st *state.InstanceStatus) { st.LastExit, st.PID = exit, 0 },
				state.Event{Type: "Exited", Message: "exited while the worker was down; exit code unknown"})
			if !s.afterExit(ctx, &sp, exit, &failures, &restarts, time.Time{}) {
				return
			}
			continue
		default:
			if failures > 0 {
				// Start cleans up after itself; this is belt and braces
				// after a failure. A first start skips it (two runc calls,
				// ~14 ms): recover() adopted or removed any container
				// with this ID before the supervisor started.
				s.killDelete(ctx)
			}
			p, err := s.w.cfg.Runtime.Start(ctx, s.id, prep.bundle, prep.oci, prep.logPath)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// Prepare again next time: what the start needed (the
				// network namespace, the mount) may be what went missing.
				prep = nil
				failures++
				if !s.backoff(ctx, &sp, failures, &restarts, "Failed", fmt.Sprintf("cannot start container: %v", err)) {
					return
				}
				continue
			}
			pid = p
			s.report(ctx, func(st *state.InstanceStatus) {
				st.State, st.PID, st.Message = state.StateRunning, pid, ""
				st.Healthy = sp.Health == nil
				st.StartedAt, st.NextStart = time.Now().UTC(), time.Time{}
			}, state.Event{Type: "Started", Message: fmt.Sprintf("container started (pid %d)", pid)})
		}
		started := time.Now()
		if adopt != nil && !in.StartedAt.IsZero() {
			started = in.StartedAt // it has been running since then, not since adoption
		}
		adopt = nil

		exit, why := s.supervise(ctx, &sp, prep, pid)
		if why == detached {
			return
		}
		if why == stopped {
			ctx = finishing(ctx) // the stop has begun: clean up even during shutdown
		}
		s.killDelete(ctx)
		rec := exitRecord(exit, why)
		s.report(ctx, func(st *state.InstanceStatus) {
			st.LastExit, st.PID, st.Healthy = rec, 0, false
			st.State = state.StateExited
		}, exitEvent(rec))
		if why == stopped {
			s.teardown(ctx, &sp, nil)
			return
		}
		if !s.afterExit(ctx, &sp, rec, &failures, &restarts, started) {
			return
		}
	}
}

// afterExit applies the restart policy. It returns false when the
// supervisor is done (stopped, detached, or will not restart).
func (s *supervisor) afterExit(ctx context.Context, sp *spec.Service, rec *state.Exit, failures, restarts *int, started time.Time) bool {
	restart := false
	switch sp.Restart {
	case spec.RestartNever:
	case spec.RestartOnFailure:
		restart = rec.Code != 0
	default:
		restart = true
	}
	if !restart {
		final := state.StateExited
		if rec.Code != 0 {
			final = state.StateFailed
		}
		s.report(ctx, func(st *state.InstanceStatus) {
			st.State = final
			st.Message = fmt.Sprintf("not restarted (restart: %s)", orDefault(string(sp.Restart), "always"))
		})
		s.awaitStop(ctx)
		if ctx.Err() == nil {
			s.teardown(ctx, sp, nil)
		}
		return false
	}
	if !started.IsZero() && time.Since(started) >= healthyRun {
		*failures = 0
	}
	*failures++
	return s.backoff(ctx, sp, *failures, restarts, "Restarting",
		fmt.Sprintf("exited with code %d (%s)", rec.Code, rec.Reason))
}

// backoff waits before the next start: base * 2^(failures-1), capped. It
// returns false when the wait ended because of a stop or detach.
func (s *supervisor) backoff(ctx context.Context, sp *spec.Service, failures int, restarts *int, evType, why string) bool {
	delay := s.w.cfg.BackoffBase
	for i := 1; i < failures && delay < s.w.cfg.BackoffMax; i++ {
		delay *= 2
	}
	if delay > s.w.cfg.BackoffMax {
		delay = s.w.cfg.BackoffMax
	}
	st := state.StateBackoff
	if failures >= 3 {
		st = state.StateCrashLoop
	}
	next := time.Now().Add(delay).UTC()
	msg := fmt.Sprintf("%s; restarting in %s", why, delay.Round(time.Millisecond))
	if st == state.StateCrashLoop {
		msg = fmt.Sprintf("crash loop (%d failures in a row): %s", failures, msg)
	}
	s.log.Info("backing off", "delay", delay, "failures", failures, "why", why)
	s.report(ctx, func(x *state.InstanceStatus) {
		x.State, x.Message, x.NextStart, x.Healthy, x.Failures = st, msg, next, false, failures
	}, state.Event{Type: evType, Message: msg})
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.wake:
			if s.stopWanted() {
				s.teardown(ctx, sp, nil)
				return false
			}
		case <-t.C:
			*restarts++
			s.report(ctx, func(x *state.InstanceStatus) { x.Restarts = *restarts })
			return true
		}
	}
}

// awaitStop blocks until a stop is asked for or ctx ends.
func (s *supervisor) awaitStop(ctx context.Context) {
	for !s.stopWanted() {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

type waitResult struct {
	exit runtime.Exit
	err  error
}

// supervise watches a running container: its exit, stop requests, health
// and log size.
func (s *supervisor) supervise(ctx context.Context, sp *spec.Service, prep *prepared, pid int) (runtime.Exit, outcome) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	waitCh := make(chan waitResult, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		e, err := s.w.cfg.Runtime.Wait(wctx, s.id, pid)
		waitCh <- waitResult{e, err}
	}()
	unhealthyCh := make(chan string, 1)
	if sp.Health != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.healthLoop(wctx, sp.Health, health.Target{ID: s.id, IP: prep.att.IP, Ports: prep.ports, Exec: s.w.cfg.Runtime}, unhealthyCh)
		}()
	}
	logCheck := logCheckMin
	rotate := time.NewTimer(logCheck)
	defer rotate.Stop()
	for {
		select {
		case r := <-waitCh:
			if r.err != nil && ctx.Err() != nil {
				return runtime.Exit{}, detached
			}
			if r.err != nil {
				s.log.Warn("wait failed", "err", r.err)
			}
			return r.exit, exited
		case <-s.wake:
			if s.stopWanted() {
				// A stop that has begun finishes even if the worker is
				// shutting down, so nothing is left half torn down.
				return s.stopProcess(finishing(ctx), sp, waitCh), stopped
			}
		case msg := <-unhealthyCh:
			msg = withholdCheckOutput(msg, len(sp.Secrets) > 0)
			s.report(ctx, func(st *state.InstanceStatus) { st.Healthy, st.Message = false, msg },
				state.Event{Type: "Unhealthy", Message: msg + "; restarting"})
			return s.stopProcess(ctx, sp, waitCh), unhealthy
		case <-rotate.C:
			rotated, err := logs.Rotate(prep.logPath, s.w.cfg.LogMaxBytes, s.w.cfg.LogKeep)
			if err != nil {
				s.log.Warn("log rotation failed", "err", err)
			}
			logCheck = nextLogCheck(logCheck, rotated)
			rotate.Reset(logCheck)
		case <-ctx.Done():
			return runtime.Exit{}, detached
		}
	}
}

// stopProcess sends the spec's stop signal, waits the grace period, then
// kills everything in the container.
func (s *supervisor) stopProcess(ctx context.Context, sp *spec.Service, waitCh <-chan waitResult) runtime.Exit {
	sig := syscall.SIGTERM
	if sp != nil && sp.Stop.Signal != "" {
		if n, err := spec.ParseSignal(sp.Stop.Signal); err == nil {
			sig = n
		}
	}
	grace := 10 * time.Second
	if sp != nil && sp.Stop.Grace > 0 {
		grace = sp.Stop.Grace.D()
	}
	if err := s.w.cfg.Runtime.Kill(ctx, s.id, sig, false); err != nil {
		s.log.Warn("stop signal failed", "signal", sig, "err", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case r := <-waitCh:
		return r.exit
	case <-t.C:
		s.log.Info("grace period over, killing", "grace", grace)
	case <-ctx.Done():
		return runtime.Exit{}
	}
	_ = s.w.cfg.Runtime.Kill(ctx, s.id, syscall.SIGKILL, true)
	select {
	case r := <-waitCh:
		return r.exit
	case <-time.After(10 * time.Second):
		s.log.Warn("container did not die after SIGKILL")
		return runtime.Exit{Code: 137, Signal: "SIGKILL"}
	case <-ctx.Done():
		return runtime.Exit{}
	}
}

// healthLoop probes the instance. Until the first success it probes fast
// (at most every 250ms) without counting failures, for at most
// interval*failures; then failures count toward the threshold.
func (s *supervisor) healthLoop(ctx context.Context, h *spec.Health, t health.Target, unhealthy chan<- string) {
	interval := h.Interval.D()
	if interval <= 0 {
		interval = 10 * time.Second
	}
	tr := health.Tracker{Failures: h.Failures}
	if h.Grace > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.Grace.D()):
		}
	}
	startup := true
	startupEnd := time.Now().Add(interval * time.Duration(max(h.Failures, 1)))
	fast := min(interval, 250*time.Millisecond)
	for {
		err := health.Probe(ctx, h, t)
		if ctx.Err() != nil {
			return
		}
		if startup && err != nil && time.Now().Before(startupEnd) {
			// still starting up: don't count it
		} else {
			startup = false
			switch tr.Record(err) {
			case "healthy":
				s.report(ctx, func(st *state.InstanceStatus) { st.Healthy, st.Message = true, "" },
					state.Event{Type: "Healthy", Message: "health check passed"})
			case "unhealthy":
				select {
				case unhealthy <- fmt.Sprintf("health check failed %d times in a row: %v", max(h.Failures, 1), err):
				default:
				}
				return
			}
		}
		wait := interval
		if startup {
			wait = fast
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// prepare makes image, root filesystem, network and bundle ready. When
// adopting, the network attachment must already exist.
func (s *supervisor) prepare(ctx context.Context, sp *spec.Service, adopting bool) (*prepared, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	img, err := s.w.cfg.Images.Resolve(ctx, sp.Image)
	if errdefs.IsNotFound(err) {
		s.report(ctx, func(st *state.InstanceStatus) { st.State, st.Message = state.StateStarting, "pulling "+sp.Image },
			state.Event{Type: "Pulling", Message: "pulling image " + sp.Image})
		img, err = s.w.cfg.Images.Pull(ctx, sp.Image, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", sp.Image, err)
	}
	rootfs, err := s.w.cfg.Images.Mount(ctx, img, s.dir)
	if err != nil {
		return nil, fmt.Errorf("mount root filesystem: %w", err)
	}
	want := make([]network.PortMapping, 0, len(sp.Ports))
	ports := map[string]int{}
	for _, p := range sp.Ports {
		want = append(want, network.PortMapping{Name: p.Name, ContainerPort: p.Port, HostPort: p.HostPort, Protocol: p.Protocol})
		ports[p.Name] = p.Port
	}
	s.mu.Lock()
	have := s.status.Ports
	s.mu.Unlock()
	var att *network.Attachment
	if adopting {
		att, err = s.w.cfg.Network.Attachment(ctx, s.id)
		if err != nil {
			return nil, fmt.Errorf("network attachment: %w", err)
		}
		for _, pm := range att.Ports {
			s.w.mu.Lock()
			s.w.ports[portKey(orDefault(pm.Protocol, "tcp"), pm.HostPort)] = s.id
			s.w.mu.Unlock()
		}
	} else {
		maps, err := s.w.allocPorts(s.id, want, have)
		if err != nil {
			return nil, err
		}
		att, err = s.w.cfg.Network.Setup(ctx, s.id, maps)
		if err != nil {
			s.w.releasePorts(s.id)
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	hostPorts := map[string]int{}
	for _, pm := range att.Ports {
		hostPorts[pm.Name] = pm.HostPort
	}
	hostname := s.id
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}
	mounts, err := s.writeEtc(hostname, att.IP)
	if err != nil {
		return nil, err
	}
	withSecrets, err := s.w.withSecrets(ctx, sp)
	if err != nil {
		return nil, err
	}
	cfg := img.Config
	oci, err := runtime.BuildSpec(runtime.BundleInput{
		ID:       s.id,
		Hostname: hostname,
		Service:  withSecrets,
		Image: runtime.ImageConfig{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, Env: cfg.Env,
			WorkingDir: cfg.WorkingDir, User: cfg.User},
		Rootfs:   rootfs,
		NetNS:    att.NetNS,
		InitPath: s.w.cfg.InitPath,
		Mounts:   mounts,
		Users:    runtime.UsersFromRootfs(rootfs),
	})
	if err != nil {
		return nil, err
	}
	bundle := filepath.Join(s.dir, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, err
	}
	digest := img.Digest
	s.report(ctx, func(st *state.InstanceStatus) {
		st.IP, st.Ports, st.ImageDigest = att.IP, hostPorts, digest
	})
	return &prepared{oci: oci, bundle: bundle, logPath: s.LogPath(), att: att, ports: ports}, nil
}

// LogPath is where the container's stdout and stderr go.
func (s *supervisor) LogPath() string { return filepath.Join(s.dir, "container.log") }

// writeEtc writes the instance's /etc/hosts and /etc/resolv.conf.
func (s *supervisor) writeEtc(hostname, ip string) ([]specs.Mount, error) {
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, hostname)
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || len(resolv) == 0 {
		resolv = []byte("nameserver 1.1.1.1\n")
	}
	// A loopback resolver on the host is unreachable from the container.
	var keep []string
	for _, l := range strings.Split(string(resolv), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
			continue
		}
		keep = append(keep, l)
	}
	files := map[string]string{"hosts": hosts, "resolv.conf": strings.Join(keep, "\n"), "hostname": hostname + "\n"}
	var mounts []specs.Mount
	for _, name := range []string{"hosts", "resolv.conf", "hostname"} {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			return nil, err
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: p,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
	}
	return mounts, nil
}

// killDelete removes the container, whatever its state.
func (s *supervisor) killDelete(ctx context.Context) {
	_ = s.w.cfg.Runtime.Kill(ctx, s.id, syscall.SIGKILL, true)
	if err := s.w.cfg.Runtime.Delete(ctx, s.id); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("delete container", "err", err)
	}
}

// teardown stops the container gracefully if it runs, then removes the
// container, network attachment, root filesystem and directory, and
// records the instance as stopped. A running adopted container is stopped
// with the spec's signal and grace (sp may be nil: SIGTERM, 10s).
func (s *supervisor) teardown(ctx context.Context, sp *spec.Service, adopt *runtime.Container) {
	if ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(finishing(ctx), teardownTimeout)
	defer cancel()
	if adopt != nil && adopt.Status == "running" && adopt.PID > 0 {
		wctx, cancel := context.WithCancel(ctx)
		waitCh := make(chan waitResult, 1)
		go func() {
			e, err := s.w.cfg.Runtime.Wait(wctx, s.id, adopt.PID)
			waitCh <- waitResult{e, err}
		}()
		s.report(ctx, func(st *state.InstanceStatus) { st.State = state.StateStopping })
		s.stopProcess(ctx, sp, waitCh)
		cancel()
	}
	s.killDelete(ctx)
	var errs []error
	if err := s.w.cfg.Network.Teardown(ctx, s.id); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := s.w.cfg.Images.Unmount(ctx, s.dir); err != nil {
		errs = append(errs, fmt.Errorf("unmount: %w", err))
	} else if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, err)
	}
	s.w.releasePorts(s.id)
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("teardown incomplete", "err", err)
	}
	s.report(ctx, func(st *state.InstanceStatus) {
		st.State, st.PID, st.Healthy, st.IP = state.StateStopped, 0, false, ""
		if len(errs) > 0 {
			st.Message = "cleanup incomplete: " + errors.Join(errs...).Error()
		}
	}, state.Event{Type: "Stopped", Message: "instance stopped and cleaned up"})
}

// exitRecord turns a runtime exit into the stored record with a reason.
func exitRecord(e runtime.Exit, why outcome) *state.Exit {
	rec := &state.Exit{Code: e.Code, Signal: e.Signal, At: time.Now().UTC()}
	switch {
	case e.OOMKilled:
		rec.Reason = "OOMKilled"
	case why == unhealthy:
		rec.Reason = "Unhealthy"
	case why == stopped:
		rec.Reason = "Stopped"
	case !e.Known:
		rec.Reason, rec.Code = "Unknown", -1
	case e.Code == 0:
		rec.Reason = "Completed"
	default:
		rec.Reason = "Error"
	}
	return rec
}

func exitEvent(rec *state.Exit) state.Event {
	msg := fmt.Sprintf("exited with code %d", rec.Code)
	if rec.Signal != "" {
		msg += " (" + rec.Signal + ")"
	}
	msg += ": " + rec.Reason
	typ := "Exited"
	if rec.Reason == "OOMKilled" {
		typ = "OOMKilled"
		msg += ": the container went over its memory limit; raise resources.memory"
	}
	return state.Event{Type: typ, Message: msg}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// LogPath returns the log file of an instance on this node.
func (w *Worker) LogPath(id string) string { return filepath.Join(w.cfg.Dir, id, "container.log") }
