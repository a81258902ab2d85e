package membership

import (
	"log/slog"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	in := Meta{Role: RoleServer, RPCAddr: "10.0.0.5:7434", RaftAddr: "10.0.0.5:7435", CPU: 8000, Memory: 16 << 30,
		Zone: "eu-1a", Labels: map[string]string{"disk": "ssd", "arch": "amd64"}}
	b, err := in.encode(false)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != metaVersion || len(b) > MaxMetaSize {
		t.Fatalf("encoding %q: version %d, %d bytes", b, b[0], len(b))
	}
	out, leaving, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if leaving {
		t.Errorf("leaving flag set")
	}
	if lb, _ := in.encode(true); func() bool { _, l, err := decodeMeta(lb); return !l || err != nil }() {
		t.Errorf("leaving flag lost")
	}
	if out.Role != in.Role || out.RPCAddr != in.RPCAddr || out.RaftAddr != in.RaftAddr || out.CPU != in.CPU ||
		out.Memory != in.Memory || out.Zone != in.Zone || len(out.Labels) != 2 || out.Labels["disk"] != "ssd" {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
	// Compact: a worker with no extras is a few dozen bytes.
	small, _ := Meta{Role: RoleWorker}.encode(false)
	if len(small) > 16 {
		t.Errorf("minimal meta is %d bytes: %q", len(small), small)
	}
}

func TestDecodeMetaRejectsGarbage(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"empty":        {nil, "empty"},
		"version":      {[]byte{2, '{', '}'}, "version 2"},
		"bad json":     {[]byte{1, '{', 'x'}, "node meta"},
		"wrong type":   {[]byte("\x01{\"cpu\":\"lots\"}"), "node meta"},
		"binary noise": {[]byte{1, 0xff, 0x00, 0x13}, "node meta"},
	} {
		_, _, err := decodeMeta(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one mentioning %q", name, err, tc.want)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	good, _ := Meta{Role: RoleWorker, Labels: map[string]string{"a": "b"}}.encode(true)
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, err := decodeMeta(b) // must not panic
		if err == nil && len(b) == 0 {
			t.Errorf("empty input decoded to %+v", m)
		}
	})
}

func TestParseLogLine(t *testing.T) {
	for in, want := range map[string]struct {
		level slog.Level
		msg   string
	}{
		"[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed": {slog.LevelWarn, "Was able to connect to n2 over TCP but UDP probes failed"},
		"[ERR] memberlist: Failed to send ping: boom":                                 {slog.LevelError, "Failed to send ping: boom"},
		"[DEBUG] memberlist: Stream connection from=127.0.0.1:5":                      {slog.LevelDebug, "Stream connection from=127.0.0.1:5"},
		"[INFO] memberlist: Marking n3 as failed":                                     {slog.LevelInfo, "Marking n3 as failed"},
		"no tag at all": {slog.LevelInfo, "no tag at all"},
	} {
		level, msg := parseLogLine(in)
		if level != want.level || msg != want.msg {
			t.Errorf("parseLogLine(%q) = %v %q, want %v %q", in, level, msg, want.level, want.msg)
		}
	}
}
