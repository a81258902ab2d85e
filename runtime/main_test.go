package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/spec"
)

// Test-wide state: one runtime root and one cgroup parent per test binary,
// both removed by TestMain.
var (
	testTag      = fmt.Sprintf("gantry-rt-test-%d", os.Getpid())
	testRoot     = filepath.Join("/run", testTag)
	initBinPath  string // absolute path of the gantry-init built for tests
	initBuildErr error
)

// helperEnv makes the test binary act as a second Gantry process (see
// runAdoptHelper).
const helperEnv = "GANTRY_RUNTIME_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runAdoptHelper())
	}
	// The Makefile builds cmd/gantry-init into initbin/ before `go build`
	// and `go test`, so the package embeds it. A test binary cannot embed a
	// file built after it was compiled, so tests that run containers use the
	// file on disk, built here when it is missing or stale (e.g. plain
	// `go test ./runtime` on a fresh clone).
	initBinPath, initBuildErr = buildInit()
	code := m.Run()
	deleteLeftovers()
	cleanupTestCgroups()
	_ = os.RemoveAll(testRoot)
	os.Exit(code)
}

// buildInit builds ../cmd/gantry-init into initbin/gantry-init if the binary
// is missing or older than its source.
func buildInit() (string, error) {
	bin, err := filepath.Abs(filepath.Join("initbin", initName))
	if err != nil {
		return "", err
	}
	srcDir, err := filepath.Abs(filepath.Join("..", "cmd", "gantry-init"))
	if err != nil {
		return "", err
	}
	var newest time.Time
	srcs, _ := filepath.Glob(filepath.Join(srcDir, "*.go"))
	for _, s := range srcs {
		if st, err := os.Stat(s); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	if st, err := os.Stat(bin); err == nil && !st.ModTime().Before(newest) {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	// A dot file, so that a concurrent build does not embed it.
	tmp := filepath.Join(filepath.Dir(bin), fmt.Sprintf(".%s.tmp-%d", initName, os.Getpid()))
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./cmd/gantry-init")
	cmd.Dir = filepath.Dir(filepath.Dir(srcDir)) // the module root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("build gantry-init: %v: %s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// deleteLeftovers deletes containers a failed test left in the test root.
func deleteLeftovers() {
	if !dirExists(testRoot) {
		return
	}
	ctx := context.Background()
	r, err := New(ctx, Options{Root: testRoot, Logger: quietLogger()})
	if err != nil {
		return
	}
	cs, _ := r.List(ctx)
	for _, c := range cs {
		fmt.Fprintf(os.Stderr, "deleting leftover container %s\n", c.ID)
		_ = r.Delete(ctx, c.ID)
	}
}

// cleanupTestCgroups removes the per-binary cgroup parent in every
// hierarchy (runc delete removes the containers' own cgroups).
func cleanupTestCgroups() {
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", testTag))
	if d := filepath.Join(cgroupRoot, testTag); dirExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		// Leaf cgroups that a failed delete left behind, then the parent;
		// rmdir fails on a cgroup that still has processes.
		leaves, _ := filepath.Glob(filepath.Join(d, testTag+"-*"))
		for _, l := range leaves {
			_ = os.Remove(l)
		}
		_ = os.Remove(d)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// requireRunc skips unless the test can run real containers.
func requireRunc(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containers")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("needs runc (apt-get install runc)")
	}
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox (apt-get install busybox-static) for the test rootfs")
	}
}

func requireInit(t *testing.T) {
	t.Helper()
	if initBuildErr != nil {
		t.Skipf("gantry-init not available: %v", initBuildErr)
	}
}

func newTestRuntime(t *testing.T) *Runtime {
	t.Helper()
	requireRunc(t)
	r, err := New(context.Background(), Options{Root: testRoot, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// busyboxRootfs makes a root filesystem of busybox and its applet links,
// with an /etc/passwd that defines user app (1000) and group staff (50).
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// testContainer is one container of a test, deleted at cleanup.
type testContainer struct {
	id, bundle, logPath string
	spec                *specs.Spec
}

// newContainer builds the bundle for svc over a fresh busybox rootfs.
func newContainer(t *testing.T, name string, svc spec.Service) *testContainer {
	t.Helper()
	if svc.InitEnabled() {
		requireInit(t)
	}
	rootfs := busyboxRootfs(t)
	id := fmt.Sprintf("%s-%s", testTag, name)
	dir := t.TempDir()
	s, err := BuildSpec(BundleInput{
		ID:          id,
		Service:     svc,
		Rootfs:      rootfs,
		CgroupsPath: "/" + testTag + "/" + id,
		InitPath:    initBinPath,
		Users:       UsersFromRootfs(rootfs),
	})
	if err != nil {
		t.Fatalf("BuildSpec: %v", err)
	}
	return &testContainer{id: id, bundle: filepath.Join(dir, "bundle"), logPath: filepath.Join(dir, "container.log"), spec: s}
}

// start starts c and registers its deletion.
func (c *testContainer) start(t *testing.T, r *Runtime) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if err := r.Delete(context.Background(), c.id); err != nil {
			t.Errorf("cleanup: delete %s: %v", c.id, err)
		}
	})
	pid, err := r.Start(ctx, c.id, c.bundle, c.spec, c.logPath)
	if err != nil {
		t.Fatalf("Start %s: %v", c.id, err)
	}
	return pid
}

func waitExit(t *testing.T, r *Runtime, c *testContainer, pid int) Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := r.Wait(ctx, c.id, pid)
	if err != nil {
		t.Fatalf("Wait %s: %v", c.id, err)
	}
	return ex
}

func boolp(b bool) *bool { return &b }

// adoptHelperArgs is what the test passes to the helper process.
type adoptHelperArgs struct {
	Root, ID, Bundle, Log string
}

// runAdoptHelper plays a Gantry process that starts a container (and so is
// its init's parent) and waits for it, while the test process, which is not
// the parent, waits for the same container through Wait's pidfd path. It
// prints the PID, then the Exit it collected, as JSON lines.
func runAdoptHelper() int {
	var a adoptHelperArgs
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &a); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx := context.Background()
	r, err := New(ctx, Options{Root: a.Root, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	data, err := os.ReadFile(filepath.Join(a.Bundle, "config.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	pid, err := r.Start(ctx, a.ID, a.Bundle, &s, a.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	fmt.Println(pid)
	ex, err := r.Wait(ctx, a.ID, pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	out, _ := json.Marshal(ex)
	fmt.Println(string(out))
	return 0
}
