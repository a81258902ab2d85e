package image_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// mountsUnder returns the mountinfo lines whose mount point is below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, line)
		}
	}
	return out
}

// pullBuilt pushes an image of layers to a fresh registry and pulls it into s.
func pullBuilt(t *testing.T, s *image.Store, layers []v1.Layer, repo string) *image.Image {
	t.Helper()
	img, err := image.Build(layers, v1.Config{Cmd: []string{"/bin/sh"}})
	if err != nil {
		t.Fatal(err)
	}
	ref := imagetest.Registry(t) + "/" + repo + ":1"
	imagetest.PushImage(t, img, ref)
	got, err := s.Pull(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return got
}

func mountImage(t *testing.T, s *image.Store, img *image.Image) (dir, rootfs string) {
	t.Helper()
	dir = t.TempDir()
	rootfs, err := s.Mount(t.Context(), img, dir)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { _ = s.Unmount(context.Background(), dir) }) // t.Context is done in cleanups
	return dir, rootfs
}

func TestMountWhiteouts(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	img := pullBuilt(t, s, []v1.Layer{
		tarLayer(t, "a/", "a/file", "a/keep", "dir/", "dir/x"),
		tarLayer(t, "a/", "a/.wh.file", "dir/", "dir/.wh..wh..opq", "dir/y"),
	}, "test/whiteout")

	dir, rootfs := mountImage(t, s, img)
	if rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("rootfs %s, want %s/rootfs", rootfs, dir)
	}
	for p, want := range map[string]bool{"a/file": false, "dir/x": false, "a/keep": true, "dir/y": true} {
		_, err := os.Lstat(filepath.Join(rootfs, p))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v (err %v), want %v", p, got, err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "dir/y")); err != nil || string(b) != "dir/y" {
		t.Errorf("dir/y = %q, %v", b, err)
	}

	// Writes go to the upper dir, not to the shared layers.
	if err := os.WriteFile(filepath.Join(rootfs, "a/keep"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "upper/a/keep")); err != nil || string(b) != "changed" {
		t.Errorf("upper/a/keep = %q, %v; want the container's write", b, err)
	}

	// Mount again (a restarted worker): same rootfs, no second mount.
	again, err := s.Mount(t.Context(), img, dir)
	if err != nil || again != rootfs {
		t.Errorf("second mount: %s, %v; want %s", again, err, rootfs)
	}
	if m := mountsUnder(t, dir); len(m) != 1 {
		t.Errorf("after a second Mount there are %d mounts under %s, want 1: %v", len(m), dir, m)
	}

	if err := s.Unmount(t.Context(), dir); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left after Unmount: %v", m)
	}
	if err := s.Unmount(t.Context(), dir); err != nil {
		t.Errorf("second unmount: %v, want nil", err)
	}
	if err := s.Unmount(t.Context(), t.TempDir()); err != nil {
		t.Errorf("unmount of a dir never mounted: %v, want nil", err)
	}
}

func TestMountManyLayers(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	const n = 120
	layers := make([]v1.Layer, n)
	for i := range layers {
		layers[i] = tarLayer(t, fmt.Sprintf("f%03d", i), "shared")
	}
	img := pullBuilt(t, s, layers, "test/many")
	if len(img.Layers) != n {
		t.Fatalf("image has %d layers, want %d", len(img.Layers), n)
	}
	// Absolute layer paths would not fit in one page of mount options.
	if l := n * len(filepath.Join(s.Root(), "layers/sha256", strings.Repeat("0", 64))); l < 4096 {
		t.Fatalf("test does not exercise short links: %d bytes of absolute lower dirs", l)
	}
	dir, rootfs := mountImage(t, s, img)
	for i := range n {
		if _, err := os.Stat(filepath.Join(rootfs, fmt.Sprintf("f%03d", i))); err != nil {
			t.Errorf("layer %d's file missing: %v", i, err)
		}
	}
	if err := s.Unmount(t.Context(), dir); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left after Unmount: %v", m)
	}
}

func TestMountNoLayers(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	img := pullBuilt(t, s, nil, "test/empty")
	if len(img.Layers) != 0 {
		t.Fatalf("image has %d layers, want 0", len(img.Layers))
	}
	dir, rootfs := mountImage(t, s, img)
	ents, err := os.ReadDir(rootfs)
	if err != nil || len(ents) != 0 {
		t.Errorf("rootfs of an empty image: %v, %v; want empty", ents, err)
	}
	if m := mountsUnder(t, dir); len(m) != 1 || !strings.Contains(m[0], " - overlay ") {
		t.Errorf("mounts under %s: %v, want one overlay", dir, m)
	}
}

func TestMountMissingLayer(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	_, err := s.Mount(t.Context(), &image.Image{Ref: "x", Layers: []string{"sha256:" + strings.Repeat("ab", 32)}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "pull the image again") {
		t.Errorf("mount with a missing layer: %v, want a not-found error with a hint", err)
	}
}
