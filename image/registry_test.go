package image_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
)

const distributionBinary = "/usr/bin/docker-registry"

// startDistribution runs Debian's docker-registry (distribution 2.x) on a
// free loopback port with storage in a temp dir, and returns host:port.
func startDistribution(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(distributionBinary); err != nil {
		t.Skipf("needs %s (apt-get install docker-registry): %v", distributionBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, distributionBinary, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", distributionBinary, err)
	}
	t.Cleanup(func() {
		cancel() // kills it
		_ = cmd.Wait()
		logf.Close()
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("registry at %s not ready after 10s (last error %v); log:\n%s", addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPullFromDistribution(t *testing.T) {
	t.Parallel()
	needRoot(t)
	addr := startDistribution(t)
	img := imagetest.Busybox(t, map[string]string{"www/index.html": "<h1>hi</h1>\n"})
	ref := addr + "/demo/web:1"
	if err := image.Push(t.Context(), img, ref, true); err != nil {
		t.Fatalf("push to distribution: %v", err)
	}
	want := digestOf(t, img)

	s := openStore(t)
	got, err := s.Pull(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("pull from distribution: %v", err)
	}
	if got.Digest != want || got.Ref != ref {
		t.Errorf("pulled %s %s, want %s %s", got.Ref, got.Digest, ref, want)
	}
	byDigest, err := s.Pull(t.Context(), addr+"/demo/web@"+want, nil)
	if err != nil || byDigest.Digest != want {
		t.Errorf("pull by digest: %v, %v", byDigest, err)
	}
	_, rootfs := mountImage(t, s, got)
	if b, err := os.ReadFile(filepath.Join(rootfs, "www/index.html")); err != nil || string(b) != "<h1>hi</h1>\n" {
		t.Errorf("www/index.html: %q, %v", b, err)
	}
	if _, err := s.Pull(t.Context(), addr+"/demo/web:missing", nil); err == nil {
		t.Errorf("pull of a missing tag from distribution succeeded")
	}
}
