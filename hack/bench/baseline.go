package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// benchRunc is the bench's own runc state root, apart from gantry's.
	benchRunc = "/run/gantry-bench"
	// benchCgroup is the parent cgroup of the baseline containers.
	benchCgroup = "gantry-bench"
)

// baseline runs raw runc on a bundle equivalent to one Gantry generated.
type baseline struct {
	dir string // scratch directory: rootfs, upper, work, bundles
	log *slog.Logger

	spec    *specs.Spec // Gantry's config.json, adapted
	rootfs  string
	mounted bool
	live    map[string]int // container ID -> init PID, not yet deleted
	seq     int
}

// prepare adapts the config.json Gantry wrote for a running instance:
// files bind-mounted from the instance directory are copied, the root is
// an overlay of the same unpacked layers (a copy when overlay is refused),
// the network namespace is a fresh one made by runc, and the cgroup is the
// bench's own.
func (b *baseline) prepare(ctx context.Context, configJSON []byte, instDir string, layerDirs []string) error {
	b.live = map[string]int{}
	var s specs.Spec
	if err := json.Unmarshal(configJSON, &s); err != nil {
		return fmt.Errorf("parse gantry's config.json: %w", err)
	}
	if s.Root == nil || s.Linux == nil || s.Process == nil {
		return errors.New("gantry's config.json has no root, linux or process section")
	}
	files := filepath.Join(b.dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		return err
	}
	for i, m := range s.Mounts {
		if !strings.HasPrefix(m.Source, instDir+"/") {
			continue
		}
		data, err := os.ReadFile(m.Source)
		if err != nil {
			return fmt.Errorf("copy bind-mount source %s: %w", m.Source, err)
		}
		dst := filepath.Join(files, filepath.Base(m.Source))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		s.Mounts[i].Source = dst
	}
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = "" // a fresh, unconfigured one
		}
	}
	if err := b.makeRootfs(ctx, layerDirs); err != nil {
		return err
	}
	s.Root.Path = b.rootfs
	b.spec = &s
	return os.MkdirAll(benchRunc, 0o700)
}

// makeRootfs mounts an overlay of the layer dirs (bottom layer first in
// layerDirs) with its own upper and work dirs, or copies them when the
// kernel refuses the mount.
func (b *baseline) makeRootfs(ctx context.Context, layerDirs []string) error {
	if len(layerDirs) == 0 {
		return errors.New("the image has no layers")
	}
	b.rootfs = filepath.Join(b.dir, "rootfs")
	upper, work := filepath.Join(b.dir, "upper"), filepath.Join(b.dir, "work")
	for _, d := range []string{b.rootfs, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	lower := slices.Clone(layerDirs)
	slices.Reverse(lower) // overlayfs lists the top layer first
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	err := unix.Mount("overlay", b.rootfs, "overlay", 0, opts)
	if err == nil {
		b.mounted = true
		return nil
	}
	b.log.Warn("overlay mount refused; copying the layers instead", "err", err)
	for _, l := range layerDirs {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, cerr := exec.CommandContext(cctx, "cp", "-a", l+"/.", b.rootfs).CombinedOutput()
		cancel()
		if cerr != nil {
			return fmt.Errorf("copy layer %s: %w: %s", l, cerr, out)
		}
	}
	return nil
}

// bundle writes a fresh bundle for container id.
func (b *baseline) bundle(id string) (string, error) {
	dir := filepath.Join(b.dir, "bundles", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	s := *b.spec
	lin := *s.Linux
	lin.CgroupsPath = "/" + benchCgroup + "/" + id
	s.Linux = &lin
	data, err := json.MarshalIndent(&s, "", "\t")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
}

// runc runs one runc command the way Gantry's runtime does (JSON log file,
// stdio /dev/null) and returns its wall time.
func (b *baseline) runc(ctx context.Context, dir string, args ...string) (time.Duration, error) {
	took, _, err := b.runcCPU(ctx, dir, args...)
	return took, err
}

// runcCPU is runc that also returns the CPU time (user + system) of the
// command and the processes it waited for.
func (b *baseline) runcCPU(ctx context.Context, dir string, args ...string) (time.Duration, time.Duration, error) {
	logPath := filepath.Join(dir, "runc.log")
	full := append([]string{"--root", benchRunc, "--log", logPath, "--log-format", "json"}, args...)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "runc", full...)
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return took, cpu, fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, tail(logPath, 600))
	}
	return took, cpu, nil
}

