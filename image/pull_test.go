package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking layers sets owners and creates device nodes; mounting overlay needs CAP_SYS_ADMIN")
	}
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

// blobCounter counts GETs of blobs, by digest.
type blobCounter struct {
	mu   sync.Mutex
	gets map[string]int
}

func (c *blobCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 {
				c.mu.Lock()
				if c.gets == nil {
					c.gets = map[string]int{}
				}
				c.gets[r.URL.Path[i+len("/blobs/"):]]++
				c.mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (c *blobCounter) count(digest string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets[digest]
}

func layerDigests(t *testing.T, img v1.Image) (digests, diffIDs []string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		id, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		diffIDs = append(diffIDs, id.String())
	}
	return digests, diffIDs
}

func TestPullByTagAndDigest(t *testing.T) {
	t.Parallel()
	needRoot(t)
	var counter blobCounter
	reg := imagetest.RegistryWith(t, counter.wrap)
	img := imagetest.Busybox(t, map[string]string{"etc/motd": "hello from gantry\n"})
	ref := reg + "/test/pull:1"
	imagetest.PushImage(t, img, ref)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	digests, diffIDs := layerDigests(t, img)

	s := openStore(t)
	var mu sync.Mutex
	completed := map[string]bool{}
	got, err := s.Pull(t.Context(), ref, func(p image.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Ref != ref {
			t.Errorf("progress for ref %q, want %q", p.Ref, ref)
		}
		if p.Done > p.Total {
			t.Errorf("progress %d of %d", p.Done, p.Total)
		}
		if p.Complete {
			completed[p.Layer] = true
		}
	})
	if err != nil {
		t.Fatalf("pull by tag: %v", err)
	}
	if got.Ref != ref || got.Digest != want.String() {
		t.Errorf("pulled %s %s, want %s %s", got.Ref, got.Digest, ref, want)
	}
	if strings.Join(got.Layers, ",") != strings.Join(diffIDs, ",") {
		t.Errorf("layers %v, want %v", got.Layers, diffIDs)
	}
	if len(got.Config.Cmd) != 1 || got.Config.Cmd[0] != "/bin/sh" || len(got.Config.Env) != 1 {
		t.Errorf("config %+v, want Cmd [/bin/sh] and PATH", got.Config)
	}
	if got.Size <= 0 {
		t.Errorf("size %d, want > 0", got.Size)
	}
	for _, d := range digests {
		if !completed[d] {
			t.Errorf("no completed progress for layer %s (got %v)", d, completed)
		}
		if n := counter.count(d); n != 1 {
			t.Errorf("layer %s downloaded %d times, want 1", d, n)
		}
	}

	// Resolve finds it by tag, by repo@digest and by bare digest.
	for _, r := range []string{ref, reg + "/test/pull@" + want.String(), want.String()} {
		res, err := s.Resolve(t.Context(), r)
		if err != nil {
			t.Errorf("resolve %s: %v", r, err)
			continue
		}
		if res.Digest != want.String() {
			t.Errorf("resolve %s: digest %s, want %s", r, res.Digest, want)
		}
	}

	// Pull by digest: verified, recorded, and no layer fetched again.
	byDigest := reg + "/test/pull@" + want.String()
	got2, err := s.Pull(t.Context(), byDigest, nil)
	if err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	if got2.Digest != want.String() || got2.Ref != byDigest {
		t.Errorf("pull by digest: %s %s, want %s %s", got2.Ref, got2.Digest, byDigest, want)
	}
	// A second store on the same root reads the index and reuses the layers.
	s2, err := image.Open(s.Root(), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Resolve(t.Context(), ref); err != nil {
		t.Errorf("reopened store does not know %s: %v", ref, err)
	}
	if _, err := s2.Pull(t.Context(), ref, nil); err != nil {
		t.Fatalf("second pull: %v", err)
	}
	for _, d := range digests {
		if n := counter.count(d); n != 1 {
			t.Errorf("after re-pulls layer %s was downloaded %d times, want 1", d, n)
		}
	}

	// The image really runs: chroot into the mounted rootfs and use busybox.
	dir := t.TempDir()
	rootfs, err := s.Mount(t.Context(), got, dir)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(context.Background(), dir); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	cmd := exec.CommandContext(t.Context(), "/bin/cat", "/etc/motd")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
	out, err := cmd.Output()
	if err != nil || string(out) != "hello from gantry\n" {
		t.Errorf("cat /etc/motd in the image: %q, %v", out, err)
	}
}

func TestPullErrors(t *testing.T) {
	t.Parallel()
	needRoot(t)
	reg := imagetest.Registry(t)
	s := openStore(t)

	_, err := s.Pull(t.Context(), reg+"/test/missing:nope", nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing repo: %v, want a not-found error saying it does not exist", err)
	}

	imagetest.PushImage(t, imagetest.Busybox(t, nil), reg+"/test/errs:1")
	_, err = s.Pull(t.Context(), reg+"/test/errs:2", nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "tag 2 does not exist") {
		t.Errorf("missing tag: %v, want a not-found error saying the tag does not exist", err)
	}

	locked := imagetest.RegistryWith(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		})
	})
	_, err = s.Pull(t.Context(), locked+"/test/private:1", nil)
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("401: %v, want a permission error mentioning credentials", err)
	}

	// Nothing listens on a port we just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	_, err = s.Pull(t.Context(), closed+"/test/app:1", nil)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "check that the registry is running") {
		t.Errorf("closed port: %v, want unavailable with a hint", err)
	}

	// A registry that drops every connection: a network failure with no
	// case of its own still says to check the registry, not the cluster.
	drop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer drop.Close()
	go func() {
		for {
			c, err := drop.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = s.Pull(t.Context(), drop.Addr().String()+"/test/app:1", nil)
	var he *errdefs.HintError
	if !errdefs.IsUnavailable(err) || !errors.As(err, &he) || !strings.Contains(he.Hint, "is reachable from the gantry host") {
		t.Errorf("dropped connections: %v, want unavailable with a hint about reaching the registry", err)
	}

	_, err = s.Pull(t.Context(), "UPPER/Case:bad tag", nil)
	if !errdefs.IsInvalid(err) {
		t.Errorf("bad reference: %v, want ErrInvalid", err)
	}

	if _, err := s.Resolve(t.Context(), reg+"/test/never:1"); !errdefs.IsNotFound(err) {
		t.Errorf("resolve unknown: %v, want ErrNotFound", err)
	}
}

func TestConcurrentPulls(t *testing.T) {
	t.Parallel()
	needRoot(t)
	var counter blobCounter
	reg := imagetest.RegistryWith(t, counter.wrap)
	img := imagetest.Busybox(t, nil)
	ref := reg + "/test/concurrent:1"
	imagetest.PushImage(t, img, ref)
	digests, _ := layerDigests(t, img)
	want, _ := img.Digest()

	s := openStore(t)
	const n = 6
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.Pull(t.Context(), ref, nil)
			if err != nil {
				failures.Add(1)
				t.Errorf("pull %d: %v", i, err)
				return
			}
			if got.Digest != want.String() {
				t.Errorf("pull %d: digest %s, want %s", i, got.Digest, want)
			}
		}()
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.FailNow()
	}
	for _, d := range digests {
		if c := counter.count(d); c != 1 {
			t.Errorf("layer %s downloaded %d times by %d concurrent pulls, want 1", d, c, n)
		}
	}
	list, err := s.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Ref != ref {
		t.Errorf("list after concurrent pulls: %v, %v; want just %s", list, err, ref)
	}
	// No temp dirs are left behind.
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("temp entries left: %v", ents)
	}
}

