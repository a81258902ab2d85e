package runtime

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gantry-dev/gantry/errdefs"
)

// initFS holds gantry-init when it was built before this package was
// compiled. The Makefile builds cmd/gantry-init into initbin/ before every
// `go build` and `go test`; initbin/README.md keeps the pattern matching on
// a clean clone, where the binary is absent until `make` has run. (Naming
// the directory leaves out dot files such as a build's temporary output.)
//
//go:embed initbin
var initFS embed.FS

const initName = "gantry-init"

// InitBinary returns the embedded gantry-init, or an error when this build
// does not contain it.
func InitBinary() ([]byte, error) {
	data, err := fs.ReadFile(initFS, "initbin/"+initName)
	if err != nil || len(data) == 0 {
		return nil, errdefs.WithHint(
			fmt.Errorf("gantry-init is not embedded in this build: %w", errdefs.ErrUnavailable),
			"run `make` (it builds cmd/gantry-init into runtime/initbin/ before building gantry), or set init: false in the service spec")
	}
	return data, nil
}

// InstallInit writes the embedded gantry-init to dir/gantry-init (mode
// 0555) and returns its path. It replaces the file atomically, and only when
// its content differs, so running containers that bind-mount it keep theirs.
func InstallInit(dir string) (string, error) {
	data, err := InitBinary()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, initName)
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, data) {
		if err := os.Chmod(dst, 0o555); err != nil {
			return "", fmt.Errorf("install init: %w", err)
		}
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+initName+"-*")
	if err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install init: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install init: %w", err)
	}
	return dst, nil
}
