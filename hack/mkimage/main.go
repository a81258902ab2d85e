// Command mkimage builds the demo web-server image from a static busybox and
// a directory of web files, and pushes it to a registry:
//
//	go run ./hack/mkimage -busybox /usr/bin/busybox -www DIR -ref 127.0.0.1:5000/demo/web:1 -insecure
//
// or, with -o FILE, writes it as a docker save tarball tagged -ref instead,
// for `gantry image import FILE` (no registry needed):
//
//	go run ./hack/mkimage -www examples/web/www -ref local/demo/web:1 -o web.tar
//
// The image has busybox and its applet links in /bin, DIR's files under
// /www, an /etc/passwd and /etc/group with root and nobody, and runs
// `httpd -f -p 8080 -h /www`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group  = "root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n"
)

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	busybox := fs.String("busybox", "/usr/bin/busybox", "path of a static busybox binary")
	www := fs.String("www", "", "directory whose files are served from /www")
	ref := fs.String("ref", "127.0.0.1:5000/demo/web:1", "image reference to push to")
	insecure := fs.Bool("insecure", false, "allow plain http to the registry")
	out := fs.String("o", "", "write a docker save tarball tagged -ref to this `FILE` instead of pushing (for gantry image import)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *www == "" {
		return fmt.Errorf("-www DIR is required: %w", flag.ErrHelp)
	}
	if st, err := os.Stat(*www); err != nil || !st.IsDir() {
		return fmt.Errorf("-www %s: not a directory", *www)
	}

	base, err := image.BusyboxLayer(ctx, *busybox, map[string][]byte{
		"etc/passwd": []byte(passwd),
		"etc/group":  []byte(group),
	})
	if err != nil {
		return err
	}
	site, err := image.LayerFromDirAt(*www, "www")
	if err != nil {
		return err
	}
	img, err := image.Build([]v1.Layer{base, site}, v1.Config{
		Env:          []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		WorkingDir:   "/www",
		Cmd:          []string{"/bin/httpd", "-f", "-p", "8080", "-h", "/www"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	})
	if err != nil {
		return err
	}
	dgst, err := img.Digest()
	if err != nil {
		return err
	}
	if *out != "" {
		tag, err := name.NewTag(*ref)
		if err != nil {
			return fmt.Errorf("-ref %q: a tarball needs a tag reference such as local/demo/web:1: %w", *ref, err)
		}
		if err := tarball.WriteToFile(*out, tag, img); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
		fmt.Fprintf(stdout, "wrote %s (%s@%s); import it with: gantry image import %s\n", *out, *ref, dgst, *out)
		return nil
	}
	if err := image.Push(ctx, img, *ref, *insecure); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pushed %s@%s\n", *ref, dgst)
	return nil
}
