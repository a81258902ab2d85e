package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking sets owners, xattrs and creates device nodes")
	}
}

type entry struct {
	hdr  tar.Header
	body string
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func unpackInto(t *testing.T, data []byte) (string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst, unpackLayer(t.Context(), bytes.NewReader(data), dst, slog.New(slog.DiscardHandler))
}

func TestUnpackKeepsMetadata(t *testing.T) {
	needRoot(t)
	mtime := time.Unix(1600000000, 0)
	data := tarOf(t,
		entry{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 0, Gid: 42, ModTime: mtime}},
		entry{hdr: tar.Header{Name: "etc/conf", Typeflag: tar.TypeReg, Mode: 0o4751, Uid: 1000, Gid: 1001, ModTime: mtime,
			PAXRecords: map[string]string{"SCHILY.xattr.user.test": "v", "SCHILY.xattr.trusted.overlay.redirect": "/x"}}, body: "hello"},
		entry{hdr: tar.Header{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "conf", Uid: 7, Gid: 8, ModTime: mtime}},
		entry{hdr: tar.Header{Name: "etc/hard", Typeflag: tar.TypeLink, Linkname: "etc/conf"}},
		entry{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		entry{hdr: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
		entry{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}},
	)
	dst, err := unpackInto(t, data)
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}

	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "etc/conf"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o4751 || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("etc/conf: mode %o uid %d gid %d, want 4751 1000 1001", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Mtim.Sec != mtime.Unix() {
		t.Errorf("etc/conf mtime %d, want %d", st.Mtim.Sec, mtime.Unix())
	}
	if st.Nlink != 2 {
		t.Errorf("etc/conf has %d links, want 2 (etc/hard)", st.Nlink)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(dst, "etc/conf"), "user.test", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("xattr user.test = %q, %v; want v", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(dst, "etc/conf"), "trusted.overlay.redirect", buf); err == nil {
		t.Errorf("trusted.overlay.* xattr from the tar was applied; it must be dropped")
	}

	if err := unix.Lstat(filepath.Join(dst, "etc"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o750 || st.Gid != 42 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("etc: mode %o gid %d mtime %d, want 750 42 %d", st.Mode&0o7777, st.Gid, st.Mtim.Sec, mtime.Unix())
	}
	if target, err := os.Readlink(filepath.Join(dst, "etc/link")); err != nil || target != "conf" {
		t.Errorf("etc/link -> %q, %v; want conf", target, err)
	}
	if err := unix.Lstat(filepath.Join(dst, "etc/link"), &st); err != nil || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("etc/link owner %d:%d (%v), want 7:8", st.Uid, st.Gid, err)
	}
	if err := unix.Lstat(filepath.Join(dst, "dev/null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Mode&0o777 != 0o666 {
		t.Errorf("dev/null: mode %o rdev %d (%v), want char 1:3 0666", st.Mode, st.Rdev, err)
	}
	if err := unix.Lstat(filepath.Join(dst, "run/fifo"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("run/fifo: mode %o (%v), want a fifo", st.Mode, err)
	}
	if err := unix.Lstat(dst, &st); err != nil || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("layer root mtime %d (%v), want %d", st.Mtim.Sec, err, mtime.Unix())
	}
}

func TestUnpackWhiteouts(t *testing.T) {
	needRoot(t)
	dst, err := unpackInto(t, tarOf(t,
		entry{hdr: tar.Header{Name: "a/.wh.file", Typeflag: tar.TypeReg}},
		entry{hdr: tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "dir/.wh..wh..opq", Typeflag: tar.TypeReg}},
		entry{hdr: tar.Header{Name: "dir/y", Typeflag: tar.TypeReg, Mode: 0o644}, body: "y"},
		entry{hdr: tar.Header{Name: ".wh..wh.plnk", Typeflag: tar.TypeDir}},
	))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "a/file"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 || st.Uid != 0 {
		t.Errorf("a/file: mode %o rdev %d uid %d (%v), want a 0:0 char device owned by root", st.Mode, st.Rdev, st.Uid, err)
	}
	buf := make([]byte, 4)
	if n, err := unix.Getxattr(filepath.Join(dst, "dir"), opaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("dir opaque xattr = %q, %v; want y", buf[:n], err)
	}
	for _, p := range []string{"a/.wh.file", "dir/.wh..wh..opq", ".wh..wh.plnk"} {
		if _, err := os.Lstat(filepath.Join(dst, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists in the unpacked layer (err %v); whiteout markers must not be copied", p, err)
		}
	}
}

func TestUnpackStaysInside(t *testing.T) {
	needRoot(t)
	dst, err := unpackInto(t, tarOf(t,
		entry{hdr: tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		entry{hdr: tar.Header{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		entry{hdr: tar.Header{Name: "a/../../../up", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		entry{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../../abs"}},
	))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	parent := filepath.Dir(dst)
	for _, p := range []string{filepath.Join(parent, "escape"), filepath.Join(filepath.Dir(parent), "escape"), filepath.Join(parent, "up")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists outside the layer dir (err %v)", p, err)
		}
	}
	for _, p := range []string{"escape", "abs", "up", "hl"} {
		if _, err := os.Lstat(filepath.Join(dst, p)); err != nil {
			t.Errorf("%s: %v; the sanitised entry should be inside the layer", p, err)
		}
	}
}

func TestUnpackRefusesWritingThroughSymlink(t *testing.T) {
	needRoot(t)
	outside := t.TempDir()
	cases := map[string][]entry{
		"file through symlink": {
			{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}},
			{hdr: tar.Header{Name: "evil/pwned", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		},
		"relative symlink": {
			{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside}},
			{hdr: tar.Header{Name: "evil/pwned", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		},
		"dir through symlink": {
			{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}},
			{hdr: tar.Header{Name: "evil/pwned/", Typeflag: tar.TypeDir, Mode: 0o755}},
		},
		"whiteout through symlink": {
			{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}},
			{hdr: tar.Header{Name: "evil/.wh.pwned", Typeflag: tar.TypeReg}},
		},
		"symlink in a deeper parent": {
			{hdr: tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{hdr: tar.Header{Name: "a/evil", Typeflag: tar.TypeSymlink, Linkname: outside}},
			{hdr: tar.Header{Name: "a/evil/b/pwned", Typeflag: tar.TypeReg, Mode: 0o644}, body: "x"},
		},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := unpackInto(t, tarOf(t, entries...))
			if !errors.Is(err, errdefs.ErrInvalid) || !errors.Is(err, errUnsafeEntry) {
				t.Errorf("unpack error = %v, want an unsafe-entry ErrInvalid", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("entries written outside the layer: %v", ents)
			}
		})
	}

	// A hard link whose target goes through a symlink must not link an outside file.
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst, err := unpackInto(t, tarOf(t,
		entry{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside}},
		entry{hdr: tar.Header{Name: "stolen", Typeflag: tar.TypeLink, Linkname: "evil/secret"}},
	))
	if err == nil {
		t.Errorf("hard link through a symlink was accepted")
	}
	if _, serr := os.Lstat(filepath.Join(dst, "stolen")); !os.IsNotExist(serr) {
		t.Errorf("stolen exists in the layer (err %v)", serr)
	}
}

func TestUnpackReplacesEntries(t *testing.T) {
	needRoot(t)
	dst, err := unpackInto(t, tarOf(t,
		entry{hdr: tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
		entry{hdr: tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "x/f", Typeflag: tar.TypeReg, Mode: 0o644}, body: "1"},
		entry{hdr: tar.Header{Name: "y/", Typeflag: tar.TypeDir, Mode: 0o755}},
		entry{hdr: tar.Header{Name: "y/child", Typeflag: tar.TypeReg, Mode: 0o644}, body: "c"},
		entry{hdr: tar.Header{Name: "y", Typeflag: tar.TypeReg, Mode: 0o644}, body: "now a file"},
		entry{hdr: tar.Header{Name: "x/f", Typeflag: tar.TypeReg, Mode: 0o600}, body: "2"},
	))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "x/f")); err != nil || string(b) != "2" {
		t.Errorf("x/f = %q, %v; want the later entry's content", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "y")); err != nil || string(b) != "now a file" {
		t.Errorf("y = %q, %v; want the file that replaced the directory", b, err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"../escape": "escape", "/abs": "abs", "./a/b/": "a/b", "a/../../b": "b", ".": "", "/": "", "..": "",
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
