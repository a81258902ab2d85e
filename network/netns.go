package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// ensureNetNSDir creates dir and makes it a shared mount point, the way
// iproute2 prepares /run/netns. A network namespace stays alive as long as
// any mount of its nsfs file exists; with a shared parent, a later unmount of
// /run/gantry/netns/<id> in the host mount namespace propagates into mount
// namespaces that were copied from it in the meantime (ip netns exec,
// unshare -m, ...), so the namespace is really freed on Teardown.
func ensureNetNSDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create netns dir %s: %w", dir, err)
	}
	madeMount := false
	for {
		err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: dir is not a mount point yet. Bind it onto itself once
		// and try again.
		if !errors.Is(err, unix.EINVAL) || madeMount {
			return fmt.Errorf("make netns dir %s a shared mount: %w", dir, err)
		}
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount netns dir %s onto itself: %w", dir, err)
		}
		madeMount = true
	}
}

// createNetNS makes a new network namespace and pins it by bind-mounting its
// nsfs file onto path (which must not exist).
func createNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("create netns file: %w", err)
	}

	// The namespace is made on a thread of its own. That thread stays
	// locked until its goroutine returns, so the Go runtime terminates it
	// instead of handing a thread in a foreign namespace to other
	// goroutines. The goroutine is owned by this call, which waits for it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s onto %s: %w", src, path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// isNetNS reports whether path is a mounted network namespace file.
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// removeNetNS unmounts and deletes a namespace file. Missing or already
// unmounted files are not errors.
func removeNetNS(path string) error {
	// Loop in case the file was mounted more than once; EINVAL means
	// "not a mount point (any more)".
	for i := 0; ; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount netns %s: %w", path, err)
		}
		if i == 8 {
			return fmt.Errorf("unmount netns %s: still mounted after %d unmounts", path, i+1)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns file %s: %w", path, err)
	}
	return nil
}

// listNetNS returns the names of the files in dir.
func listNetNS(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, filepath.Base(e.Name()))
		}
	}
	return names, nil
}
