package mcp

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
)

// nopOperator satisfies Operator for registration checks; no call reaches it.
type nopOperator struct{ Operator }

func TestOperatorToolScopes(t *testing.T) {
	s, err := NewServer(Config{Services: nopServices{}, Images: nopImages{}, Token: "t0123456789", Operator: nopOperator{}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Scope{
		api.ToolRaftPeers:              ScopeRead,
		api.ToolRaftRemovePeer:         ScopeAdmin,
		api.ToolRaftTransferLeadership: ScopeAdmin,
		api.ToolSnapshotSave:           ScopeAdmin, // the file holds sealed secrets and token hashes
		api.ToolSnapshotRestore:        ScopeAdmin,
	}
	for tool, scope := range want {
		got, ok := s.scopes.Load(tool)
		if !ok || got.(Scope) != scope {
			t.Errorf("%s needs %v, want %s", tool, got, scope)
		}
	}
}

func TestDecodeSnapshot(t *testing.T) {
	file := []byte("gantry-snapshot\n{}\nbody")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(file)
	zw.Close()
	for name, data := range map[string]string{
		"plain": base64.StdEncoding.EncodeToString(file),
		"gzip":  base64.StdEncoding.EncodeToString(gz.Bytes()),
	} {
		got, err := decodeSnapshot(data)
		if err != nil || !bytes.Equal(got, file) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	cut := gz.Bytes()[:gz.Len()-6]
	for name, c := range map[string]struct{ data, want string }{
		"empty":      {"", "missing data"},
		"not base64": {"@@@", "not standard base64"},
		"cut gzip":   {base64.StdEncoding.EncodeToString(cut), "damaged gzip"},
	} {
		if _, err := decodeSnapshot(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

type nopServices struct{ Services }
type nopImages struct{ Images }
