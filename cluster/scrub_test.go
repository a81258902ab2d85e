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

// TestScrubCut: output cut to a size bound can end (or, for the end of a
// long log line, start) inside a secret's value; Scrub cannot match the
// piece, Cut removes it, and leaves uncut ends alone.
func TestScrubCut(t *testing.T) {
	sc := NewScrubber(map[string]string{"db": "supersecretvalue123", "pem": "first-line\nsecond-line"})
	pad := strings.Repeat("x", 50)
	cases := []struct {
		in         string
		head, tail bool
		want       string
	}{
		{pad + "supersecre", false, true, pad},
		{pad + "supersecre", false, false, pad + "supersecre"}, // not cut: left alone
		{"ecretvalue123" + pad, true, false, pad},
		{"ecretvalue123" + pad, false, false, "ecretvalue123" + pad},
		{"supersecretvalue123 " + pad + " supersecretvalue1", false, true, "[secret:db] " + pad + " "},
		{"alue123 supersecretvalue123 s", true, true, " [secret:db] "},
		{"ersecretval", true, true, ""},              // all inside the value
		{pad + " second-li", false, true, pad + " "}, // a line of a multi-line value
		{pad + " first-line\nsecond", false, true, pad + " [secret:pem]\n"},
		{pad + "xyz", false, true, pad + "xyz"}, // no value starts with the end
		{"", true, true, ""},
	}
	for _, c := range cases {
		if got := sc.Cut(c.in, c.head, c.tail); got != c.want {
			t.Errorf("Cut(%q, head %v, tail %v) = %q, want %q", c.in, c.head, c.tail, got, c.want)
		}
	}
	var none *Scrubber
	if got := none.Cut("supersecre", true, true); got != "supersecre" {
		t.Errorf("nil Scrubber.Cut changed the text: %q", got)
	}
	// A periodic value: the longest piece is found, not the first.
	per := NewScrubber(map[string]string{"p": "abababx"})
	if got := per.Cut("zzabababab", false, true); got != "zzab" {
		t.Errorf("Cut of a periodic value's start = %q, want %q", got, "zzab")
	}
}

// FuzzScrubCut cuts a+value+b inside the value (keeping the start, or the
// end for head) and checks that Cut keeps only what Scrub keeps of the
// whole text: a start (or end) of the scrubbed whole, so no piece of the
// cut occurrence survives. Values with brackets or line breaks, which the
// replacement token or line splitting complicate, are left out, and so are
// values that overlap themselves (a start that is also an end), whose
// occurrences the scrubber may align differently in the whole and the cut.
func FuzzScrubCut(f *testing.F) {
	f.Add("some text ", "supersecret", " more", uint16(4), false)
	f.Add("x", "secretword", "and more", uint16(3), true)
	f.Add("00000ord", "0100000000", "00", uint16(1), true)
	f.Fuzz(func(t *testing.T, a, value, b string, cut uint16, head bool) {
		if len(value) < MinScrubLen || len(value) > 1<<10 || strings.ContainsAny(value, "[]\r\n") {
			return
		}
		for k := 1; k < len(value); k++ {
			if value[:k] == value[len(value)-k:] {
				return
			}
		}
		sc := NewScrubber(map[string]string{"s": value})
		whole := sc.Scrub(a + value + b)
		c := len(a) + 1 + int(cut)%(len(value)-1) // inside the value
		text := a + value + b
		if head {
			got := sc.Cut(text[c:], true, false)
			if !strings.HasSuffix(whole, got) {
				t.Fatalf("Cut(%q, head) = %q: not an end of the scrubbed whole %q", text[c:], got, whole)
			}
			return
		}
		got := sc.Cut(text[:c], false, true)
		if !strings.HasPrefix(whole, got) {
			t.Fatalf("Cut(%q, tail) = %q: not a start of the scrubbed whole %q", text[:c], got, whole)
		}
	})
}
