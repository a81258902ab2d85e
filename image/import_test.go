package image_test

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
)

func buildSmall(t *testing.T, files ...string) v1.Image {
	t.Helper()
	img, err := image.Build([]v1.Layer{tarLayer(t, files...)}, v1.Config{Cmd: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestImportDockerSave(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	one, two := buildSmall(t, "one"), buildSmall(t, "two")
	refs := map[name.Reference]v1.Image{
		mustTag(t, "example.com/app/one:1"):      one,
		mustTag(t, "example.com/app/one:latest"): one,
		mustTag(t, "localhost:5000/two:v2"):      two,
	}
	p := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.MultiRefWriteToFile(p, refs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Import(t.Context(), p)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(got) != 3 {
		t.Errorf("import returned %d images, want 3 (one per tag): %v", len(got), got)
	}
	want := map[string]string{
		"example.com/app/one:1":      digestOf(t, one),
		"example.com/app/one:latest": digestOf(t, one),
		"localhost:5000/two:v2":      digestOf(t, two),
	}
	for ref, d := range want {
		img, err := s.Resolve(t.Context(), ref)
		if err != nil {
			t.Errorf("resolve %s: %v", ref, err)
			continue
		}
		if img.Digest != d || len(img.Layers) != 1 || img.Config.Cmd[0] != "/bin/true" {
			t.Errorf("resolve %s: %+v, want digest %s with one layer", ref, img, d)
		}
	}
	list, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, img := range list {
		listed[img.Ref] = img.Digest
	}
	for ref, d := range want {
		if listed[ref] != d {
			t.Errorf("List has %s -> %q, want %s (list %v)", ref, listed[ref], d, listed)
		}
	}

	// The imported image mounts.
	img, _ := s.Resolve(t.Context(), "localhost:5000/two:v2")
	_, rootfs := mountImage(t, s, img)
	if b, err := os.ReadFile(filepath.Join(rootfs, "two")); err != nil || string(b) != "two" {
		t.Errorf("file of imported image: %q, %v", b, err)
	}
}

func TestImportOCILayout(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	a, b := buildSmall(t, "a"), buildSmall(t, "b")
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(a, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": "registry.example/oci/a:1.0",
	})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(b, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          "registry.example/oci/b:2.0",
		"org.opencontainers.image.ref.name": "2.0",
	})); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "oci.tar")
	tarDir(t, dir, tarPath)

	got, err := s.Import(t.Context(), tarPath)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("import returned %d images, want 2: %v", len(got), got)
	}
	for ref, img := range map[string]v1.Image{"registry.example/oci/a:1.0": a, "registry.example/oci/b:2.0": b} {
		res, err := s.Resolve(t.Context(), ref)
		if err != nil {
			t.Errorf("resolve %s: %v", ref, err)
			continue
		}
		if res.Digest != digestOf(t, img) {
			t.Errorf("resolve %s: digest %s, want %s", ref, res.Digest, digestOf(t, img))
		}
	}
	list, err := s.List(t.Context())
	if err != nil || len(list) != 2 {
		t.Errorf("list: %v, %v; want the 2 imported images", list, err)
	}

	// Not an image tarball at all.
	junk := filepath.Join(t.TempDir(), "junk.tar")
	tarDir(t, t.TempDir(), junk)
	if _, err := s.Import(t.Context(), junk); !errdefs.IsInvalid(err) {
		t.Errorf("import of a tar without images: %v, want ErrInvalid", err)
	}
	if _, err := s.Import(t.Context(), filepath.Join(t.TempDir(), "nope.tar")); !errdefs.IsNotFound(err) {
		t.Errorf("import of a missing file: %v, want ErrNotFound", err)
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// tarDir writes the tree under dir to the tarball out.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestImportRejectsNonFiles: a FIFO must not hang the import (open(2) would
// wait for a writer forever), and directories and devices are refused with
// ErrInvalid before anything is read.
func TestImportRejectsNonFiles(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, t.TempDir(), "/dev/zero"} {
		done := make(chan error, 1)
		go func() { _, err := s.Import(t.Context(), p); done <- err }()
		select {
		case err := <-done:
			if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("import %s: err = %v, want ErrInvalid saying it is not a regular file", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("import %s hangs", p)
		}
	}
}

// A regular file that is no tar archive says so and what to pass instead.
func TestImportRejectsNonTar(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	p := filepath.Join(t.TempDir(), "hostname")
	if err := os.WriteFile(p, []byte("vm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Import(t.Context(), p)
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "not a readable tar archive") || !strings.Contains(err.Error(), "docker save") {
		t.Errorf("import of a text file: %v", err)
	}
}
