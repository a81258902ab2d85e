package cluster

import (
	"strings"
	"testing"
)

func TestScrubSecrets(t *testing.T) {
	values := map[string]string{
		"db-password": "hunter2!",
		"db-prefix":   "hunter", // contained in db-password: the longer one wins where both match
		"short":       "abc",    // too short to scrub
		"pem":         "line-one\nline-two",
	}
	cases := []struct{ in, want string }{
		{"password=hunter2! ok", "password=[secret:db-password] ok"},
		{"hunter hunter2!hunter2!", "[secret:db-prefix] [secret:db-password][secret:db-password]"},
		{"abc stays", "abc stays"},
		{"got line-two alone", "got [secret:pem] alone"},
		{"both line-one\nline-two", "both [secret:pem]"},
		{"nothing here", "nothing here"},
		{"", ""},
	}
	for _, c := range cases {
		if got := ScrubSecrets(c.in, values); got != c.want {
			t.Errorf("ScrubSecrets(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var nilScrubber *Scrubber
	if nilScrubber.Scrub("hunter2!") != "hunter2!" || NewScrubber(map[string]string{"x": "abc"}) != nil {
		t.Error("a scrubber with nothing to scrub is not a no-op nil")
	}
	lines := NewScrubber(values).Lines([]string{"a hunter2!", "b"})
	if lines[0] != "a [secret:db-password]" || lines[1] != "b" {
		t.Errorf("Lines = %q", lines)
	}
}

// FuzzScrubSecrets checks that a scrubbed text never holds the value, unless
// the value could be rebuilt from the replacement token itself (it has a
// bracket, or is part of "[secret:<name>]"), and that text without the
// value is left alone.
func FuzzScrubSecrets(f *testing.F) {
	f.Add("DB_PASSWORD=hunter2 and hunter2", "hunter2")
	f.Add("aaaaaaa", "aaa")
	f.Add("xx\nline", "line\nxx")
	f.Add("secret:s secret", "cret")
	f.Fuzz(func(t *testing.T, text, value string) {
		const name = "s"
		got := ScrubSecrets(text, map[string]string{name: value})
		if len(value) < MinScrubLen {
			if got != text {
				t.Fatalf("a %d-byte value changed the text: %q -> %q", len(value), text, got)
			}
			return
		}
		if !strings.Contains(text, value) && !strings.ContainsAny(value, "\r\n") && got != text {
			t.Fatalf("text without the value changed: %q -> %q", text, got)
		}
		if strings.ContainsAny(value, "[]\r\n") || strings.Contains(ScrubToken(name), value) {
			return
		}
		if strings.Contains(got, value) {
			t.Fatalf("value %q survives in %q (from %q)", value, got, text)
		}
	})
}
