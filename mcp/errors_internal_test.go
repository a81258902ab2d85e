package mcp

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// Only an operating-system permission error asks to run the server as root;
// a refusal by gantry's own rules keeps its own advice.
func TestDescribePermission(t *testing.T) {
	rule := describe("approve", fmt.Errorf("approval apr-1: admin asked for it and cannot decide it; another principal with the admin scope must: %w", errdefs.ErrPermission), errorHint{})
	if msg := rule.Error(); strings.Contains(msg, "root") || !strings.Contains(msg, "another principal with the admin scope must") {
		t.Errorf("rule refusal = %q: want its own advice, not root", msg)
	}
	var te *toolError
	if !errors.As(rule, &te) || te.cat != errdefs.ErrPermission {
		t.Errorf("rule refusal lost its category: %#v", rule)
	}
	osErr := describe("import_image", fmt.Errorf("open /var/lib/gantry/images: %w: %w", syscall.EACCES, errdefs.ErrPermission), errorHint{})
	if msg := osErr.Error(); !strings.Contains(msg, "run it as root") {
		t.Errorf("OS permission error = %q: want the root hint", msg)
	}
}
