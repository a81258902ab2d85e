package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// Layer unpacking.
//
// Every entry is created relative to a directory file descriptor, walking
// the entry's parent path one component at a time with openat(O_NOFOLLOW|
// O_DIRECTORY). A component that an earlier entry made a symlink (or any
// non-directory) therefore fails the walk instead of being followed, and the
// layer is rejected: a real layer never writes through one of its own
// symlinks. Names are first cleaned lexically against "/" (so "../x" and
// "/x" both become "x" inside the layer). We use openat-style calls from
// golang.org/x/sys/unix rather than github.com/cyphar/filepath-securejoin
// because securejoin is not among the modules available here, and because
// resolving symlinks inside the root (what securejoin does) is not what a
// layer needs: in overlayfs format nothing in a layer is ever written through
// a symlink. The temp dir being unpacked is private to this process, so no
// one else can swap components under us between calls.

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	xattrPAXPrefix = "SCHILY.xattr."
	opaqueXattr    = "trusted.overlay.opaque"
)

var errUnsafeEntry = errors.New("unsafe layer entry")

type unpacker struct {
	root int // directory fd of the layer dir
	log  *slog.Logger
	dirs []dirTimes // directory times, applied last
}

type dirTimes struct {
	rel          string
	atime, mtime time.Time
}

// unpackLayer extracts the uncompressed layer tar r into the empty directory
// dst, in overlayfs format.
func unpackLayer(ctx context.Context, r io.Reader, dst string, log *slog.Logger) error {
	fd, err := unix.Open(dst, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dst, err)
	}
	u := &unpacker{root: fd, log: log}
	defer unix.Close(fd)

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	u.finish()
	return nil
}

// cleanName maps a tar entry name to a path relative to the layer root that
// cannot leave it: "" is the root itself.
func cleanName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

