package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/errdefs"
)

// Helpers that build small images (for the demo and for tests). They hold
// layers in memory, so they are meant for small trees.

// LayerFromDir returns a layer holding the tree under dir at the image root,
// owned by root, keeping modes, mtimes and symlinks.
func LayerFromDir(dir string) (v1.Layer, error) {
	return LayerFromDirAt(dir, "")
}

// LayerFromDirAt is LayerFromDir with the tree placed under prefix (e.g.
// "www") in the image.
func LayerFromDirAt(dir, prefix string) (v1.Layer, error) {
	prefix = cleanName(prefix)
	// WalkDir does not descend into a root that is a symlink.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, notFoundIf(err))
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if prefix != "" {
		if err := writeParents(tw, prefix+"/x", map[string]bool{}); err != nil {
			return nil, err
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if name == "." || name == "" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&(fs.ModeSocket|fs.ModeIrregular) != 0 {
			return nil // tar cannot hold these
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

func layerFromBytes(b []byte) (v1.Layer, error) {
	// The layer is gzipped once (for its digest) and the result reused.
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressedCaching)
}

// BusyboxApplets are the applet links always made by BusyboxLayer, even if
// `busybox --list` cannot be run.
var BusyboxApplets = []string{
	"sh", "httpd", "sleep", "cat", "echo", "ls", "kill", "head", "tr", "dd",
	"wget", "nc", "true", "false", "env", "id",
}

// BusyboxLayer returns a layer with the busybox binary at /bin/busybox, a
// /bin/<applet> symlink for each of its applets (BusyboxApplets plus what
// `busybox --list` prints), /tmp (1777), and the extra files (path in the
// image -> content; mode 0755 for content starting with "#!", else 0644).
func BusyboxLayer(ctx context.Context, busyboxPath string, extra map[string][]byte) (v1.Layer, error) {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("busybox layer: %w", notFoundIf(err)),
			"install a static busybox (Debian: apt-get install busybox-static)")
	}
	applets := map[string]bool{}
	for _, a := range BusyboxApplets {
		applets[a] = true
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(lctx, busyboxPath, "--list").Output(); err == nil {
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.Contains(a, "/") {
				applets[a] = true
			}
		}
	}
	names := make([]string, 0, len(applets))
	for a := range applets {
		names = append(names, a)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	write := func(hdr *tar.Header, body []byte) error {
		hdr.ModTime, hdr.Format = mtime, tar.FormatPAX
		hdr.Uname, hdr.Gname = "root", "root"
		if err := writeParents(tw, hdr.Name, dirs); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	if err := write(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil); err != nil {
		return nil, err
	}
	dirs["tmp"] = true
	if err := write(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}, bin); err != nil {
		return nil, err
	}
	for _, a := range names {
		if err := write(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	paths := make([]string, 0, len(extra))
	for p := range extra {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel := cleanName(p)
		if rel == "" {
			return nil, fmt.Errorf("busybox layer: bad extra file path %q: %w", p, errdefs.ErrInvalid)
		}
		body := extra[p]
		mode := int64(0o644)
		if bytes.HasPrefix(body, []byte("#!")) {
			mode = 0o755
		}
		if err := write(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body))}, body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layerFromBytes(buf.Bytes())
}

// writeParents writes directory entries (0755, root) for the parents of
// name that are not in dirs yet.
func writeParents(tw *tar.Writer, name string, dirs map[string]bool) error {
	dir := path.Dir(name)
	if dir == "." || dir == "/" || dirs[dir] {
		return nil
	}
	if err := writeParents(tw, dir, dirs); err != nil {
		return err
	}
	dirs[dir] = true
	return tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755,
		ModTime: time.Unix(0, 0), Uname: "root", Gname: "root", Format: tar.FormatPAX})
}

// Build returns an image of layers (bottom first) with config cfg, for
// linux on this machine's architecture.
func Build(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

// Push uploads img to ref. insecure allows plain http to the registry
// (loopback registries always may use it).
func Push(ctx context.Context, img v1.Image, ref string, insecure bool) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return errdefs.WithHint(fmt.Errorf("push: image reference %q: %v: %w", ref, err, errdefs.ErrInvalid),
			"use registry/repository:tag, e.g. 127.0.0.1:5000/demo/web:1")
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push: %w", registryError(r, err))
	}
	return nil
}
