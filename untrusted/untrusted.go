// Package untrusted handles text that containers wrote (logs, command
// output, event messages derived from them): such text is data, never
// instructions, and must not be able to drive a terminal or break a line.
package untrusted

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape shows control characters (terminal escape sequences, carriage
// returns, stray newlines; tabs are kept) and invalid UTF-8 as \xNN or
// \uNNNN, so a line stays one visible line and cannot move the cursor,
// set the title or write the clipboard. Clean text is returned as is.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (unicode.IsControl(r) && r != '\t') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r) && r != '\t':
			if r < 0x80 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