// runDetached times `runc run -d` of a fresh container; it also returns
// the CPU time runc used.
func (b *baseline) runDetached(ctx context.Context) (time.Duration, time.Duration, error) {
	id, dir, err := b.next()
	if err != nil {
		return 0, 0, err
	}
	pidFile := filepath.Join(dir, "init.pid")
	took, cpu, err := b.runcCPU(ctx, dir, "run", "-d", "--bundle", dir, "--pid-file", pidFile, id)
	b.track(id, pidFile)
	if err != nil {
		return 0, 0, err
	}
	return took, cpu, b.remove(ctx, id)
}

// createStart times `runc create` then `runc start`: the two commands
// Gantry's runtime runs for each container. When the bundle runs
// gantry-init, it also times how long after `start` the init takes its
// ready name (Gantry waits for that, polling every millisecond), else
// ready is 0.
func (b *baseline) createStart(ctx context.Context) (run, cpu, ready time.Duration, err error) {
	id, dir, err := b.next()
	if err != nil {
		return 0, 0, 0, err
	}
	pidFile := filepath.Join(dir, "init.pid")
	t1, c1, err := b.runcCPU(ctx, dir, "create", "--bundle", dir, "--pid-file", pidFile, id)
	b.track(id, pidFile)
	if err != nil {
		return 0, 0, 0, err
	}
	t2, c2, err := b.runcCPU(ctx, dir, "start", id)
	if err != nil {
		return 0, 0, 0, err
	}
	if args := b.spec.Process.Args; len(args) > 0 && strings.HasSuffix(args[0], "/init") {
		start := time.Now()
		comm := fmt.Sprintf("/proc/%d/comm", b.live[id])
		for time.Since(start) < 2*time.Second {
			if data, err := os.ReadFile(comm); err == nil && strings.TrimSpace(string(data)) == "gantry-init" {
				ready = time.Since(start)
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return t1 + t2, c1 + c2, ready, b.remove(ctx, id)
}

// killDeleteMissing times what Gantry's worker runs before each fresh
// start: `runc kill --all` and `runc delete --force` of a container that
// does not exist yet.
func (b *baseline) killDeleteMissing(ctx context.Context) (wall, cpu time.Duration, err error) {
	id := fmt.Sprintf("gantry-bench-missing-%d", os.Getpid())
	dir := filepath.Join(b.dir, "bundles", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, err
	}
	// Both fail (no such container), as they do in the worker.
	t1, c1, _ := b.runcCPU(ctx, dir, "kill", "--all", id, "9")
	t2, c2, _ := b.runcCPU(ctx, dir, "delete", "--force", id)
	return t1 + t2, c1 + c2, ctx.Err()
}

func (b *baseline) next() (string, string, error) {
	b.seq++
	id := fmt.Sprintf("gantry-bench-%d-%d", os.Getpid(), b.seq)
	dir, err := b.bundle(id)
	return id, dir, err
}

func (b *baseline) track(id, pidFile string) {
	pid := 0
	if data, err := os.ReadFile(pidFile); err == nil {
		fmt.Sscanf(strings.TrimSpace(string(data)), "%d", &pid)
	}
	b.live[id] = pid
}

// remove deletes a container and reaps its init (the bench is a child
// subreaper, so orphaned container inits are its children).
func (b *baseline) remove(ctx context.Context, id string) error {
	pid := b.live[id]
	dir := filepath.Join(b.dir, "bundles", id)
	if _, err := b.runc(context.WithoutCancel(ctx), dir, "delete", "--force", id); err != nil {
		return err
	}
	delete(b.live, id)
	reap(pid)
	_ = os.RemoveAll(dir)
	return nil
}

// reap waits (briefly) for a child that has been killed.
func reap(pid int) {
	if pid <= 0 {
		return
	}
	for i := 0; i < 100; i++ {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cleanup deletes every bench container (also ones a crashed earlier run
// left), unmounts the rootfs and removes the bench's cgroups and runc root.
func (b *baseline) cleanup(ctx context.Context) error {
	var errs []error
	for _, id := range runcList(ctx, benchRunc) {
		if !strings.HasPrefix(id, "gantry-bench-") {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := exec.CommandContext(cctx, "runc", "--root", benchRunc, "delete", "--force", id).CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", id, err, out))
		}
		reap(b.live[id])
	}
	if b.mounted {
		if err := unix.Unmount(b.rootfs, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", b.rootfs, err))
		} else {
			b.mounted = false
		}
	}
	// runc removes each container's cgroup; the parent is ours to remove.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + benchCgroup)
	dirs = append(dirs, "/sys/fs/cgroup/"+benchCgroup)
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	if ents, err := os.ReadDir(benchRunc); err == nil && len(ents) == 0 {
		_ = os.Remove(benchRunc)
	}
	return errors.Join(errs...)
}
