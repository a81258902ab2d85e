package cluster

import (
	"bytes"
	"context"
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
