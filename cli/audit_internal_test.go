package cli

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
)

// The table shows the rule behind a decision, or a short reason, never a
// policy's whole paragraph.
func TestAuditDecision(t *testing.T) {
	long := "exec_instance runs commands inside containers, so it is off unless the server's policy allows it. To enable it, ..."
	if got := auditDecision(api.AuditEntry{Decision: "denied", Rule: "default/exec-off", Reason: long}); got != "denied (default/exec-off)" {
		t.Errorf("with a rule: %q", got)
	}
	got := auditDecision(api.AuditEntry{Decision: "denied", Reason: "needs scope operate: ü" + long})
	if !strings.HasPrefix(got, "denied (needs scope operate") || len(got) > len("denied ()")+60 || !strings.HasSuffix(got, "...)") {
		t.Errorf("long reason: %q (%d bytes)", got, len(got))
	}
	if got := auditDecision(api.AuditEntry{Decision: "allowed"}); got != "allowed" {
		t.Errorf("plain: %q", got)
	}
}
