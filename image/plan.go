package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
)

// PlannedImage is what a pull or an import would bring into the store,
// worked out without writing anything.
type PlannedImage struct {
	Ref    string // normalised reference; the digest when the image has no name
	Digest string // manifest digest
	Layers []PlannedLayer
}

// PlannedLayer is one layer of a PlannedImage.
type PlannedLayer struct {
	Digest string // compressed blob digest
	DiffID string // uncompressed digest, the store's key
	Size   int64  // compressed bytes
	Cached bool   // already unpacked in the store
}

// Size is the compressed size of all the image's layers.
func (p *PlannedImage) Size() int64 {
	var n int64
	for _, l := range p.Layers {
		n += l.Size
	}
	return n
}

// Missing is the compressed size of the layers not cached yet: what a pull
// would download.
func (p *PlannedImage) Missing() int64 {
	var n int64
	for _, l := range p.Layers {
		if !l.Cached {
			n += l.Size
		}
	}
	return n
}

// PlanPull resolves ref to its manifest digest against the registry and
// reports which layers the store already has and how many bytes a pull
// would download. It reads the manifest and config only and writes nothing.
func (s *Store) PlanPull(ctx context.Context, ref string) (*PlannedImage, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return nil, err
	}
	img, dgst, err := s.resolve(r, s.remoteOptions(ctx))
	if err != nil {
		return nil, err
	}
	p, err := s.planImage(img, dgst, r.Name())
	if err != nil {
		return nil, registryError(r, err)
	}
	return p, nil
}

// planImage lists img's layers and whether each is cached.
func (s *Store) planImage(img v1.Image, dgst v1.Hash, ref string) (*PlannedImage, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but config lists %d diffIDs: %w", len(m.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalid)
	}
	p := &PlannedImage{Ref: ref, Digest: dgst.String()}
	for i, l := range m.Layers {
		diffID := cfg.RootFS.DiffIDs[i].String()
		p.Layers = append(p.Layers, PlannedLayer{Digest: l.Digest.String(), DiffID: diffID, Size: l.Size, Cached: s.haveLayers([]string{diffID})})
	}
	return p, nil
}

// PlanImport reads a `docker save` or OCI layout tarball (optionally
// gzipped) and returns the images it holds, with their layers and whether
// each is cached, checking the manifests and configs against their digests
// and that every layer blob is there. It writes nothing: a gzipped tarball
// is decompressed again for each read instead of into a temp file.
func (s *Store) PlanImport(ctx context.Context, path string) (format string, imgs []*PlannedImage, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", nil, errdefs.WithHint(fmt.Errorf("import %s: %w", path, notFoundIf(err)), "give the path of a tarball made by `docker save` or an OCI layout tarball")
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errdefs.WithHint(fmt.Errorf("import %s: not a regular file (%s): %w", path, fileKind(fi.Mode()), errdefs.ErrInvalid),
			"give the path of a tarball file made by `docker save` or an OCI layout tarball; save a stream to a file first")
	}
	var gz bool
	if err == nil {
		magic, _ := bufio.NewReader(f).Peek(2)
		gz = len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
	}
	_ = f.Close()
	if err != nil {
		return "", nil, err
	}
	opener := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil || !gz {
			return f, err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{ctxReader{ctx, zr}, f}, nil
	}
	entries, err := tarEntries(opener)
	if err != nil {
		return "", nil, fmt.Errorf("import %s: %v: %w", path, err, errdefs.ErrInvalid)
	}
	switch {
	case hasEntry(entries, "manifest.json"):
		imgs, err = s.planDockerSave(opener)
		format = "docker-save"
	case hasEntry(entries, "oci-layout") && hasEntry(entries, "index.json"):
		imgs, err = s.planOCILayout(opener, entries)
		format = "oci-layout"
	default:
		return "", nil, errdefs.WithHint(fmt.Errorf("import %s: neither a docker save tarball (no manifest.json) nor an OCI layout (no oci-layout, index.json): %w", path, errdefs.ErrInvalid),
			"make it with `docker save -o FILE IMAGE` or by tarring an OCI image layout directory")
	}
	if err != nil {
		return "", nil, fmt.Errorf("import %s: %w", path, err)
	}
	return format, imgs, nil
}

func hasEntry(entries map[string]int64, name string) bool {
	_, ok := entries[name]
	return ok
}

// tarEntries lists the regular files of a tarball with their sizes.
func tarEntries(open tarball.Opener) (map[string]int64, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			out[cleanName(hdr.Name)] = hdr.Size
		}
	}
}

// maxMetaBlob bounds a manifest, index or config read from a tarball.
const maxMetaBlob = 4 << 20

