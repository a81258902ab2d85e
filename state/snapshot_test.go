package state

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Operator snapshots: saved from a Raft group, restored into new stores and
// groups, and damaged files refused.

// stateView is what a restore must reproduce: every table but the index.
func stateView(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	svcs, _ := s.Services()
	ins, _ := s.Instances(InstanceFilter{})
	nodes, _ := s.Nodes()
	secrets, _ := s.Secrets()
	fmt.Fprintf(&b, "%s\n%s\n%s\n%s\n", mustJSON(t, svcs), mustJSON(t, ins), mustJSON(t, nodes), mustJSON(t, s.Events(EventFilter{})))
	fmt.Fprintf(&b, "%s\n%s\n", mustJSON(t, s.Tokens()), mustJSON(t, secrets))
	for _, svc := range svcs {
		fmt.Fprintf(&b, "%s\n", mustJSON(t, s.History(svc.Name)))
	}
	return b.String()
}

func TestClusterSnapshotRestoreIntoNewStore(t *testing.T) {
	g := newGroup(t, 3)
	fol := g.follower(nil)
	populate(t, fol.store)
	apply(t, fol.store, PutService{Service: Service{Spec: webSpec("busybox:1.37", 2)}}) // version 2 in the history
	ld := g.leader(nil)
	ctx := ctxTimeout(t, clusterWait)

	var file bytes.Buffer
	if err := ld.store.SaveSnapshot(ctx, &file); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	h, _, err := ReadSnapshotFile(bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatalf("ReadSnapshotFile: %v", err)
	}
	if h.Index < ld.store.Index() || h.Term == 0 || h.Node != ld.id {
		t.Errorf("header %+v, want index >= %d, a term and node %s", h, ld.store.Index(), ld.id)
	}
	want := stateView(t, ld.store)
	if len(ld.store.History("web")) != 2 {
		t.Fatalf("history = %+v, want 2 versions", ld.store.History("web"))
	}

	// A second save with nothing new reads the same raft snapshot back.
	var again bytes.Buffer
	if err := ld.store.SaveSnapshot(ctx, &again); err != nil {
		t.Fatalf("SaveSnapshot again: %v", err)
	}

	dir := t.TempDir()
	fresh := openStore(t, dir)
	apply(t, fresh, PutNode{Node: Node{ID: "replaced"}})
	if err := fresh.RestoreSnapshot(ctx, bytes.NewReader(again.Bytes())); err != nil {
		t.Fatalf("RestoreSnapshot: %v", err)
	}
	if got := stateView(t, fresh); got != want {
		t.Errorf("restored state differs:\n got %s\nwant %s", got, want)
	}
	if fresh.Index() <= h.Index {
		t.Errorf("index after restore %d, want above the snapshot's %d", fresh.Index(), h.Index)
	}
	before := fresh.Index()
	if idx := apply(t, fresh, PutNode{Node: Node{ID: "after-restore"}}); idx <= before {
		t.Errorf("write after restore at %d, want above %d", idx, before)
	}
	// The restore survives a restart.
	after := stateView(t, fresh)
	fresh.Close()
	if got := stateView(t, openStore(t, dir)); got != after {
		t.Errorf("state after reopen differs:\n got %s\nwant %s", got, after)
	}

	// Into a new group: the followers get it as a raft snapshot over TLS.
	g2 := newGroup(t, 3)
	ld2 := g2.leader(nil)
	if err := g2.follower(nil).store.RestoreSnapshot(ctx, bytes.NewReader(file.Bytes())); !errors.Is(err, ErrNotLeader) {
		t.Errorf("RestoreSnapshot on a follower: %v, want not leader", err)
	}
	if err := ld2.store.RestoreSnapshot(ctx, bytes.NewReader(file.Bytes())); err != nil {
		t.Fatalf("RestoreSnapshot into a new group: %v", err)
	}
	for _, n := range g2.live(nil) {
		waitFor(t, clusterWait, n.id+" holds the restored state", func() bool { return stateView(t, n.store) == want })
	}
	apply(t, g2.follower(nil).store, PutNode{Node: Node{ID: "after-group-restore"}})
}

func TestSnapshotRefusesDamagedFiles(t *testing.T) {
	src := openStore(t, t.TempDir())
	populate(t, src)
	ctx := ctxTimeout(t, 10*time.Second)
	var file bytes.Buffer
	if err := src.SaveSnapshot(ctx, &file); err != nil {
		t.Fatal(err)
	}
	good := file.Bytes()

	dst := openStore(t, t.TempDir())
	apply(t, dst, PutNode{Node: Node{ID: "keep-me"}})
	before := dumpState(dst)

	flipped := bytes.Clone(good)
	flipped[len(flipped)-5] ^= 0x20
	header := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	for _, tc := range []struct {
		name, data, want string
	}{
		{"flipped byte", string(flipped), "corrupt"},
		{"truncated", string(good[:len(good)-10]), "truncated"},
		{"empty", "", "not a gantry snapshot"},
		{"other file", "hello world\n", "not a gantry snapshot"},
		{"trailing data", string(good) + "x", "after its"},
		{"damaged header", string(header(`"format":1`, `"format":1,`)), "damaged header"},
		{"newer format", string(header(`"format":1`, `"format":9`)), "format 9"},
	} {
		err := dst.RestoreSnapshot(ctx, strings.NewReader(tc.data))
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: RestoreSnapshot = %v, want invalid mentioning %q", tc.name, err, tc.want)
		}
		if got := dumpState(dst); got != before {
			t.Fatalf("%s: a refused restore changed the state", tc.name)
		}
	}
	if err := dst.RestoreSnapshot(ctx, bytes.NewReader(good)); err != nil {
		t.Fatalf("RestoreSnapshot(good): %v", err)
	}
	if _, err := dst.Node("keep-me"); !errdefs.IsNotFound(err) {
		t.Errorf("after a restore the old state is gone: Node(keep-me) = %v", err)
	}
	if got, want := stateView(t, dst), stateView(t, src); got != want {
		t.Errorf("restored state differs:\n got %s\nwant %s", got, want)
	}
}
