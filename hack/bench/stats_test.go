package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	cases := []struct {
		in          []time.Duration
		median, p90 time.Duration
	}{
		{ms(5), 5 * time.Millisecond, 5 * time.Millisecond},
		{ms(3, 1, 2), 2 * time.Millisecond, 3 * time.Millisecond},
		{ms(4, 1, 3, 2), 2500 * time.Microsecond, 4 * time.Millisecond},
		// nearest rank: ceil(0.9*10) = 9th of 10
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 5500 * time.Microsecond, 9 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100), 6 * time.Millisecond, 10 * time.Millisecond},
	}
	for _, c := range cases {
		s := summarize(c.in)
		if s.median != c.median || s.p90 != c.p90 || s.n != len(c.in) {
			t.Errorf("summarize(%v) = %+v, want median %v p90 %v", c.in, s, c.median, c.p90)
		}
	}
	if s := summarize(nil); s.n != 0 || s.median != 0 {
		t.Errorf("summarize(nil) = %+v", s)
	}
}

func TestParseKV(t *testing.T) {
	line := `time=2026-12-03T09:33:54.973Z level=DEBUG msg="network attached" network=gantry instance=bulk-6-ed655e ip=10.92.0.16 ports=0 took=1.140904293s note="a \"quoted\" word"`
	kv := parseKV(line)
	want := map[string]string{
		"time": "2026-12-03T09:33:54.973Z", "level": "DEBUG", "msg": "network attached",
		"instance": "bulk-6-ed655e", "took": "1.140904293s", "note": `a "quoted" word`,
	}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
}

func TestReadLogAndBreakdown(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "gantry.log")
	lines := []string{
		`time=2026-12-03T10:00:00.010Z level=DEBUG msg="mounted image" component=image ref=r rootfs=/d/instances/lat01-0-abc/rootfs layers=1`,
		`time=2026-12-03T10:00:00.020Z level=DEBUG msg="CNI plugin" network=gantry plugin=bridge command=ADD instance=lat01-0-abc took=30ms err=<nil>`,
		`time=2026-12-03T10:00:00.050Z level=DEBUG msg="network attached" network=gantry instance=lat01-0-abc ip=10.92.0.2 ports=0 took=40ms`,
		`not a log line`,
		`time=2026-12-03T10:00:00.090Z level=DEBUG msg="container started" instance=lat01-0-abc pid=42`,
	}
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := readLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != 4 {
		t.Fatalf("parsed %d lines, want 4", len(parsed))
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	r := &report{lat: []latRun{{
		id:        "lat01-0-abc",
		t0:        at("2026-12-03T09:59:59.995Z"),
		deployEv:  at("2026-12-03T09:59:59.997Z"),
		scheduled: at("2026-12-03T10:00:00.000Z"),
		started:   at("2026-12-03T10:00:00.095Z"),
		running:   at("2026-12-03T10:00:00.100Z"),
	}}}
	r.breakdown(parsed)
	want := []time.Duration{2, 3, 10, 40, 45, 5}
	if len(r.steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(r.steps), len(want))
	}
	for i, st := range r.steps {
		if len(st.d) != 1 || st.d[0] != want[i]*time.Millisecond {
			t.Errorf("step %q = %v, want %v", st.name, st.d, want[i]*time.Millisecond)
		}
	}
	if len(r.netTook) != 1 || r.netTook[0] != 40*time.Millisecond {
		t.Errorf("network took = %v", r.netTook)
	}
	if d := r.cniTook["bridge"]; len(d) != 1 || d[0] != 30*time.Millisecond {
		t.Errorf("bridge took = %v", d)
	}
}

func TestLayerDirs(t *testing.T) {
	root := t.TempDir()
	for _, l := range []string{"aaa", "bbb"} {
		if err := os.MkdirAll(filepath.Join(root, "layers", "sha256", l), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	idx := `{"version":1,"refs":{"r":"sha256:m"},"images":{"sha256:m":{"digest":"sha256:m","layers":["sha256:aaa","sha256:bbb"]}}}`
	if err := os.WriteFile(filepath.Join(root, "index.json"), []byte(idx), 0o600); err != nil {
		t.Fatal(err)
	}
	dirs, err := layerDirs(root, "sha256:m")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 2 || filepath.Base(dirs[0]) != "aaa" || filepath.Base(dirs[1]) != "bbb" {
		t.Errorf("layerDirs = %v, want aaa then bbb", dirs)
	}
	if _, err := layerDirs(root, "sha256:other"); err == nil {
		t.Error("layerDirs of an unknown image: no error")
	}
}

func TestProcReaders(t *testing.T) {
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.rss <= 0 || m.pss <= 0 {
		t.Errorf("memory of this process = %+v, want positive VmRSS and Pss", m)
	}
	c, err := readCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.self < 0 || c.children < 0 {
		t.Errorf("cpu = %+v", c)
	}
}
