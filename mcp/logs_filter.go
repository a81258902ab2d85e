package mcp

import (
	"regexp"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// maxGrepLen bounds a service_logs grep pattern. RE2 matches in time
// linear in the input, so a bounded pattern over bounded logs stays cheap.
const maxGrepLen = 256

// validateLogFilters checks service_logs' since and grep at the edge and
// turns since into an absolute RFC 3339 time, so the cluster sees one form.
func validateLogFilters(in *api.LogsInput, now time.Time) error {
	if in.Since != "" {
		t, err := parseSince(in.Since, now)
		if err != nil {
			return err
		}
		in.Since = t.UTC().Format(time.RFC3339Nano)
	}
	if in.Grep == "" {
		return nil
	}
	if len(in.Grep) > maxGrepLen {
		return invalidf("grep is %d characters long: a pattern may be at most %d", len(in.Grep), maxGrepLen)
	}
	if strings.ContainsAny(in.Grep, "\n\r\x00") {
		return invalidf("grep holds a newline or NUL byte: it matches within one line, so pass text from a single line")
	}
	if _, err := GrepMatcher(in.Grep); err != nil {
		return invalidf("grep %s is not a valid RE2 regular expression (%v): fix it, or drop the surrounding slashes to match the text literally", quote(in.Grep), err)
	}
	return nil
}

// GrepMatcher returns the line matcher for a service_logs grep pattern:
// "/re/" is an RE2 regular expression, anything else a plain substring.
func GrepMatcher(pattern string) (func(string) bool, error) {
	if len(pattern) >= 2 && strings.HasPrefix(pattern, "/") && strings.HasSuffix(pattern, "/") {
		re, err := regexp.Compile(pattern[1 : len(pattern)-1])
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	return func(s string) bool { return strings.Contains(s, pattern) }, nil
}
