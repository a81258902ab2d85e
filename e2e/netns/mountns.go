package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// mountDir holds the files that keep the nodes' mount namespaces. It is a
// private bind mount of itself while any is held (a mount namespace file
// may only be bound on a mount that does not propagate), unmounted when
// the last goes.
const mountDir = "/run/gantry-netns"

// sysScript runs in a node's new mount namespace: it puts a sysfs of the
// node's network namespace on /sys, with the host's cgroup tree bound
// under it, by mounting it aside and moving it over the old one (which
// then hides below it).
const sysScript = `set -e
d=$(mktemp -d /run/gantry-netns/.sys.XXXXXX)
mount -t sysfs sysfs "$d"
mount --rbind /sys/fs/cgroup "$d/fs/cgroup"
mount --move "$d" /sys
rmdir "$d"`

// makeMountNS makes and keeps the node's mount namespace, inside its
// network namespace (sysfs shows the network namespace of its mounter).
func makeMountNS(ctx context.Context, n *Node) error {
	unlock, err := lockAlloc(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := ensureMountDir(); err != nil {
		return err
	}
	if err := os.WriteFile(n.MountNS, nil, 0o600); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return run(ctx, "nsenter", "--net=/run/netns/"+n.NS, "--", "unshare", "--mount="+n.MountNS, "--propagation", "slave", "sh", "-c", sysScript)
}

func ensureMountDir() error {
	if err := os.MkdirAll(mountDir, 0o700); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	mounted, err := isMountPoint(mountDir)
	if err != nil || mounted {
		return err
	}
	if err := unix.Mount(mountDir, mountDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("netns: bind %s: %w", mountDir, err)
	}
	if err := unix.Mount("", mountDir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("netns: make %s private: %w", mountDir, err)
	}
	return nil
}

// removeMountNS lets a node's mount namespace go (it ends with its last
// process) and unmounts mountDir when no other is kept.
func removeMountNS(ctx context.Context, file string) error {
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockAlloc(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := unix.Unmount(file, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("netns: unmount %s: %w", file, err)
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: %w", err)
	}
	if ents, err := os.ReadDir(mountDir); err == nil && len(ents) == 0 {
		if mounted, _ := isMountPoint(mountDir); mounted {
			if err := unix.Unmount(mountDir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("netns: unmount %s: %w", mountDir, err)
			}
		}
		_ = os.Remove(mountDir)
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this process's
// mount namespace.
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("netns: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == path {
			return true, nil
		}
	}
	return false, sc.Err()
}
