package image

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// Mount data (the overlay options) must fit in one page. Absolute layer
// paths are ~100 bytes each, so lower dirs are named by short symlinks in
// <root>/l/ and the mount is made from a thread whose working directory is
// the store root, with relative "l/<name>" lower dirs (the same idea as
// Docker's overlay2 driver).
const maxMountData = 4095

// linkLen is the default length of a layer's short link name (hex digits of
// its diffID). On a clash with another layer's link the name grows.
const linkLen = 12

// ensureLink makes <root>/l/<name> point at the layer dir of diffID (hex
// digits only) and returns name.
func (s *Store) ensureLink(hexID string) error {
	_, err := s.linkName(hexID)
	return err
}

func (s *Store) linkName(hexID string) (string, error) {
	target := filepath.Join("..", "layers", "sha256", hexID)
	for n := linkLen; n <= len(hexID); n += 4 {
		name := hexID[:min(n, len(hexID))]
		p := filepath.Join(s.root, "l", name)
		got, err := os.Readlink(p)
		if err == nil {
			if got == target {
				return name, nil
			}
			continue // another layer with the same prefix owns this name
		}
		if !os.IsNotExist(err) {
			return "", fmt.Errorf("layer link %s: %w", p, err)
		}
		if err := os.Symlink(target, p); err != nil {
			if os.IsExist(err) { // created concurrently: look again
				n -= 4
				continue
			}
			return "", fmt.Errorf("layer link %s: %w", p, err)
		}
		return name, nil
	}
	return "", fmt.Errorf("layer link for %s: no free name", hexID)
}

// Mount mounts img as an overlay at dir/rootfs, with dir/upper and dir/work
// for the container's writes, and returns the rootfs path. If dir/rootfs is
// already an overlay mount (e.g. the worker restarted), it is returned as is.
func (s *Store) Mount(ctx context.Context, img *Image, dir string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if img == nil {
		return "", fmt.Errorf("mount: nil image: %w", errdefs.ErrInvalid)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mount %s: %w", dir, err)
	}
	if strings.ContainsAny(dir, ",:\n") {
		return "", errdefs.WithHint(fmt.Errorf("mount: directory %q contains ',' or ':': %w", dir, errdefs.ErrInvalid),
			"overlay mount options cannot name such paths; use a data directory without them")
	}
	rootfs := filepath.Join(dir, "rootfs")
	upper := filepath.Join(dir, "upper")
	work := filepath.Join(dir, "work")

	fstype, mounted, err := mountedAt(rootfs)
	if err != nil {
		return "", err
	}
	if mounted {
		if fstype != "overlay" {
			return "", fmt.Errorf("mount: %s is already a %s mount, not an image overlay: %w", rootfs, fstype, errdefs.ErrConflict)
		}
		return rootfs, nil
	}
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("mount: %w", err)
		}
	}

	var lowers []string
	for i := len(img.Layers) - 1; i >= 0; i-- {
		hexID := strings.TrimPrefix(img.Layers[i], "sha256:")
		if _, err := os.Stat(s.layerDir(hexID)); err != nil {
			return "", errdefs.WithHint(fmt.Errorf("mount %s: layer %s is not in the store: %w", img.Ref, img.Layers[i], errdefs.ErrNotFound),
				"pull the image again")
		}
		name, err := s.linkName(hexID)
		if err != nil {
			return "", err
		}
		lowers = append(lowers, "l/"+name)
	}
	if len(lowers) == 0 {
		lowers = []string{"empty"}
	}
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) > maxMountData {
		return "", errdefs.WithHint(fmt.Errorf("mount %s: %d layers do not fit in the overlay mount options: %w", img.Ref, len(img.Layers), errdefs.ErrInvalid),
			"squash the image into fewer layers")
	}
	if err := mountFrom(s.root, "overlay", rootfs, "overlay", data); err != nil {
		return "", fmt.Errorf("mount overlay at %s for %s: %w", rootfs, img.Ref, err)
	}
	s.log.Debug("mounted image", "ref", img.Ref, "rootfs", rootfs, "layers", len(img.Layers))
	return rootfs, nil
}

// mountFrom calls mount(2) with dir as the working directory, so relative
// paths in data resolve below dir. The working directory is per process, so
// the call runs on a locked OS thread that first unshares its filesystem
// attributes (CLONE_FS); that thread is never unlocked, so the Go runtime
// ends it when the goroutine returns instead of reusing it elsewhere.
func mountFrom(dir, source, target, fstype, data string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- unix.Mount(source, target, fstype, 0, data)
	}()
	return <-errc
}

// Unmount unmounts dir/rootfs. It is not an error if nothing is mounted
// there. A busy mount is detached lazily.
func (s *Store) Unmount(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	// Loop in case mounts are stacked on the mountpoint.
	for range 8 {
		_, mounted, err := mountedAt(rootfs)
		if err != nil {
			return err
		}
		if !mounted {
			return nil
		}
		err = unix.Unmount(rootfs, 0)
		if err == unix.EBUSY {
			s.log.Warn("rootfs busy, detaching it", "rootfs", rootfs)
			err = unix.Unmount(rootfs, unix.MNT_DETACH)
		}
		switch err {
		case nil:
		case unix.EINVAL, unix.ENOENT:
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", rootfs, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after repeated unmounts: %w", rootfs, errdefs.ErrUnavailable)
}

// mountedAt reports whether path is a mountpoint in this mount namespace and
// the filesystem type of the top mount there, from /proc/self/mountinfo.
func mountedAt(path string) (fstype string, mounted bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mp, fs, ok := parseMountinfo(sc.Text())
		if ok && mp == path {
			fstype, mounted = fs, true // later lines are mounted on top
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("reading mount table: %w", err)
	}
	return fstype, mounted, nil
}

// parseMountinfo returns the mount point and fs type of a mountinfo line:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(line string) (mountpoint, fstype string, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 10 {
		return "", "", false
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+1 >= len(fields) {
		return "", "", false
	}
	return unescapeMountinfo(fields[4]), fields[sep+1], true
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
