package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/spec"
)

// TestReadSpecFileBounded: deploy -f on a device, a directory or a FIFO must
// neither eat memory nor hang.
func TestReadSpecFileBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	ok := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(ok, []byte("name: web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := readSpecFile(ctx, ok); err != nil || string(data) != "name: web\n" {
		t.Errorf("regular file: %q, %v", data, err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, spec.MaxSpecSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSpecFile(ctx, big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("file over the limit: err = %v", err)
	}

	start := time.Now()
	if _, err := readSpecFile(ctx, "/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("/dev/zero: err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("/dev/zero took %s", d)
	}

	if _, err := readSpecFile(ctx, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: err = %v", err)
	}

	// A FIFO with no writer reads as empty instead of blocking in open.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readSpecFile(ctx, fifo); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("FIFO without writer: err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO without a writer hangs")
	}

	// A writer that never writes: the read ends with the context (Ctrl-C).
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	go func() { _, err := readSpecFile(cctx, fifo); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("FIFO with a silent writer: err = %v, want the context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO with a silent writer ignores the context")
	}
}

// --token-file on a device or a FIFO neither eats memory nor hangs.
func TestReadTokenFileBounded(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(ok, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := readTokenFile(ok); err != nil || string(data) != "abc\n" {
		t.Errorf("token file: %q, %v", data, err)
	}
	if _, err := readTokenFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a token file") {
		t.Errorf("/dev/zero: err = %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readTokenFile(fifo); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("--token-file on a FIFO hangs")
	}
}

// An unreadable token file asks for root or GANTRY_TOKEN, not to start gantry
// dev (it is running; its token is root's); a missing one asks for gantry dev.
func TestTokenFileError(t *testing.T) {
	denied := tokenFileError(&os.PathError{Op: "open", Path: "/var/lib/gantry/admin.token", Err: fs.ErrPermission})
	if msg := denied.Error(); !strings.Contains(msg, "sudo") || !strings.Contains(msg, "GANTRY_TOKEN") || strings.Contains(msg, "run gantry dev first") {
		t.Errorf("permission denied: %q", msg)
	}
	missing := tokenFileError(&os.PathError{Op: "open", Path: "/var/lib/gantry/admin.token", Err: fs.ErrNotExist})
	if msg := missing.Error(); !strings.Contains(msg, "run gantry dev first") || !strings.Contains(msg, "cannot read /var/lib/gantry/admin.token") {
		t.Errorf("missing: %q", msg)
	}
}

// A pull refused by policy does not suggest an import, which the same
// policy refuses; other pull failures do.
func TestPullFailedAdvice(t *testing.T) {
	denied := pullFailed(fmt.Errorf("pulling r:1: %w", &toolError{text: "permission denied by policy rule mode/read-only: ..."}), "r:1")
	if msg := denied.Error(); strings.Contains(msg, "image import") || !strings.Contains(msg, "--pull never") || !strings.Contains(msg, "gantry image pull r:1") {
		t.Errorf("refused pull: %q", msg)
	}
	down := pullFailed(fmt.Errorf("pulling r:1: %w", &toolError{text: "registry r refused the connection"}), "r:1")
	if msg := down.Error(); !strings.Contains(msg, "gantry image import FILE") {
		t.Errorf("unreachable registry: %q", msg)
	}
}

func TestPrintDeployedCountsReplicas(t *testing.T) {
	var b strings.Builder
	printDeployed(&b, api.DeployResult{Service: "one", Created: true, Version: 1, Desired: 1})
	if b.String() != "service one created (version 1, 1 replica)\n" {
		t.Errorf("got %q", b.String())
	}
}