func splitRel(rel string) (dir, base string) {
	dir, base = path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// openDir opens the directory rel below the root without following any
// symlink, creating missing components (0755, root-owned) if create is set.
// The caller closes the returned fd.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	fd, err := unix.Openat(u.root, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return fd, nil
	}
	for _, comp := range strings.Split(rel, "/") {
		nfd, err := unix.Openat(fd, comp, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			if err := unix.Mkdirat(fd, comp, 0o755); err != nil && err != unix.EEXIST {
				unix.Close(fd)
				return -1, fmt.Errorf("mkdir %q: %w", comp, err)
			}
			nfd, err = unix.Openat(fd, comp, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		unix.Close(fd)
		switch {
		case err == unix.ELOOP || err == unix.ENOTDIR:
			return -1, fmt.Errorf("%w: path component %q of %q is a symlink or not a directory; refusing to write through it: %w",
				errUnsafeEntry, comp, rel, errdefs.ErrInvalid)
		case err != nil:
			return -1, fmt.Errorf("opening %q: %w", rel, err)
		}
		fd = nfd
	}
	return fd, nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel := cleanName(hdr.Name)
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return nil // a non-directory cannot replace the root
		}
		return u.dirMeta(u.root, hdr, "")
	}
	dir, base := splitRel(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}

	parent, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)

	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(parent, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if err == unix.ENOENT {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		} else if err != nil {
			return err
		}
		fd, err := unix.Openat(parent, base, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening directory: %w", err)
		}
		defer unix.Close(fd)
		return u.dirMeta(fd, hdr, rel)

	case tar.TypeReg:
		if err := removeAt(parent, base); err != nil {
			return err
		}
		fd, err := unix.Openat(parent, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("creating file: %w", err)
		}
		f := os.NewFile(uintptr(fd), rel)
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return fmt.Errorf("writing file: %w", err)
		}
		err = u.fdMeta(fd, hdr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return setTimes(parent, base, hdr)

	case tar.TypeSymlink:
		if err := removeAt(parent, base); err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return u.pathMeta(parent, base, hdr, false)

	case tar.TypeLink:
		target := cleanName(hdr.Linkname)
		if target == rel {
			return nil
		}
		if target == "" {
			return fmt.Errorf("%w: hard link to the layer root: %w", errUnsafeEntry, errdefs.ErrInvalid)
		}
		tdir, tbase := splitRel(target)
		tfd, err := u.openDir(tdir, false)
		if err != nil {
			return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
		if err := removeAt(parent, base); err != nil {
			return err
		}
		// flags 0: linkat does not follow a symlink at the target.
		if err := unix.Linkat(tfd, tbase, parent, base, 0); err != nil {
			return fmt.Errorf("hard link to %q (it must come earlier in the same layer): %w", hdr.Linkname, err)
		}
		return nil

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := removeAt(parent, base); err != nil {
			return err
		}
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(parent, base, mode, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		return u.pathMeta(parent, base, hdr, true)

	case tar.TypeXGlobalHeader:
		return nil

	default:
		u.log.Debug("skipping unsupported tar entry", "name", hdr.Name, "type", string(hdr.Typeflag))
		return nil
	}
}

// whiteout turns a .wh. entry into overlayfs's form.
func (u *unpacker) whiteout(dir, base string) error {
	parent, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	switch {
	case base == whiteoutOpaque:
		if err := unix.Fsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking %q opaque: %w", dir, err)
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil // aufs bookkeeping (.wh..wh.plnk and the like)
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: bad whiteout name %q: %w", errUnsafeEntry, base, errdefs.ErrInvalid)
	}
	if err := removeAt(parent, victim); err != nil {
		return err
	}
	if err := unix.Mknodat(parent, victim, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout %q: %w", victim, err)
	}
	return unix.Fchownat(parent, victim, 0, 0, unix.AT_SYMLINK_NOFOLLOW)
}

// dirMeta applies owner, mode and xattrs to the open directory fd and
// remembers its times for finish (children change a directory's mtime).
func (u *unpacker) dirMeta(fd int, hdr *tar.Header, rel string) error {
	if err := u.fdMeta(fd, hdr); err != nil {
		return err
	}
	u.dirs = append(u.dirs, dirTimes{rel: rel, atime: hdr.AccessTime, mtime: hdr.ModTime})
	return nil
}

// fdMeta applies owner, mode (after chown, which clears setuid bits) and
// xattrs to an open file or directory.
func (u *unpacker) fdMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range entryXattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil {
			if err := u.xattrErr(hdr, k, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// pathMeta applies metadata to a symlink or device node that cannot be
// opened: by name relative to its parent, never following it.
func (u *unpacker) pathMeta(parent int, base string, hdr *tar.Header, chmod bool) error {
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if chmod {
		// The node was just created by us and is not a symlink.
		if err := unix.Fchmodat(parent, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if xs := entryXattrs(hdr); len(xs) > 0 {
		// l*xattr through the parent's /proc/self/fd link: the kernel resolves
		// the parent by fd, and the last component is not followed.
		p := "/proc/self/fd/" + strconv.Itoa(parent) + "/" + base
		for k, v := range xs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				if err := u.xattrErr(hdr, k, err); err != nil {
					return err
				}
			}
		}
	}
	return setTimes(parent, base, hdr)
}

func (u *unpacker) xattrErr(hdr *tar.Header, key string, err error) error {
	if err == unix.ENOTSUP || (err == unix.EPERM && strings.HasPrefix(key, "user.")) {
		u.log.Warn("dropping xattr the filesystem does not support", "entry", hdr.Name, "xattr", key, "err", err)
		return nil
	}
	return fmt.Errorf("setting xattr %s: %w", key, err)
}

// entryXattrs returns the entry's extended attributes, without the
// trusted.overlay.* ones: those steer overlayfs (redirects, opaque dirs) and
// only this unpacker may set them, from whiteout entries.
func entryXattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPAXPrefix)
		if !ok || name == "" || strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[name] = v
	}
	return out
}

func setTimes(parent int, base string, hdr *tar.Header) error {
	return utimes(parent, base, hdr.AccessTime, hdr.ModTime)
}

func utimes(dirfd int, base string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// finish sets directory times, deepest last-written first. Directories that
// a later entry removed are skipped.
func (u *unpacker) finish() {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		if d.rel == "" {
			_ = utimes(u.root, ".", d.atime, d.mtime)
			continue
		}
		dir, base := splitRel(d.rel)
		fd, err := u.openDir(dir, false)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			_ = utimes(fd, base, d.atime, d.mtime)
		}
		unix.Close(fd)
	}
}

// removeAt removes name (recursively if it is a directory) from the open
// directory parent; a missing name is fine. Symlinks are removed, not followed.
func removeAt(parent int, name string) error {
	err := unix.Unlinkat(parent, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	fd, err := unix.Openat(parent, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAt(fd, n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("removing directory %q: %w", name, err)
	}
	return nil
}