// tarFile reads the small file name from a tarball.
func tarFile(open tarball.Opener, name string) ([]byte, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s is missing from the tarball: %w", name, errdefs.ErrInvalid)
		}
		if err != nil {
			return nil, err
		}
		if cleanName(hdr.Name) != name {
			continue
		}
		if hdr.Size > maxMetaBlob {
			return nil, fmt.Errorf("%s is %d bytes, more than a manifest or config can be (%d): %w", name, hdr.Size, maxMetaBlob, errdefs.ErrInvalid)
		}
		return io.ReadAll(tr)
	}
}

func (s *Store) planDockerSave(open tarball.Opener) ([]*PlannedImage, error) {
	m, err := tarball.LoadManifest(open)
	if err != nil {
		return nil, fmt.Errorf("reading manifest.json: %v: %w", err, errdefs.ErrInvalid)
	}
	var out []*PlannedImage
	for _, d := range m {
		tags := d.RepoTags
		if len(tags) == 0 {
			if len(m) != 1 {
				continue // Import skips these too
			}
			tags = []string{""}
		}
		for _, t := range tags {
			var tag *name.Tag
			if t != "" {
				tg, err := name.NewTag(t)
				if err != nil {
					return nil, fmt.Errorf("repo tag %q: %v: %w", t, err, errdefs.ErrInvalid)
				}
				tag = &tg
			}
			img, err := tarball.Image(open, tag)
			if err != nil {
				return nil, fmt.Errorf("image %s: %v: %w", t, err, errdefs.ErrInvalid)
			}
			dgst, err := img.Digest()
			if err != nil {
				return nil, fmt.Errorf("image %s: %v: %w", t, err, errdefs.ErrInvalid)
			}
			ref := dgst.String()
			if tag != nil {
				ref = tag.Name()
			}
			p, err := s.planImage(img, dgst, ref)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", ref, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// planOCILayout reads index.json and every image manifest and config it
// points at (picking the store's platform from nested indexes), checks
// each blob against its digest and that every layer blob is present with
// its size.
func (s *Store) planOCILayout(open tarball.Opener, entries map[string]int64) ([]*PlannedImage, error) {
	raw, err := tarFile(open, "index.json")
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %v: %w", err, errdefs.ErrInvalid)
	}
	blob := func(d v1.Hash, what string, v any) error {
		b, err := tarFile(open, "blobs/"+d.Algorithm+"/"+d.Hex)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, d, err)
		}
		if got := sha256Hex(b); d.Algorithm != "sha256" || got != d.Hex {
			return fmt.Errorf("%s blob has digest sha256:%s, not %s: %w", what, got, d, errdefs.ErrInvalid)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s %s: %v: %w", what, d, err, errdefs.ErrInvalid)
		}
		return nil
	}
	var out []*PlannedImage
	for _, d := range idx.Manifests {
		md := d
		if d.MediaType.IsIndex() {
			var child v1.IndexManifest
			if err := blob(d.Digest, "index", &child); err != nil {
				return nil, err
			}
			found := false
			for _, c := range child.Manifests {
				if c.Platform != nil && platformMatches(s.platform, *c.Platform) {
					md, found = c, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("index %s has no image for %s: %w", d.Digest, s.platform.String(), errdefs.ErrNotFound)
			}
		} else if !d.MediaType.IsImage() {
			continue // attestations, signatures and other artifacts
		}
		var m v1.Manifest
		if err := blob(md.Digest, "manifest", &m); err != nil {
			return nil, err
		}
		var cfg v1.ConfigFile
		if err := blob(m.Config.Digest, "config", &cfg); err != nil {
			return nil, err
		}
		if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
			return nil, fmt.Errorf("manifest %s has %d layers but its config lists %d diffIDs: %w", md.Digest, len(m.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalid)
		}
		ref := layoutRefName(d.Annotations)
		if ref == "" {
			ref = md.Digest.String()
		}
		p := &PlannedImage{Ref: ref, Digest: md.Digest.String()}
		for i, l := range m.Layers {
			size, ok := entries["blobs/"+l.Digest.Algorithm+"/"+l.Digest.Hex]
			if !ok || size != l.Size {
				return nil, fmt.Errorf("layer %s of %s: blob missing or not %d bytes: %w", l.Digest, ref, l.Size, errdefs.ErrInvalid)
			}
			diffID := cfg.RootFS.DiffIDs[i].String()
			p.Layers = append(p.Layers, PlannedLayer{Digest: l.Digest.String(), DiffID: diffID, Size: l.Size, Cached: s.haveLayers([]string{diffID})})
		}
		out = append(out, p)
	}
	return out, nil
}
