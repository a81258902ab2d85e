package image_test

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// storeFiles counts the files under the store's root, to prove a plan
// wrote nothing.
func storeFiles(t *testing.T, s *image.Store) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(s.Root(), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestPlanPullResolvesWithoutDownloading(t *testing.T) {
	t.Parallel()
	needRoot(t)
	var counter blobCounter
	reg := imagetest.RegistryWith(t, counter.wrap)
	img := imagetest.Busybox(t, map[string]string{"etc/motd": "plan\n"})
	ref := reg + "/test/plan:1"
	imagetest.PushImage(t, img, ref)
	digests, diffIDs := layerDigests(t, img)

	s := openStore(t)
	before := storeFiles(t, s)
	p, err := s.PlanPull(t.Context(), ref)
	if err != nil {
		t.Fatalf("plan pull: %v", err)
	}
	if p.Digest != digestOf(t, img) || len(p.Layers) != len(digests) || p.Ref != ref {
		t.Fatalf("plan = %+v, want digest %s and %d layers", p, digestOf(t, img), len(digests))
	}
	for i, l := range p.Layers {
		if l.Cached || l.Digest != digests[i] || l.DiffID != diffIDs[i] || l.Size <= 0 {
			t.Errorf("layer %d = %+v", i, l)
		}
		if n := counter.count(l.Digest); n != 0 {
			t.Errorf("a plan downloaded layer %s %d times", l.Digest, n)
		}
	}
	if p.Missing() != p.Size() || p.Size() == 0 {
		t.Errorf("missing %d of %d bytes, want all", p.Missing(), p.Size())
	}
	if after := storeFiles(t, s); after != before {
		t.Errorf("a plan wrote %d files into the store", after-before)
	}
	if list, _ := s.List(t.Context()); len(list) != 0 {
		t.Errorf("a plan recorded images: %v", list)
	}

	if _, err := s.Pull(t.Context(), ref, nil); err != nil {
		t.Fatal(err)
	}
	p, err = s.PlanPull(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if p.Missing() != 0 || !p.Layers[0].Cached {
		t.Errorf("after the pull the plan still downloads %d bytes: %+v", p.Missing(), p.Layers)
	}
	if _, err := s.PlanPull(t.Context(), reg+"/test/nope:1"); !errdefs.IsNotFound(err) {
		t.Errorf("plan of a missing image: %v, want ErrNotFound", err)
	}
	if _, err := s.PlanPull(t.Context(), "Bad Ref"); !errdefs.IsInvalid(err) {
		t.Errorf("plan of a bad ref: %v, want ErrInvalid", err)
	}
}

func TestPlanImportListsAndValidates(t *testing.T) {
	t.Parallel()
	needRoot(t)
	s := openStore(t)
	one, two := buildSmall(t, "plan-one"), buildSmall(t, "plan-two")
	save := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.MultiRefWriteToFile(save, map[name.Reference]v1.Image{
		mustTag(t, "example.com/plan/one:1"): one,
		mustTag(t, "example.com/plan/two:2"): two,
	}); err != nil {
		t.Fatal(err)
	}
	gz := gzipFile(t, save)
	before := storeFiles(t, s)
	for _, path := range []string{save, gz} {
		format, imgs, err := s.PlanImport(t.Context(), path)
		if err != nil {
			t.Fatalf("plan import %s: %v", path, err)
		}
		got := map[string]string{}
		for _, p := range imgs {
			got[p.Ref] = p.Digest
			if len(p.Layers) != 1 || p.Layers[0].Cached || p.Size() <= 0 {
				t.Errorf("%s: layers %+v", p.Ref, p.Layers)
			}
		}
		if format != "docker-save" || got["example.com/plan/one:1"] != digestOf(t, one) || got["example.com/plan/two:2"] != digestOf(t, two) {
			t.Errorf("%s: format %s, images %v", path, format, got)
		}
	}

	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(one, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "registry.example/plan/a:1"})); err != nil {
		t.Fatal(err)
	}
	oci := filepath.Join(t.TempDir(), "oci.tar")
	tarDir(t, dir, oci)
	format, imgs, err := s.PlanImport(t.Context(), oci)
	if err != nil || format != "oci-layout" || len(imgs) != 1 || imgs[0].Ref != "registry.example/plan/a:1" || imgs[0].Digest != digestOf(t, one) {
		t.Fatalf("plan import of the OCI layout: %s %+v %v", format, imgs, err)
	}
	if after := storeFiles(t, s); after != before {
		t.Errorf("a plan wrote %d files into the store", after-before)
	}

	// A layout whose layer blob is gone is refused.
	ds, _ := layerDigests(t, one)
	h, _ := v1.NewHash(ds[0])
	if err := os.Remove(filepath.Join(dir, "blobs", h.Algorithm, h.Hex)); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "broken.tar")
	tarDir(t, dir, broken)
	if _, _, err := s.PlanImport(t.Context(), broken); !errdefs.IsInvalid(err) {
		t.Errorf("plan import of a layout without its layer: %v, want ErrInvalid", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.tar")
	tarDir(t, t.TempDir(), junk)
	if _, _, err := s.PlanImport(t.Context(), junk); !errdefs.IsInvalid(err) {
		t.Errorf("plan import of a tar without images: %v, want ErrInvalid", err)
	}
	if _, _, err := s.PlanImport(t.Context(), filepath.Join(t.TempDir(), "nope.tar")); !errdefs.IsNotFound(err) {
		t.Errorf("plan import of a missing file: %v, want ErrNotFound", err)
	}
	if _, _, err := s.PlanImport(t.Context(), t.TempDir()); !errdefs.IsInvalid(err) {
		t.Errorf("plan import of a directory: %v, want ErrInvalid", err)
	}
}

func gzipFile(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := src + ".gz"
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
