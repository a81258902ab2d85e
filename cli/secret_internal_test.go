package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretReadValue(t *testing.T) {
	read := func(stdin, path string, keep bool) (string, error) {
		c := &secretCmd{app: newApp(&bytes.Buffer{}, &bytes.Buffer{}, strings.NewReader(stdin), func(string) (string, bool) { return "", false })}
		return c.readValue(path, keep)
	}
	for _, tc := range []struct {
		stdin string
		keep  bool
		want  string
	}{
		{"hunter2\n", false, "hunter2"},
		{"hunter2\r\n", false, "hunter2"},
		{"hunter2\n\n", false, "hunter2\n"}, // only one newline is dropped
		{"hunter2\n", true, "hunter2\n"},
		{"multi\nline", false, "multi\nline"},
	} {
		if got, err := read(tc.stdin, "", tc.keep); err != nil || got != tc.want {
			t.Errorf("stdin %q (keep %v) = %q, %v; want %q", tc.stdin, tc.keep, got, err, tc.want)
		}
	}
	if _, err := read("", "", false); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty stdin: %v", err)
	}
	if _, err := read(strings.Repeat("x", 64<<10+1), "", false); err == nil || !strings.Contains(err.Error(), "64 KiB") {
		t.Errorf("too long: %v", err)
	}
	// /dev/null is a character device but no terminal: no prompt, and the
	// empty value is refused.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	var stderr bytes.Buffer
	c := &secretCmd{app: newApp(&bytes.Buffer{}, &stderr, devnull, func(string) (string, bool) { return "", false })}
	if _, err := c.readValue("", false); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("stdin /dev/null: %v", err)
	}
	if strings.Contains(stderr.String(), "terminal") {
		t.Errorf("stdin /dev/null is taken for a terminal: %q", stderr.String())
	}
	path := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := read("ignored", path, false); err != nil || got != "from-file\n" {
		t.Errorf("--from-file = %q, %v; want the file exactly", got, err)
	}
}
