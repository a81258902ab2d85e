package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// craftSnapshot builds a snapshot file whose checksum matches body, as an
// attacker or a buggy tool could.
func craftSnapshot(t *testing.T, index, term uint64, body []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(body)
	h, err := json.Marshal(SnapshotHeader{Format: SnapshotFormat, Index: index, Term: term, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	return append(append(append([]byte(snapshotMagic), h...), '\n'), body...)
}

// A crafted snapshot with a good checksum is refused, never panics and
// never changes the state: null rows (memdb's indexers panicked on them,
// and raft panics when a follower's restore fails), two rows with one ID
// (one was silently dropped), a body of a future format, and a header
// index near 2^64 (raft restores at index+1, which wrapped the log).
func TestRestoreRefusesCraftedSnapshots(t *testing.T) {
	dst := openStore(t, t.TempDir())
	apply(t, dst, PutNode{Node: Node{ID: "keep-me"}})
	before := dumpState(dst)
	ctx := ctxTimeout(t, 10*time.Second)
	body := func(s string) []byte { return append([]byte{snapshotJSON}, s...) }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"index near 2^64", craftSnapshot(t, math.MaxUint64, 1, body(`{}`)), "impossible index"},
		{"term near 2^64", craftSnapshot(t, 5, math.MaxUint64, body(`{}`)), "impossible index"},
		{"body of a future format", craftSnapshot(t, 5, 1, append([]byte{snapshotJSON + 1}, `{}`...)), "unknown"},
		{"duplicate services", craftSnapshot(t, 5, 1, body(`{"services":[{"name":"a"},{"name":"a"}]}`)), "distinct"},
	}
	for _, table := range []string{"services", "instances", "nodes", "events", "history", "tokens", "audit", "approvals", "secrets", "joins"} {
		cases = append(cases, struct {
			name string
			file []byte
			want string
		}{"null row in " + table, craftSnapshot(t, 5, 1, body(`{"`+table+`":[null]}`)), "null"})
	}
	for _, c := range cases {
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: RestoreSnapshot panicked: %v", c.name, r)
				}
			}()
			err = dst.RestoreSnapshot(ctx, bytes.NewReader(c.file))
		}()
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: RestoreSnapshot = %v, want invalid mentioning %q", c.name, err, c.want)
		}
		if got := dumpState(dst); got != before {
			t.Fatalf("%s: a refused restore changed the state", c.name)
		}
	}
	// The store still takes writes at sane indexes.
	apply(t, dst, PutNode{Node: Node{ID: "after"}})
	if idx := dst.Index(); idx > 1<<20 {
		t.Errorf("index %d after refused restores", idx)
	}
}

// A snapshot from a newer gantry that kept the format but added fields
// is refused rather than restored without them; a saved file still
// restores.
func TestRestoreRefusesUnknownFields(t *testing.T) {
	dst := openStore(t, t.TempDir())
	apply(t, dst, PutNode{Node: Node{ID: "keep-me"}})
	before := dumpState(dst)
	ctx := ctxTimeout(t, 10*time.Second)
	for name, b := range map[string]string{
		"new table":         `{"volumes":[{"id":"v1"}]}`,
		"new service field": `{"services":[{"name":"a","placement_v2":{"zone":"z"}}]}`,
	} {
		err := dst.RestoreSnapshot(ctx, bytes.NewReader(craftSnapshot(t, 5, 1, append([]byte{snapshotJSON}, b...))))
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "does not know") {
			t.Errorf("%s: RestoreSnapshot = %v, want refused as unknown data", name, err)
		}
		if dumpState(dst) != before {
			t.Fatalf("%s: a refused restore changed the state", name)
		}
	}
	src := openStore(t, t.TempDir())
	populate(t, src)
	var file bytes.Buffer
	if err := src.SaveSnapshot(ctx, &file); err != nil {
		t.Fatal(err)
	}
	if err := dst.RestoreSnapshot(ctx, &file); err != nil {
		t.Fatalf("a saved snapshot: %v", err)
	}
}