// tarLayer builds a layer from tar entries: name -> content; a name ending in
// "/" is a directory.
func tarLayer(t *testing.T, names ...string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0), Size: int64(len(n))}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPullMultiArch(t *testing.T) {
	t.Parallel()
	needRoot(t)
	reg := imagetest.Registry(t)
	amd, arm := buildSmall(t, "amd64-file"), buildSmall(t, "arm64-file")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref := reg + "/test/multi:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push index: %v", err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	s := openStore(t)
	got, err := s.Pull(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	if got.Digest != digestOf(t, amd) {
		t.Errorf("default platform picked %s, want the linux/amd64 image %s", got.Digest, digestOf(t, amd))
	}
	byIndex := reg + "/test/multi@" + idxDigest.String()
	got, err = s.Pull(t.Context(), byIndex, nil)
	if err != nil || got.Digest != digestOf(t, amd) {
		t.Errorf("pull by index digest: %v, %v; want the amd64 image", got, err)
	}
	if res, err := s.Resolve(t.Context(), byIndex); err != nil || res.Digest != digestOf(t, amd) {
		t.Errorf("resolve by index digest: %v, %v", res, err)
	}

	armStore, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = armStore.Pull(t.Context(), ref, nil)
	if err != nil || got.Digest != digestOf(t, arm) {
		t.Errorf("linux/arm64 store pulled %v, %v; want the arm64 image %s", got, err, digestOf(t, arm))
	}

	s390, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{Platform: "linux/s390x"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s390.Pull(t.Context(), ref, nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "linux/arm64/v8") {
		t.Errorf("pull for a platform the index lacks: %v, want not-found listing the platforms", err)
	}
}
