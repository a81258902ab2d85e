package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupDir is where a named cgroup v1 hierarchy of Gantry's beds is
// mounted while any node exists, with a cgroup per node. Node.Exec puts
// each command in its node's cgroup, and everything it starts stays there:
// runc moves containers into its own controllers' cgroups only, never into
// a named hierarchy it does not know. So a node's processes are found
// even when they left its network namespace (containers have their own)
// and their parent died, and KillAll and Close end them all, as a machine
// that loses power.
const cgroupDir = "/run/gantry-netns-cg"

// cgroupName names the hierarchy (mount -o none,name=...).
const cgroupName = "gantrynetns"

// ensureCgroupHierarchy mounts the hierarchy at cgroupDir unless it is
// there; the caller holds the allocation lock. It fails where cgroup v1
// named hierarchies cannot be mounted (a cgroup v2 only host).
func ensureCgroupHierarchy() error {
	if err := os.MkdirAll(cgroupDir, 0o700); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	mounted, err := isMountPoint(cgroupDir)
	if err != nil || mounted {
		return err
	}
	if err := unix.Mount("cgroup", cgroupDir, "cgroup", 0, "none,name="+cgroupName); err != nil {
		_ = os.Remove(cgroupDir)
		return fmt.Errorf("netns: mount a named cgroup v1 hierarchy at %s: %w", cgroupDir, err)
	}
	return nil
}

// makeCgroup makes the node's cgroup, or leaves the node untracked (only
// the processes in its network namespace are then found) when the host
// cannot have one.
func makeCgroup(ctx context.Context, n *Node) error {
	unlock, err := lockAlloc(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ensureCgroupHierarchy(); err != nil {
		n.bed.log.Warn("netns: processes a node starts outside its network namespace (containers) are not tracked", "err", err)
		return nil
	}
	dir := filepath.Join(cgroupDir, n.NS)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("netns: %w", err)
	}
	n.cgroup = dir
	return nil
}

// cgroupPids lists the processes in a node's cgroup (none without one).
func cgroupPids(dir string) ([]int, error) {
	if dir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil && !zombie(p) {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// zombie reports whether a process has exited and waits for its parent
// (it stays listed in its cgroup until then, and no signal moves it).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// removeCgroup removes a node's (empty) cgroup and unmounts the hierarchy
// when no node's is left.
func removeCgroup(ctx context.Context, dir string) error {
	if dir == "" {
		return nil
	}
	unlock, err := lockAlloc(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: remove cgroup %s: %w", dir, err)
	}
	ents, err := os.ReadDir(cgroupDir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if e.IsDir() {
			return nil
		}
	}
	if mounted, _ := isMountPoint(cgroupDir); mounted {
		if err := unix.Unmount(cgroupDir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("netns: unmount %s: %w", cgroupDir, err)
		}
	}
	_ = os.Remove(cgroupDir)
	return nil
}
