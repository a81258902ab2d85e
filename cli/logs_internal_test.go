package cli

import (
	"testing"

	"github.com/gantry-dev/gantry/untrusted"
)

// Log lines printed on a terminal cannot carry escape sequences (window
// title, clipboard, screen clearing) or overwrite themselves with \r.
func TestEscapeControls(t *testing.T) {
	for in, want := range map[string]string{
		"plain line\twith tab":              "plain line\twith tab",
		"\x1b]0;PWNED\x07\x1b[31mred\rover": `\x1b]0;PWNED\x07\x1b[31mred\x0dover`,
		"caf\xe9 \u00e9t\u00e9":             `caf\xe9 été`,
		"\u0085next line":                   `\u0085next line`,
	} {
		if got := untrusted.Escape(in); got != want {
			t.Errorf("untrusted.Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
