package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/image/imagetest"
)

func TestMkimage(t *testing.T) {
	if _, err := os.Stat(imagetest.BusyboxPath); err != nil {
		t.Skipf("needs %s: %v", imagetest.BusyboxPath, err)
	}
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("<h1>gantry</h1>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := imagetest.Registry(t) + "/demo/web:1"
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-busybox", imagetest.BusyboxPath, "-www", www, "-ref", ref, "-insecure"}, &out); err != nil {
		t.Fatalf("mkimage: %v", err)
	}
	if !strings.HasPrefix(out.String(), "pushed "+ref+"@sha256:") {
		t.Errorf("output %q", out.String())
	}

	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("fetch pushed image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if strings.Join(c.Cmd, " ") != "/bin/httpd -f -p 8080 -h /www" || c.WorkingDir != "/www" {
		t.Errorf("config Cmd %v WorkingDir %q", c.Cmd, c.WorkingDir)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.Env) == 0 || !strings.HasPrefix(c.Env[0], "PATH=") {
		t.Errorf("config ExposedPorts %v Env %v", c.ExposedPorts, c.Env)
	}

	files := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = h
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), "nobody:x:65534") || !strings.HasPrefix(string(b), "root:x:0:0") {
				t.Errorf("etc/passwd = %q", b)
			}
		}
	}
	for _, p := range []string{"bin/busybox", "bin/httpd", "bin/sh", "etc/passwd", "etc/group", "www/index.html"} {
		if files[p] == nil {
			t.Errorf("image lacks %s", p)
		}
	}
	if h := files["bin/httpd"]; h != nil && (h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox") {
		t.Errorf("bin/httpd: type %c -> %q, want a symlink to busybox", h.Typeflag, h.Linkname)
	}
	if h := files["bin/busybox"]; h != nil && (h.Mode&0o111 == 0 || h.Uid != 0) {
		t.Errorf("bin/busybox: mode %o uid %d", h.Mode, h.Uid)
	}

	// -o writes the same image as a docker save tarball, tagged -ref.
	tarPath := filepath.Join(t.TempDir(), "web.tar")
	out.Reset()
	if err := run(t.Context(), []string{"-busybox", imagetest.BusyboxPath, "-www", www, "-ref", "local/demo/web:1", "-o", tarPath}, &out); err != nil {
		t.Fatalf("mkimage -o: %v", err)
	}
	if !strings.Contains(out.String(), "gantry image import "+tarPath) {
		t.Errorf("-o output %q does not say how to import it", out.String())
	}
	tag := name.MustParseReference("local/demo/web:1").(name.Tag)
	saved, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatalf("read the tarball back: %v", err)
	}
	if scf, err := saved.ConfigFile(); err != nil || strings.Join(scf.Config.Cmd, " ") != "/bin/httpd -f -p 8080 -h /www" {
		t.Errorf("tarball image config %+v, %v", scf, err)
	}
	if ls, err := saved.Layers(); err != nil || len(ls) != 2 {
		t.Errorf("tarball image has %d layers (%v), want 2", len(ls), err)
	}

	if err := run(t.Context(), []string{"-ref", ref}, io.Discard); err == nil {
		t.Errorf("mkimage without -www succeeded")
	}
}
