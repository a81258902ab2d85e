package cluster

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// gantry dev -h prints the flags and succeeds, like every other command;
// a bad flag is still an error.
func TestDevHelpSucceeds(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := RunDev(context.Background(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Errorf("gantry dev -h: %v", err)
	}
	if !strings.Contains(stderr.String(), "-data-dir") {
		t.Errorf("gantry dev -h printed no flags: %q", stderr.String())
	}
	stderr.Reset()
	if err := RunDev(context.Background(), []string{"--bogus"}, &stdout, &stderr); !errdefs.IsInvalid(err) {
		t.Errorf("gantry dev --bogus: %v, want an invalid-argument error", err)
	}
}

// A relative --run-dir is made absolute, like --data-dir, instead of being
// half used (runc root created under the working directory) and then
// refused by the network.
func TestDevRelativeDirsBecomeAbsolute(t *testing.T) {
	var stderr bytes.Buffer
	o, err := ParseDevFlags([]string{"--data-dir", "rel/data", "--run-dir", "rel/run"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(o.DataDir) || !filepath.IsAbs(o.RunDir) || !strings.HasSuffix(o.RunDir, "/rel/run") {
		t.Errorf("data dir %q, run dir %q: want absolute paths", o.DataDir, o.RunDir)
	}
}

// The start-up message suggests a command that reaches this gantry: a bare
// `gantry ps` only when the endpoint and token are the CLI's defaults.
func TestReadyMessage(t *testing.T) {
	if msg := readyMessage("http://127.0.0.1:7433/mcp", "/var/lib/gantry/admin.token"); !strings.Contains(msg, "try:          gantry ps\n") {
		t.Errorf("defaults: %q", msg)
	}
	msg := readyMessage("http://127.0.0.1:7533/mcp", "/tmp/d/admin.token")
	if !strings.Contains(msg, "gantry --addr http://127.0.0.1:7533/mcp --token-file /tmp/d/admin.token ps") {
		t.Errorf("elsewhere: %q", msg)
	}
}
