package image

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestAllowHTTP(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Insecure: []string{"registry.lan:5000", "Other.Example"}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.3.4.5": true, "localhost:80": true, "[::1]:5000": true,
		"registry.lan:5000": true, "other.example": true,
		"registry.lan": false, "10.1.2.3:5000": false, "192.168.1.1": false, "example.com": false,
	} {
		if got := s.allowHTTP(host); got != want {
			t.Errorf("allowHTTP(%q) = %v, want %v", host, got, want)
		}
	}

	// The guard refuses before anything is sent.
	g := &httpGuard{base: roundTripFunc(func(*http.Request) (*http.Response, error) {
		t.Error("request reached the network")
		return nil, errors.New("unreachable")
	}), allow: s.allowHTTP}
	_, err = g.RoundTrip(&http.Request{URL: &url.URL{Scheme: "http", Host: "10.1.2.3:5000", Path: "/v2/"}})
	if !errors.Is(err, errHTTPNotAllowed) {
		t.Errorf("guard: %v, want errHTTPNotAllowed", err)
	}
	r := name.MustParseReference("10.1.2.3:5000/app:1")
	if err := registryError(r, err); !strings.Contains(err.Error(), "--insecure-registry 10.1.2.3:5000") {
		t.Errorf("guard error: %v, want a hint naming --insecure-registry", err)
	} else if !strings.Contains(err.Error(), "start the gantry that pulls") {
		// The flag is the server's or worker's, not the CLI's that shows the error.
		t.Errorf("guard error: %v, want the hint to say which gantry takes the flag", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRegistryErrorHints(t *testing.T) {
	r := name.MustParseReference("registry.example.com/team/app:v1")
	cases := []struct {
		name string
		err  error
		cat  error
		want string
	}{
		{"dns", &url.Error{Op: "Get", URL: "https://registry.example.com/v2/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "registry.example.com", IsNotFound: true}}},
			errdefs.ErrUnavailable, "is unknown"},
		{"refused", &url.Error{Op: "Get", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
			errdefs.ErrUnavailable, "check that the registry is running"},
		{"http to https", &url.Error{Op: "Get", Err: errors.New("http: server gave HTTP response to HTTPS client")},
			errdefs.ErrUnavailable, "--insecure-registry registry.example.com"},
		{"401", &transport.Error{StatusCode: http.StatusUnauthorized, Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode}}},
			errdefs.ErrPermission, "credentials"},
		{"manifest unknown", &transport.Error{StatusCode: http.StatusNotFound, Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}},
			errdefs.ErrNotFound, "tag v1 does not exist"},
		{"name unknown", &transport.Error{StatusCode: http.StatusNotFound, Errors: []transport.Diagnostic{{Code: transport.NameUnknownErrorCode}}},
			errdefs.ErrNotFound, "repository team/app does not exist"},
		{"tls", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"),
			errdefs.ErrUnavailable, "CA certificate"},
	}
	for _, c := range cases {
		err := registryError(r, c.err)
		if !errors.Is(err, c.cat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want category %v and text %q", c.name, err, c.cat, c.want)
		}
	}
	if err := registryError(r, context.Canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestParseMountinfo(t *testing.T) {
	mp, fs, ok := parseMountinfo(`36 35 98:0 / /var/lib/with\040space rw,noatime master:1 - overlay overlay rw,lowerdir=l/a`)
	if !ok || mp != "/var/lib/with space" || fs != "overlay" {
		t.Errorf("parseMountinfo = %q %q %v", mp, fs, ok)
	}
	mp, fs, ok = parseMountinfo(`22 1 0:21 / /proc rw,nosuid - proc proc rw`)
	if !ok || mp != "/proc" || fs != "proc" {
		t.Errorf("parseMountinfo (no optional fields) = %q %q %v", mp, fs, ok)
	}
	if _, _, ok := parseMountinfo("garbage"); ok {
		t.Errorf("parseMountinfo accepted garbage")
	}
}

func TestKeyedMutex(t *testing.T) {
	var k keyedMutex
	unlock, err := k.Lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is independent.
	unlockB, err := k.Lock(t.Context(), "b")
	if err != nil {
		t.Fatalf("lock b while a is held: %v", err)
	}
	unlockB()
	// The same key waits, and gives up with its context.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := k.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock of a held key: %v, want deadline exceeded", err)
	}
	unlock()
	unlock() // idempotent
	unlock2, err := k.Lock(t.Context(), "a")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
	k.mu.Lock()
	n := len(k.m)
	k.mu.Unlock()
	if n != 0 {
		t.Errorf("%d keyed entries left after all unlocks, want 0", n)
	}
}

func TestLinkNameCollision(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := "abcdef012345" + strings.Repeat("1", 52)
	b := "abcdef012345" + strings.Repeat("2", 52)
	na, err := s.linkName(a)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := s.linkName(b)
	if err != nil {
		t.Fatal(err)
	}
	if na == nb || na != a[:linkLen] || !strings.HasPrefix(b, nb) {
		t.Errorf("link names %q and %q for ids sharing a %d-digit prefix", na, nb, linkLen)
	}
	for id, n := range map[string]string{a: na, b: nb} {
		target, err := os.Readlink(filepath.Join(s.Root(), "l", n))
		if err != nil || target != filepath.Join("..", "layers", "sha256", id) {
			t.Errorf("l/%s -> %q, %v", n, target, err)
		}
		again, _ := s.linkName(id)
		if again != n {
			t.Errorf("link name of %s changed from %s to %s", id[:16], n, again)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", Options{}); !errdefs.IsInvalid(err) {
		t.Errorf("empty root: %v, want ErrInvalid", err)
	}
	if _, err := Open(t.TempDir(), Options{Platform: "not a platform/x/y/z"}); !errdefs.IsInvalid(err) {
		t.Errorf("bad platform: %v, want ErrInvalid", err)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "index.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(root, Options{})
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt index: %v, want ErrInvalid saying corrupt", err)
	}
}
