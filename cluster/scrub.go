package cluster

import (
	"cmp"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/mcp"
)

// MinScrubLen is the shortest secret value that output scrubbing replaces:
// shorter values would match ordinary text everywhere. set_secret refuses
// shorter values (a value stored before that is not scrubbed).
const MinScrubLen = mcp.MinSecretValue

// Scrubber replaces secret values in text that leaves the server (log
// lines, command output) with [secret:<name>]. A nil *Scrubber changes
// nothing. It is safe for concurrent use.
type Scrubber struct {
	r *strings.Replacer
	// values are the strings replaced, for Cut: a value that a bound cut
	// in two is no longer whole, so the replacer misses its piece.
	values []string
}

// NewScrubber returns a scrubber for values (secret name -> value), or nil
// when no value is long enough to scrub. A value spanning several lines is
// also scrubbed line by line, since logs are read a line at a time.
func NewScrubber(values map[string]string) *Scrubber { return newScrubberOf(values) }

// newScrubberOf scrubs the values of several maps (current and previous
// values of the same secrets).
func newScrubberOf(maps ...map[string]string) *Scrubber {
	type pat struct{ old, name string }
	var pats []pat
	for _, values := range maps {
		for name, v := range values {
			if len(v) >= MinScrubLen {
				pats = append(pats, pat{v, name})
			}
			if strings.ContainsAny(v, "\r\n") {
				for _, l := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
					if len(l) >= MinScrubLen {
						pats = append(pats, pat{l, name})
					}
				}
			}
		}
	}
	if len(pats) == 0 {
		return nil
	}
	// strings.Replacer tries the pairs in argument order at each position:
	// longest first, so that a value containing another is replaced whole.
	// Ties by value then name keep the result deterministic.
	slices.SortFunc(pats, func(a, b pat) int {
		if c := cmp.Compare(len(b.old), len(a.old)); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.old, b.old), strings.Compare(a.name, b.name))
	})
	args := make([]string, 0, 2*len(pats))
	values := make([]string, 0, len(pats))
	for _, p := range pats {
		args = append(args, p.old, ScrubToken(p.name))
		if len(values) == 0 || values[len(values)-1] != p.old {
			values = append(values, p.old)
		}
	}
	return &Scrubber{r: strings.NewReplacer(args...), values: values}
}

// ScrubToken is what a secret's value is replaced with.
func ScrubToken(name string) string { return "[secret:" + name + "]" }

// Scrub returns text with every secret value replaced.
func (s *Scrubber) Scrub(text string) string {
	if s == nil {
		return text
	}
	return s.r.Replace(text)
}

// Cut scrubs text that a size bound cut short: at its start (head) or its
// end (tail). A secret's value straddling a cut is no longer whole, so
// Scrub cannot match it; Cut also removes the piece of a value left at a
// cut end (the longest start of a value that text ends with, for tail; the
// longest end of a value that text starts with, for head), and returns ""
// for a text that is all inside a value. The bytes removed are at most a
// value's length less one, from an end that was cut anyway.
func (s *Scrubber) Cut(text string, head, tail bool) string {
	if s == nil {
		return text
	}
	text = s.r.Replace(text)
	if head && tail {
		for _, v := range s.values {
			if strings.Contains(v, text) {
				return ""
			}
		}
	}
	if tail {
		k := 0
		for _, v := range s.values {
			k = max(k, overlap(text, v))
		}
		text = text[:len(text)-k]
	}
	if head {
		k := 0
		rtext := reverse(text[:min(len(text), MaxSecretPiece)])
		for _, v := range s.values {
			k = max(k, overlap(rtext, reverse(v)))
		}
		text = text[k:]
	}
	return text
}

// MaxSecretPiece bounds the piece of a value that Cut looks for: a secret
// value is at most 64 KiB.
const MaxSecretPiece = 64 << 10

// overlap is the length of the longest proper prefix of v that text ends
// with (0 when none), found in O(len(v)) with the Knuth-Morris-Pratt
// failure function of v.
func overlap(text, v string) int {
	if len(v) < 2 || text == "" {
		return 0
	}
	q := v[:len(v)-1] // proper prefixes only
	if len(text) > len(q) {
		text = text[len(text)-len(q):]
	}
	fail := make([]int, len(q))
	for i, k := 1, 0; i < len(q); i++ {
		for k > 0 && q[i] != q[k] {
			k = fail[k-1]
		}
		if q[i] == q[k] {
			k++
		}
		fail[i] = k
	}
	k := 0
	for i := 0; i < len(text); i++ {
		for k > 0 && (k == len(q) || text[i] != q[k]) {
			k = fail[k-1]
		}
		if k < len(q) && text[i] == q[k] {
			k++
		}
	}
	return k
}

// reverse returns s with its bytes in reverse order.
func reverse(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

// Lines scrubs each line in place and returns lines.
func (s *Scrubber) Lines(lines []string) []string {
	if s == nil {
		return lines
	}
	for i, l := range lines {
		lines[i] = s.r.Replace(l)
	}
	return lines
}

// ScrubSecrets replaces each value of values (secret name -> value) that is
// at least MinScrubLen bytes long in text with [secret:<name>].
func ScrubSecrets(text string, values map[string]string) string {
	return NewScrubber(values).Scrub(text)
}
