// Package imagetest helps tests build busybox images and serve them from an
// in-process registry (go-containerregistry's pkg/registry) on loopback.
package imagetest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/image"
)

// BusyboxPath is where the static busybox binary is expected.
const BusyboxPath = "/usr/bin/busybox"

// Busybox returns a one-layer image with /bin/busybox, its applet symlinks
// in /bin and the extra files (path -> content), with PATH set and Cmd
// ["/bin/sh"]. It skips the test if BusyboxPath is missing.
func Busybox(t testing.TB, extra map[string]string) v1.Image {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("needs %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	files := make(map[string][]byte, len(extra))
	for p, c := range extra {
		files[p] = []byte(c)
	}
	layer, err := image.BusyboxLayer(t.Context(), BusyboxPath, files)
	if err != nil {
		t.Fatalf("busybox layer: %v", err)
	}
	img, err := image.Build([]v1.Layer{layer}, v1.Config{
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"/bin/sh"},
	})
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	return img
}

// Registry starts an in-process registry on a loopback httptest server and
// returns its host:port. It is closed when the test ends.
func Registry(t testing.TB) string {
	t.Helper()
	return RegistryWith(t, nil)
}

// RegistryWith is Registry with the registry's handler wrapped by wrap (for
// counting or failing requests); wrap may be nil.
func RegistryWith(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// PushImage pushes img to ref (plain http allowed) or fails the test.
func PushImage(t testing.TB, img v1.Image, ref string) {
	t.Helper()
	if err := image.Push(t.Context(), img, ref, true); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
