package runtime

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"context"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct{ out, kind, name string }{
		{"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n", "runc", "runc 1.1.5"},
		{"crun version 1.8.1\ncommit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD +SELINUX", "crun", "crun 1.8.1"},
		{"youki version 0.3.0\ncommit: 0.3.0-0-abc\n", "youki", "youki 0.3.0"},
		{"weird\n", "weird", "weird"},
	} {
		info := parseVersion(tc.out)
		if info.kind != tc.kind || info.String() != tc.name {
			t.Errorf("parseVersion(%q) = %q/%q, want %q/%q", tc.out, info.kind, info, tc.kind, tc.name)
		}
	}
}

func TestCheckCompatCrunHybrid(t *testing.T) {
	crun := parseVersion("crun version 1.8.1\nspec: 1.0.0\n")
	err := checkCompat(crun, CgroupHybrid)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("crun on hybrid: err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "crun refuses cgroup v1 hybrid mode") || !strings.Contains(err.Error(), "use runc") {
		t.Errorf("message does not explain and suggest runc: %v", err)
	}
	for _, ok := range []struct {
		info runtimeInfo
		mode CgroupMode
	}{
		{crun, CgroupUnified}, {crun, CgroupLegacy},
		{parseVersion("runc version 1.1.5"), CgroupHybrid},
	} {
		if err := checkCompat(ok.info, ok.mode); err != nil {
			t.Errorf("%s on %s: %v", ok.info, ok.mode, err)
		}
	}
}

// TestNewCrunOnThisHost runs New with a fake crun (a script printing crun's
// --version) when this host is in hybrid mode.
func TestNewCrunOnThisHost(t *testing.T) {
	mode, err := DetectCgroupMode()
	if err != nil || mode != CgroupHybrid {
		t.Skipf("host cgroup mode %v (%v), not hybrid", mode, err)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	fake := filepath.Join(t.TempDir(), "crun")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'crun version 1.8.1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Options{Binary: fake, Root: t.TempDir()})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "hybrid") {
		t.Fatalf("New(crun) on hybrid = %v, want ErrUnavailable about hybrid mode", err)
	}
}

func TestNewRejectsNonRuncCLI(t *testing.T) {
	// `true` answers --version (silently) but cannot list containers in JSON.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh")
	}
	fake := filepath.Join(t.TempDir(), "notaruntime")
	if err := os.WriteFile(fake, []byte("#!"+sh+"\n[ \"$1\" = --version ] && echo 'thing version 0.1' && exit 0\necho usage >&2; exit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Options{Binary: fake, Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "does not behave like runc") {
		t.Fatalf("New(non-runtime) = %v", err)
	}
}

func TestParseOOMKill(t *testing.T) {
	v1 := "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
	v2 := "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"
	for in, want := range map[string]int64{v1: 2, v2: 1, "oom_kill 0\n": 0} {
		n, err := parseOOMKill([]byte(in))
		if err != nil || n != want {
			t.Errorf("parseOOMKill(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	if _, err := parseOOMKill([]byte("oom_kill_disable 0\n")); !errdefs.IsNotFound(err) {
		t.Errorf("no counter: %v", err)
	}
	if _, err := oomKillCount(CgroupHybrid, "system.slice:gantry:x"); !errdefs.IsInvalid(err) {
		t.Errorf("systemd path: %v", err)
	}
}

func TestClassify(t *testing.T) {
	for msg, want := range map[string]error{
		"container does not exist":                                           errdefs.ErrNotFound,
		"container with given ID already exists":                             errdefs.ErrConflict,
		"container not running":                                              errNotRunning,
		"cannot exec in a stopped container":                                 errNotRunning,
		`exec: "x": executable file not found in $PATH`:                      errdefs.ErrInvalid,
		"unable to apply cgroup configuration: something":                    errdefs.ErrUnavailable,
		"error opening file `/run/crun/x/status`: No such file or directory": errdefs.ErrNotFound,
	} {
		if got := classify(msg); !errors.Is(got, want) {
			t.Errorf("classify(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestInstallInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	data, embedErr := InitBinary()
	path, err := InstallInit(dir)
	if embedErr != nil {
		// Built without `make`: the error must say how to fix it.
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "make") {
			t.Fatalf("InstallInit without an embedded init = %v, want a hint to run make", err)
		}
		t.Skip("gantry-init not embedded in this test binary (run make); checked the error only")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("installed file differs from the embedded binary (%v)", err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o555 {
		t.Errorf("mode %v, want 0555", st.Mode().Perm())
	}
	// Same content: the file is left alone (same inode, same mtime).
	old := st
	time.Sleep(10 * time.Millisecond)
	if _, err := InstallInit(dir); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(path)
	if !os.SameFile(old, st) || !st.ModTime().Equal(old.ModTime()) {
		t.Error("identical init was rewritten")
	}
	// Different content: replaced atomically (a new inode).
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ = os.Stat(path)
	if _, err := InstallInit(dir); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(path)
	got, _ = os.ReadFile(path)
	if os.SameFile(old, st) || !bytes.Equal(got, data) {
		t.Error("stale init not replaced by a new file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left in %s: %v", dir, entries)
	}
}

func TestCapRlimits(t *testing.T) {
	in := baseInput()
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	capped := (&Runtime{maxNoFile: 20000}).capRlimits(s)
	if got := capped.Process.Rlimits[0]; got.Hard != 20000 || got.Soft != 20000 {
		t.Errorf("capped NOFILE = %+v, want 20000/20000", got)
	}
	if s.Process.Rlimits[0].Hard != defaultNoFile {
		t.Error("capRlimits modified the caller's spec")
	}
	if (&Runtime{}).capRlimits(s) != s {
		t.Error("no ceiling: the spec should pass through unchanged")
	}
}
