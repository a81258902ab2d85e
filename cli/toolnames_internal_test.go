package cli

import (
	"strings"
	"testing"
)

func TestWithCLINames(t *testing.T) {
	got := withCLINames(`no rollout of service "web" is in progress. To go back to an earlier version, use rollback_service (versions: service_history); rollback_service again`)
	want := "\n(from the CLI: rollback_service is gantry rollback, service_history is gantry history)"
	if !strings.HasSuffix(got, want) {
		t.Errorf("got %q, want it to end with %q", got, want)
	}
	if got := withCLINames("stale (hint: make a new plan with dry_run true, check it, and apply that one)"); !strings.HasSuffix(got, "(from the CLI: dry_run is --dry-run)") {
		t.Errorf("argument: %q", got)
	}
	// A message that already gives the command, or names no tool, is kept.
	for _, text := range []string{
		`service "x" not found: list services with list_services (gantry ps)`,
		"nothing was deployed; deploy again with --pull never",
		"a made_up_name is not a tool",
	} {
		if got := withCLINames(text); got != text {
			t.Errorf("withCLINames(%q) = %q, want it unchanged", text, got)
		}
	}
}
