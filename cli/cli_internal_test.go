package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestProgressPrinter(t *testing.T) {
	var tty bytes.Buffer
	p := &progressPrinter{w: &tty, tty: true, label: "pulling x", lastPct: -1}
	for _, done := range []float64{0, 1 << 20, 2 << 20, 4 << 20} {
		p.update(done, 4<<20)
	}
	p.finish()
	if got := tty.String(); strings.Count(got, "\r\x1b[K") != 4 || !strings.HasSuffix(got, "4.0 MiB / 4.0 MiB (100%)\n") {
		t.Errorf("terminal output = %q", got)
	}

	var plain bytes.Buffer
	p = &progressPrinter{w: &plain, label: "pulling x", lastPct: -1}
	for i := 0; i <= 100; i++ {
		p.update(float64(i), 100)
	}
	p.finish()
	lines := strings.Split(strings.TrimSpace(plain.String()), "\n")
	if len(lines) != 11 || lines[0] != "pulling x: 0 B / 100 B (0%)" || lines[10] != "pulling x: 100 B / 100 B (100%)" {
		t.Errorf("plain output = %q", lines)
	}
	if strings.Contains(plain.String(), "\r") {
		t.Error("plain output has carriage returns")
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                         "docker.io/library/busybox:latest",
		"busybox:1.36":                    "docker.io/library/busybox:1.36",
		"index.docker.io/library/busybox": "docker.io/library/busybox:latest",
		"user/app:2":                      "docker.io/user/app:2",
		"127.0.0.1:5000/demo/web:1":       "127.0.0.1:5000/demo/web:1",
		"localhost/web":                   "localhost/web:latest",
		"ghcr.io/a/b@sha256:abc":          "ghcr.io/a/b@sha256:abc",
		"registry:5000/web":               "registry:5000/web:latest",
	} {
		if got := normalizeRef(in); got != want {
			t.Errorf("normalizeRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseInterspersedFlags(t *testing.T) {
	a := newApp(io.Discard, io.Discard, nil, func(string) (string, bool) { return "", false })
	c := newLogsCmd(a)
	pos, err := a.parse(c.fs, logsHelp, []string{"web", "--tail", "5", "--instance", "web-0-1", "--", "--x"})
	if err != nil || strings.Join(pos, " ") != "web --x" || c.tail != 5 || c.instance != "web-0-1" {
		t.Errorf("parse = %v, %v (tail %d, instance %q)", pos, err, c.tail, c.instance)
	}
	if _, err := a.parse(c.fs, logsHelp, []string{"--tail", "x"}); !errors.Is(err, ErrUsage) {
		t.Errorf("bad flag value: %v", err)
	}
}

func TestRegisterExternalCommand(t *testing.T) {
	var gotArgs []string
	t.Cleanup(func() {
		registryMu.Lock()
		defer registryMu.Unlock()
		registered = slices.DeleteFunc(registered, func(c command) bool { return c.name == "test-ext" })
	})
	Register("test-ext", "a command registered from outside", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		gotArgs = args
		fmt.Fprintln(stdout, "ran")
		if len(args) > 0 && args[0] == "bad" {
			return fmt.Errorf("wrong: %w", ErrUsage)
		}
		return nil
	})
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"test-ext", "a", "b"}, &out, &errb); code != 0 || out.String() != "ran\n" || strings.Join(gotArgs, " ") != "a b" {
		t.Errorf("Main = %d, %q, %q, args %v", code, out.String(), errb.String(), gotArgs)
	}
	if code := Main(context.Background(), []string{"test-ext", "bad"}, &out, &errb); code != 2 {
		t.Errorf("usage error from external command exited %d", code)
	}
	out.Reset()
	Main(context.Background(), []string{"help"}, &out, &errb)
	if !strings.Contains(out.String(), "test-ext") {
		t.Errorf("help does not list the registered command:\n%s", out.String())
	}
	for _, flag := range []string{"--addr URL", "--token-file FILE", "--ca-file FILE"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help does not list the global flag %s:\n%s", flag, out.String())
		}
	}
	for _, name := range []string{"test-ext", "ps", "Bad Name"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", name)
				}
			}()
			Register(name, "", func(context.Context, []string, io.Writer, io.Writer) error { return nil })
		}()
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{nil, 0},
		{errHelp, 0},
		{usagef("ps", "bad"), 2},
		{errors.New("boom"), 1},
		{context.Canceled, 1},
		{&toolError{text: `service "x" not found`}, 1},
	} {
		var stderr bytes.Buffer
		if got := exitCode("ps", tc.err, &stderr); got != tc.code {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
		if (tc.code == 0) != (stderr.Len() == 0) {
			t.Errorf("exitCode(%v) printed %q", tc.err, stderr.String())
		}
	}
}
