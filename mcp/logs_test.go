package mcp

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/untrusted"
)

func TestBoundLogsSharesBudget(t *testing.T) {
	line := strings.Repeat("y", 99) // 100 bytes with the newline
	many := make([]string, 50)
	for i := range many {
		many[i] = line
	}
	res := boundLogs(api.LogsResult{Instances: []api.LogBlock{
		{Instance: "a", Lines: []string{"short"}},
		{Instance: "b", Lines: many},
		{Instance: "c", Lines: append([]string{strings.Repeat("z", maxLineBytes+10)}, many...)},
	}}, 100, 3000)
	if !res.Truncated {
		t.Error("not marked truncated")
	}
	total := 0
	for _, b := range res.Instances {
		for _, l := range b.Lines {
			total += len(l) + 1
		}
	}
	if total > 3000 {
		t.Errorf("total %d > 3000", total)
	}
	// The small block is whole; the unused share goes to the others.
	if len(res.Instances[0].Lines) != 1 || len(res.Instances[1].Lines) != 14 || len(res.Instances[2].Lines) != 15 {
		t.Errorf("lines kept: %d %d %d", len(res.Instances[0].Lines), len(res.Instances[1].Lines), len(res.Instances[2].Lines))
	}
	res = boundLogs(api.LogsResult{Instances: []api.LogBlock{{Instance: "a", Lines: []string{strings.Repeat("é", maxLineBytes)}}}}, 10, 1<<20)
	if l := res.Instances[0].Lines[0]; len(l) > maxLineBytes+20 || !strings.HasSuffix(l, "[line cut]") || !res.Truncated {
		t.Errorf("long line not cut: %d bytes", len(l))
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"plain\ttext":     "plain\ttext",
		"a\nb":            `a\x0ab`,
		"\x1b[2J":         `\x1b[2J`,
		"bad\xffutf8":     `bad\xffutf8`,
		"über \u0085next": `über \u0085next`,
	} {
		if got := untrusted.Escape(in); got != want {
			t.Errorf("untrusted.Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"web", "a", "web-2", strings.Repeat("a", 63)} {
		if err := validateName(ok); err != nil {
			t.Errorf("validateName(%q) = %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      "missing",
		"--all":                 "flag",
		"../x":                  "path",
		"a/b":                   "path",
		"Web":                   "DNS label",
		"web-":                  "DNS label",
		strings.Repeat("a", 64): "DNS label",
		"we b":                  "DNS label",
	} {
		err := validateName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateName(%q) = %v, want mention of %q", bad, err, want)
		}
	}
}
