package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// maxUserDBBytes bounds how much of /etc/passwd or /etc/group is read.
const maxUserDBBytes = 4 << 20

// UsersFromRootfs returns a UserLookup over <rootfs>/etc/passwd and
// <rootfs>/etc/group. The files are read once, on first use, and resolved
// inside rootfs: symlinks (absolute or "..") cannot lead out of it.
func UsersFromRootfs(rootfs string) UserLookup {
	return &rootfsUsers{rootfs: rootfs}
}

type rootfsUsers struct {
	rootfs string

	once       sync.Once
	users      map[string]passwdEntry // by name
	usersByUID map[uint32]passwdEntry
	groups     map[string]uint32
	userErr    error
	groupErr   error
}

type passwdEntry struct{ uid, gid uint32 }

func (r *rootfsUsers) load() {
	r.once.Do(func() {
		r.users, r.usersByUID = map[string]passwdEntry{}, map[uint32]passwdEntry{}
		r.groups = map[string]uint32{}
		data, err := readInRoot(r.rootfs, "etc/passwd")
		if err != nil {
			r.userErr = err
		} else {
			parseColonFile(data, func(f []string) {
				if len(f) < 4 {
					return
				}
				uid, ok1 := parseID(f[2])
				gid, ok2 := parseID(f[3])
				if !ok1 || !ok2 {
					return
				}
				e := passwdEntry{uid, gid}
				if _, dup := r.users[f[0]]; !dup {
					r.users[f[0]] = e
				}
				if _, dup := r.usersByUID[uid]; !dup {
					r.usersByUID[uid] = e
				}
			})
		}
		data, err = readInRoot(r.rootfs, "etc/group")
		if err != nil {
			r.groupErr = err
			return
		}
		parseColonFile(data, func(f []string) {
			if len(f) < 3 {
				return
			}
			if gid, ok := parseID(f[2]); ok {
				if _, dup := r.groups[f[0]]; !dup {
					r.groups[f[0]] = gid
				}
			}
		})
	})
}

// LookupUser resolves a user name, or a numeric uid, from /etc/passwd.
func (r *rootfsUsers) LookupUser(name string) (uid, gid uint32, err error) {
	r.load()
	if e, ok := r.users[name]; ok {
		return e.uid, e.gid, nil
	}
	if n, ok := parseID(name); ok {
		if e, ok := r.usersByUID[n]; ok {
			return e.uid, e.gid, nil
		}
	}
	if r.userErr != nil {
		return 0, 0, r.userErr
	}
	return 0, 0, fmt.Errorf("user %q: %w", name, errdefs.ErrNotFound)
}

// LookupGroup resolves a group name from /etc/group.
func (r *rootfsUsers) LookupGroup(name string) (uint32, error) {
	r.load()
	if gid, ok := r.groups[name]; ok {
		return gid, nil
	}
	if r.groupErr != nil {
		return 0, r.groupErr
	}
	return 0, fmt.Errorf("group %q: %w", name, errdefs.ErrNotFound)
}

// parseColonFile calls fn with the fields of each non-comment line.
func parseColonFile(data []byte, fn func([]string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}

// readInRoot reads the regular file rel inside root, resolving every path
// component (symlinks included) as if root were "/". It uses openat2
// RESOLVE_IN_ROOT; on kernels without it, it refuses symlinks instead.
func readInRoot(root, rel string) ([]byte, error) {
	dirfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", root, err)
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		fd, err = openNoSymlinks(dirfd, rel)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("image has no /%s: %w", rel, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("open /%s in rootfs %s: %w", rel, root, err)
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("/%s in the image is not a regular file: %w", rel, errdefs.ErrInvalid)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUserDBBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read /%s: %w", rel, err)
	}
	if len(data) > maxUserDBBytes {
		return nil, fmt.Errorf("/%s in the image is larger than %d bytes: %w", rel, maxUserDBBytes, errdefs.ErrInvalid)
	}
	return data, nil
}

// openNoSymlinks opens rel below dirfd one component at a time, refusing
// symlinks and "..".
func openNoSymlinks(dirfd int, rel string) (int, error) {
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	cur := dirfd
	for i, p := range parts {
		if p == ".." {
			return -1, fmt.Errorf("path %q leaves the rootfs: %w", rel, errdefs.ErrInvalid)
		}
		flags := unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= unix.O_PATH | unix.O_DIRECTORY
		} else {
			flags |= unix.O_RDONLY | unix.O_NONBLOCK
		}
		fd, err := unix.Openat(cur, p, flags, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

var _ UserLookup = (*rootfsUsers)(nil)
