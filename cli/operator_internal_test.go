package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestSnapshotFileRoundTrip(t *testing.T) {
	file := []byte("gantry-snapshot\n{\"format\":1}\nstate")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(file)
	zw.Close()
	got, err := decodeSnapshotData(base64.StdEncoding.EncodeToString(gz.Bytes()))
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("decode = %q, %v", got, err)
	}
	if _, err := decodeSnapshotData("not base64!"); err == nil {
		t.Error("bad base64 accepted")
	}
	if _, err := decodeSnapshotData(base64.StdEncoding.EncodeToString(file)); err == nil {
		t.Error("data that is not gzip accepted")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "state.snap")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, file); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if err != nil || !bytes.Equal(b, file) || fi.Mode().Perm() != 0o600 {
		t.Errorf("written %q (%v), mode %v, want the file with mode 0600", b, err, fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "x.snap"), file); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
