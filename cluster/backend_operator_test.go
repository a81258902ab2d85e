package cluster

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// opEnv is a single-voter store (as in gantry dev) behind the operator
// tools, called over an in-memory MCP session.
type opEnv struct {
	store *state.Store
	cs    *sdk.ClientSession
}

func newOpEnv(t *testing.T) *opEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	be := &Backend{Store: st}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Token: "t0123456789", Operator: &Operator{Store: st, Self: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return &opEnv{store: st, cs: cs}
}

// call calls tool, decodes its structured result into out and returns the
// text; it fails the test unless the call errs exactly when wantErr.
func (e *opEnv) call(t *testing.T, tool string, args, out any, wantErr bool) string {
	t.Helper()
	res, err := e.cs.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var text string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			text += tc.Text
		}
	}
	if res.IsError != wantErr {
		t.Fatalf("%s: error=%v, want %v: %s", tool, res.IsError, wantErr, text)
	}
	if out != nil && !res.IsError {
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: decode %s: %v", tool, raw, err)
		}
	}
	return text
}

func TestRaftToolsOnASingleVoter(t *testing.T) {
	e := newOpEnv(t)
	var peers api.RaftPeerList
	e.call(t, api.ToolRaftPeers, struct{}{}, &peers, false)
	if len(peers.Peers) != 1 || peers.Voters != 1 || peers.Quorum != 1 || peers.Leader != "n1" ||
		peers.Peers[0].ID != "n1" || peers.Peers[0].Suffrage != "voter" || !peers.Peers[0].Leader || peers.Peers[0].Gossip != "" {
		t.Fatalf("peers = %+v, want n1 alone, voter and leader, no gossip", peers)
	}
	for _, dry := range []bool{true, false} {
		msg := e.call(t, api.ToolRaftRemovePeer, api.RaftRemovePeerInput{ID: "n1", DryRun: dry, Force: true}, nil, true)
		if !strings.Contains(msg, "last voter") {
			t.Errorf("remove the only voter (dry run %v): %q does not say it is the last voter", dry, msg)
		}
	}
	if msg := e.call(t, api.ToolRaftRemovePeer, api.RaftRemovePeerInput{ID: "n9"}, nil, true); !strings.Contains(msg, "no such peer") {
		t.Errorf("remove an unknown peer: %q", msg)
	}
	if msg := e.call(t, api.ToolRaftRemovePeer, api.RaftRemovePeerInput{ID: "../x"}, nil, true); !strings.Contains(msg, "invalid peer ID") {
		t.Errorf("remove a bad ID: %q", msg)
	}
	for _, to := range []string{"", "n1"} {
		if msg := e.call(t, api.ToolRaftTransferLeadership, api.RaftTransferInput{To: to}, nil, true); !strings.Contains(msg, "no other voter") {
			t.Errorf("transfer to %q on a single voter: %q does not say there is no other voter", to, msg)
		}
	}
	if !e.store.IsLeader() {
		t.Error("n1 no longer leads after refused operations")
	}
}

func TestSnapshotSaveRestoreThroughTools(t *testing.T) {
	ctx := t.Context()
	src := newOpEnv(t)
	sp := spec.Service{Name: "db", Image: "busybox:1", Replicas: 1, Secrets: map[string]string{"PW": "db-pass"}}
	if _, err := src.store.Apply(ctx, state.PutSecret{Name: "db-pass", Sealed: make([]byte, 40)},
		state.PutService{Service: state.Service{Name: "db", Spec: sp, Version: 1}},
		state.PutToken{Token: state.Token{ID: "tok1", Name: "ci", Scope: "read", Hash: strings.Repeat("ab", 32), CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	var saved api.SnapshotSaveResult
	src.call(t, api.ToolSnapshotSave, struct{}{}, &saved, false)
	if saved.Header.Counts["services"] != 1 || saved.Header.Counts["secrets"] != 1 || saved.Header.Counts["tokens"] != 1 || saved.Header.Index == 0 {
		t.Fatalf("saved header = %+v, want 1 service, 1 secret, 1 token", saved.Header)
	}
	file := gunzipBase64(t, saved.Data)
	if h, _, err := state.ReadSnapshotFile(bytes.NewReader(file)); err != nil || h.SHA256 != saved.Header.SHA256 {
		t.Fatalf("saved file does not read back: %v (%+v)", err, h)
	}

	dst := newOpEnv(t)
	before := dst.store.Index()
	var res api.SnapshotRestoreResult
	dst.call(t, api.ToolSnapshotRestore, api.SnapshotRestoreInput{Data: saved.Data, DryRun: true}, &res, false)
	if res.Restored || res.Header.Index != saved.Header.Index || res.Header.Counts["services"] != 1 || !strings.Contains(res.Message, "dry run") {
		t.Fatalf("dry run = %+v", res)
	}
	if _, err := dst.store.Service("db"); err == nil || dst.store.Index() != before {
		t.Fatal("the dry run changed the state")
	}
	corrupt := bytes.Clone(file)
	corrupt[len(corrupt)-3] ^= 0xff
	for name, data := range map[string]string{
		"corrupt":    base64.StdEncoding.EncodeToString(corrupt),
		"truncated":  base64.StdEncoding.EncodeToString(file[:len(file)/2]),
		"not base64": "%%%",
	} {
		msg := dst.call(t, api.ToolSnapshotRestore, api.SnapshotRestoreInput{Data: data}, nil, true)
		if !strings.Contains(msg, "corrupt") && !strings.Contains(msg, "truncated") && !strings.Contains(msg, "base64") {
			t.Errorf("%s file: %q does not say what is wrong", name, msg)
		}
	}
	if _, err := dst.store.Service("db"); err == nil || dst.store.Index() != before {
		t.Fatal("a refused restore changed the state")
	}
	// The plain (uncompressed) file is accepted too.
	dst.call(t, api.ToolSnapshotRestore, api.SnapshotRestoreInput{Data: base64.StdEncoding.EncodeToString(file)}, &res, false)
	if !res.Restored || res.Index <= before || !strings.Contains(res.Message, "secrets.key") {
		t.Fatalf("restore = %+v", res)
	}
	if svc, err := dst.store.Service("db"); err != nil || svc.Spec.Image != "busybox:1" {
		t.Fatalf("restored service db = %+v, %v", svc, err)
	}
	if toks := dst.store.Tokens(); len(toks) != 1 || toks[0].ID != "tok1" {
		t.Fatalf("restored tokens = %+v", toks)
	}
}

func gunzipBase64(t *testing.T, data string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLeaderHint checks that a follower's refusal of a leader-only call
// names the leader's machine and the MCP address to use there, not a
// placeholder a newcomer cannot fill in.
func TestLeaderHint(t *testing.T) {
	got := leaderHint("s2", "10.98.0.12:7435")
	for _, want := range []string{"server s2's MCP endpoint", "(10.98.0.12)", DefaultListen, "--addr"} {
		if !strings.Contains(got, want) {
			t.Errorf("leaderHint = %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "7435") {
		t.Errorf("leaderHint = %q names the Raft port, which serves no MCP", got)
	}
	if got := leaderHint("s2", "not-an-address"); !strings.Contains(got, "run gantry on its machine,") {
		t.Errorf("leaderHint with a bad address = %q, want it to fall back to \"on its machine\"", got)
	}
}
