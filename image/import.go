package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
)

// OCI annotations naming an image in a layout's index.json.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// Import loads the images in a `docker save` tarball or an OCI image layout
// tarball (optionally gzipped) and records every repo tag in it. It returns
// one Image per tag (an untagged image is returned under its digest).
func (s *Store) Import(ctx context.Context, path string) ([]*Image, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer (forever, with
	// the caller's request stuck); it is rejected below like any non-file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("import %s: %w", path, notFoundIf(err)), "give the path of a tarball made by `docker save` or an OCI layout tarball")
	}
	defer f.Close()
	// The tarball is read several times (once per blob), so it must be a
	// regular file: not a directory, device, FIFO or socket.
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return nil, errdefs.WithHint(fmt.Errorf("import %s: not a regular file (%s): %w", path, fileKind(fi.Mode()), errdefs.ErrInvalid),
			"give the path of a tarball file made by `docker save` or an OCI layout tarball; save a stream to a file first")
	}

	// A gzipped tarball is unpacked to a temp file first: the tarball reader
	// opens the file once per blob it needs.
	tarPath := path
	br := bufio.NewReader(f)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("import %s: %v: %w", path, err, errdefs.ErrInvalid)
		}
		tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "import-*.tar")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		_, err = io.Copy(tmp, ctxReader{ctx, zr})
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: decompressing: %w", path, err)
		}
		tarPath = tmp.Name()
	}

	hasManifest, hasLayout, err := scanTar(tarPath)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("import %s: not a readable tar archive (%v): %w", path, err, errdefs.ErrInvalid),
			"pass a docker save tarball (docker save -o FILE IMAGE) or a tar of an OCI image layout, optionally gzipped")
	}
	switch {
	case hasManifest:
		return s.importDockerSave(ctx, tarPath)
	case hasLayout:
		return s.importOCILayout(ctx, tarPath)
	default:
		return nil, errdefs.WithHint(fmt.Errorf("import %s: neither a docker save tarball (no manifest.json) nor an OCI layout (no oci-layout, index.json): %w", path, errdefs.ErrInvalid),
			"make it with `docker save -o FILE IMAGE` or by tarring an OCI image layout directory")
	}
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.String()
	}
}

func notFoundIf(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	}
	return err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// scanTar reports whether the tarball has a docker-save manifest.json and
// whether it has an OCI layout's oci-layout and index.json.
func scanTar(p string) (hasManifest, hasLayout bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var ociLayout, index bool
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, false, err
		}
		switch cleanName(hdr.Name) {
		case "manifest.json":
			hasManifest = true
		case "oci-layout":
			ociLayout = true
		case "index.json":
			index = true
		}
	}
	return hasManifest, ociLayout && index, nil
}

func (s *Store) importDockerSave(ctx context.Context, tarPath string) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(tarPath) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("import %s: reading manifest.json: %v: %w", tarPath, err, errdefs.ErrInvalid)
	}
	var out []*Image
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			if len(m) != 1 {
				s.log.Warn("skipping untagged image in multi-image tarball", "config", d.Config, "index", i)
				continue
			}
			img, err := tarball.Image(opener, nil)
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", tarPath, err)
			}
			got, err := s.importImage(ctx, img, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
			continue
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return nil, fmt.Errorf("import %s: repo tag %q: %v: %w", tarPath, t, err, errdefs.ErrInvalid)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, fmt.Errorf("import %s: image %s: %w", tarPath, t, err)
			}
			got, err := s.importImage(ctx, img, []string{tag.Name()})
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
	}
	return out, nil
}

func (s *Store) importOCILayout(ctx context.Context, tarPath string) ([]*Image, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := extractPlain(ctx, tarPath, dir); err != nil {
		return nil, fmt.Errorf("import %s: %w", tarPath, err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %v: %w", tarPath, err, errdefs.ErrInvalid)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("import %s: %v: %w", tarPath, err, errdefs.ErrInvalid)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("import %s: index.json: %v: %w", tarPath, err, errdefs.ErrInvalid)
	}
	var out []*Image
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", tarPath, err)
			}
			img, err = s.pickPlatform(child, d.Digest.String())
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", tarPath, err)
			}
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", tarPath, err)
			}
		default:
			continue // attestations, signatures and other artifacts
		}
		var refs []string
		if r := layoutRefName(d.Annotations); r != "" {
			refs = append(refs, r)
		} else {
			s.log.Warn("image in OCI layout has no full reference name; recording it by digest only",
				"digest", d.Digest.String(), "ref_name", d.Annotations[annotationRefName])
		}
		got, err := s.importImage(ctx, img, refs)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// layoutRefName returns the normalised full reference an index entry names,
// or "". org.opencontainers.image.ref.name may hold a bare tag ("1.0"), which
// names no repository, so it only counts when it parses as a full reference.
func layoutRefName(ann map[string]string) string {
	for _, k := range []string{annotationContainerName, annotationRefName} {
		v := ann[k]
		if v == "" || !strings.ContainsAny(v, "/:@") {
			continue
		}
		if r, err := name.ParseReference(v); err == nil {
			return r.Name()
		}
	}
	return ""
}

// importImage ingests img and records it under refs (and its digest).
func (s *Store) importImage(ctx context.Context, img v1.Image, refs []string) ([]*Image, error) {
	label := "import"
	if len(refs) > 0 {
		label = refs[0]
	}
	rec, err := s.ingest(ctx, img, label, nil)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", label, err)
	}
	all := refs
	for _, r := range refs {
		if ref, err := name.ParseReference(r); err == nil {
			all = append(all, ref.Context().Digest(rec.Digest).Name())
		}
	}
	if err := s.record(rec, all...); err != nil {
		return nil, err
	}
	s.log.Info("imported image", "refs", refs, "digest", rec.Digest, "layers", len(rec.Layers))
	if len(refs) == 0 {
		return []*Image{rec.image(rec.Digest)}, nil
	}
	out := make([]*Image, 0, len(refs))
	for _, r := range refs {
		out = append(out, rec.image(r))
	}
	return out, nil
}

// extractPlain extracts the regular files and directories of a tarball (an
// OCI layout has nothing else) below dir; names are cleaned so nothing lands
// outside it, and links of any kind are skipped.
func extractPlain(ctx context.Context, tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %v: %w", err, errdefs.ErrInvalid)
		}
		rel := cleanName(hdr.Name)
		if rel == "" {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			// O_EXCL and no symlinks are ever created here, so nothing is
			// written through a link.
			out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
