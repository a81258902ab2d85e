package cluster

import (
	"cmp"
	"slices"
	"strings"
)

// MinScrubLen is the shortest secret value that output scrubbing replaces:
// shorter values would match ordinary text everywhere.
const MinScrubLen = 4

// Scrubber replaces secret values in text that leaves the server (log
// lines, command output) with [secret:<name>]. A nil *Scrubber changes
// nothing. It is safe for concurrent use.
type Scrubber struct {
	r *strings.Replacer
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
	for _, p := range pats {
		args = append(args, p.old, ScrubToken(p.name))
	}
	return &Scrubber{r: strings.NewReplacer(args...)}
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
