package cli

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
)

// Revoking by name points at the ID(s) with that name.
func TestTokenNameHint(t *testing.T) {
	tokens := []api.TokenInfo{{ID: "aaa", Name: "ci"}, {ID: "bbb", Name: "ed"}, {ID: "ccc", Name: "ed"}, {ID: "ddd", Name: "old", Revoked: true}}
	if h := tokenNameHint("ci", tokens); !strings.Contains(h, "gantry token revoke aaa") {
		t.Errorf("one match: %q", h)
	}
	if h := tokenNameHint("ed", tokens); !strings.Contains(h, "bbb, ccc") {
		t.Errorf("two matches: %q", h)
	}
	for _, name := range []string{"old", "nope"} {
		if h := tokenNameHint(name, tokens); h != "" {
			t.Errorf("%s: %q, want no hint", name, h)
		}
	}
}
