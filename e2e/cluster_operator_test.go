package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// checkRaftOperator checks the operator verbs on a group of three servers:
// gantry operator raft peers shows three voters alive in gossip; a follower
// refuses a transfer naming the leader; remove-peer refuses a live server
// and says what the quorum would become; the leader hands leadership to a
// named follower, which hands it back (so the rest of the test runs as
// before). A snapshot saved on the leader restores there and reaches the
// followers.
func checkRaftOperator(t *testing.T, ctx context.Context, servers []*clusterNode) {
	t.Helper()
	h, err := servers[0].health(ctx)
	if err != nil || h.leader == "" {
		t.Fatalf("no leader to check the operator verbs with: %+v %v", h, err)
	}
	byName := map[string]*clusterNode{}
	for _, s := range servers {
		byName[s.name] = s
	}
	leader := byName[h.leader]
	var follower *clusterNode
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not one of the servers", h.leader)
	}

	// Gossip may learn of the last server a moment after Raft does.
	var peers api.RaftPeerList
	for deadline := time.Now().Add(10 * time.Second); ; {
		cmd := follower.node.Exec(ctx, gantryBin, "operator", "raft", "peers", "-o", "json")
		cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://127.0.0.1:7433/mcp", "GANTRY_TOKEN="+follower.token())
		out, err := cmd.CombinedOutput()
		peers = api.RaftPeerList{}
		if err != nil || json.Unmarshal(out, &peers) != nil {
			t.Fatalf("gantry operator raft peers on %s: %v\n%s", follower.name, err, out)
		}
		alive := 0
		for _, p := range peers.Peers {
			if p.Gossip == "alive" {
				alive++
			}
		}
		if peers.Voters == 3 && peers.Quorum == 2 && peers.Leader == leader.name && alive == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("operator raft peers = %s, want 3 voters alive, quorum 2, leader %s", out, leader.name)
		}
		time.Sleep(200 * time.Millisecond)
	}

	fs := follower.mcpSession(ctx)
	err = clusterCall(ctx, fs, api.ToolRaftTransferLeadership, map[string]any{}, nil)
	if err == nil || !strings.Contains(err.Error(), leader.name) {
		t.Errorf("transfer on follower %s: %v, want a refusal naming the leader %s", follower.name, err, leader.name)
	}
	err = clusterCall(ctx, fs, api.ToolRaftRemovePeer, map[string]any{"id": follower.name, "dry_run": true}, nil)
	if err == nil || !strings.Contains(err.Error(), "alive") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("remove-peer of the live %s: %v, want a refusal saying it is alive and naming the CLI's --force", follower.name, err)
	}
	var rm api.RaftRemovePeerResult
	if err := clusterCall(ctx, fs, api.ToolRaftRemovePeer, map[string]any{"id": follower.name, "dry_run": true, "force": true}, &rm); err != nil ||
		rm.Removed || rm.VotersTo != 2 || rm.QuorumTo != 2 {
		t.Errorf("remove-peer --force --dry-run: %+v %v, want 2 voters left, quorum 2, nothing removed", rm, err)
	}

	// Snapshots: a follower refuses to save (its state may lag), naming
	// the leader; the leader's file passes a dry run anywhere and restores
	// on the leader, reaching the followers as a Raft snapshot.
	err = clusterCall(ctx, fs, api.ToolSnapshotSave, map[string]any{}, nil)
	if err == nil || !strings.Contains(err.Error(), leader.name) {
		t.Errorf("snapshot_save on follower %s: %v, want a refusal naming the leader %s", follower.name, err, leader.name)
	}
	ls := leader.mcpSession(ctx)
	var saved api.SnapshotSaveResult
	if err := clusterCall(ctx, ls, api.ToolSnapshotSave, map[string]any{}, &saved); err != nil || saved.Header.Index == 0 || saved.Header.Node != leader.name {
		t.Fatalf("snapshot_save on the leader: %+v %v", saved.Header, err)
	}
	var restored api.SnapshotRestoreResult
	if err := clusterCall(ctx, fs, api.ToolSnapshotRestore, map[string]any{"data": saved.Data, "dry_run": true}, &restored); err != nil ||
		restored.Restored || restored.Header.SHA256 != saved.Header.SHA256 {
		t.Errorf("snapshot_restore dry run on follower %s: %+v %v", follower.name, restored, err)
	}
	if err := clusterCall(ctx, ls, api.ToolSnapshotRestore, map[string]any{"data": saved.Data}, &restored); err != nil || !restored.Restored {
		t.Fatalf("snapshot_restore on the leader: %+v %v\n%s", restored, err, leader.log())
	}
	for _, s := range servers {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var st api.ClusterStatus
			err := clusterCall(ctx, s.mcpSession(ctx), api.ToolClusterStatus, map[string]any{}, &st)
			if err == nil && st.Index >= restored.Index {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach the restored index %d: %+v %v\n%s", s.name, restored.Index, st, err, s.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	for _, hop := range [][2]*clusterNode{{leader, follower}, {follower, leader}} {
		from, to := hop[0], hop[1]
		var res api.RaftTransferResult
		start := time.Now()
		if err := clusterCall(ctx, from.mcpSession(ctx), api.ToolRaftTransferLeadership, map[string]any{"to": to.name}, &res); err != nil || res.Leader != to.name {
			t.Fatalf("transfer from %s to %s: %+v %v\n%s", from.name, to.name, res, err, from.log())
		}
		for _, s := range servers {
			waitHealth(t, ctx, s, 20*time.Second, func(h health) bool { return h.leader == to.name && len(h.voters) == 3 })
		}
		t.Logf("MEASURED leadership transfer: %s to %s in %v", from.name, to.name, time.Since(start).Round(time.Millisecond))
	}
}
