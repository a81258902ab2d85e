package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/state"
)

// Operator serves the Raft and snapshot operator tools (raft_peers,
// raft_remove_peer, raft_transfer_leadership, snapshot_save and
// snapshot_restore) for gantry dev (one voter, no gossip) and gantry
// server. Everything but raft_peers runs on the leader: on a follower it
// fails with a state.NotLeaderError naming the leader.
type Operator struct {
	Store *state.Store
	// Self is this server's Raft ID.
	Self string
	// Members, when set, is the gossip view; raft_peers shows each peer's
	// state in it, and raft_remove_peer refuses peers it shows alive.
	Members func() []membership.Member
}

var _ mcp.Operator = (*Operator)(nil)

// leaderWait bounds how long a transfer waits to see the new leader.
const leaderWait = 5 * time.Second

func quorum(voters int) int { return voters/2 + 1 }

func (o *Operator) gossip() map[string]membership.State {
	out := map[string]membership.State{}
	if o.Members == nil {
		return out
	}
	for _, m := range o.Members() {
		out[m.Name] = m.State
	}
	return out
}

// RaftPeers lists the Raft configuration with each peer's gossip state.
func (o *Operator) RaftPeers(ctx context.Context) (*api.RaftPeerList, error) {
	peers, err := o.Store.Peers(ctx)
	if err != nil {
		return nil, err
	}
	g := o.gossip()
	out := &api.RaftPeerList{Peers: []api.RaftPeer{}}
	for _, p := range peers {
		out.Peers = append(out.Peers, api.RaftPeer{ID: p.ID, Addr: p.Addr, Suffrage: p.Suffrage, Leader: p.Leader, Gossip: string(g[p.ID])})
		if p.Suffrage == "voter" {
			out.Voters++
		}
		if p.Leader {
			out.Leader = p.ID
		}
	}
	out.Quorum = quorum(out.Voters)
	return out, nil
}

// notLeader is the error of a leader-only call made on a follower: Raft
// membership changes, transfers and restores run on the leader, and a save
// there holds every acknowledged write.
func (o *Operator) notLeader(op string) error {
	id, addr := o.Store.Leader()
	err := &state.NotLeaderError{Op: op, LeaderID: id, LeaderAddr: addr}
	if id == "" {
		return errdefs.WithHint(err, "retry once a leader is elected (raft_peers shows it)")
	}
	return errdefs.WithHint(err, leaderHint(id, addr))
}

// leaderHint says where a leader-only call goes. Servers do not gossip
// their MCP address, and it is on loopback by default, so the way there
// is usually the leader's machine, named by its Raft address's host.
func leaderHint(id, raftAddr string) string {
	where := "on its machine"
	if host, _, err := net.SplitHostPort(raftAddr); err == nil && host != "" {
		where = fmt.Sprintf("on its machine (%s)", host)
	}
	return fmt.Sprintf("call server %s's MCP endpoint instead: run gantry %s, where the endpoint listens on %s by default, or give gantry --addr the URL %s's --listen serves", id, where, DefaultListen, id)
}

// RemoveRaftPeer removes a peer, refusing the last voter and (without
// force) a peer gossip shows alive.
func (o *Operator) RemoveRaftPeer(ctx context.Context, id string, force, dryRun bool) (*api.RaftRemovePeerResult, error) {
	list, err := o.RaftPeers(ctx)
	if err != nil {
		return nil, err
	}
	var peer *api.RaftPeer
	for i := range list.Peers {
		if list.Peers[i].ID == id {
			peer = &list.Peers[i]
		}
	}
	if peer == nil {
		return nil, errdefs.WithHint(fmt.Errorf("remove raft peer %q: no such peer: %w", id, errdefs.ErrNotFound), "list the peers with raft_peers")
	}
	res := &api.RaftRemovePeerResult{ID: id, VotersFrom: list.Voters, VotersTo: list.Voters}
	if peer.Suffrage == "voter" {
		res.VotersTo--
	}
	res.QuorumTo = quorum(res.VotersTo)
	switch {
	case res.VotersTo == 0:
		return nil, errdefs.WithHint(fmt.Errorf("remove raft peer %q: it is the last voter; without it the cluster could never commit again: %w", id, errdefs.ErrConflict),
			"to retire this cluster, stop its servers; to move it, save a snapshot and restore it into the new one")
	case (peer.Gossip == string(membership.StateAlive) || (o.Members == nil && id == o.Self)) && !force:
		return nil, errdefs.WithHint(fmt.Errorf("remove raft peer %q: it is alive (gossip shows it answering): %w", id, errdefs.ErrConflict),
			"stop that server first, or pass force (from the CLI: --force) to remove it anyway (it then stops taking part in Raft)")
	}
	if dryRun {
		res.Message = fmt.Sprintf("dry run: removing %s would leave %d voter%s (quorum %d, was %d of %d); nothing changed",
			id, res.VotersTo, plural(res.VotersTo), res.QuorumTo, quorum(res.VotersFrom), res.VotersFrom)
		return res, nil
	}
	if !o.Store.IsLeader() {
		return nil, o.notLeader(fmt.Sprintf("remove raft peer %q", id))
	}
	if err := o.Store.RemovePeer(ctx, id); err != nil {
		return nil, err
	}
	res.Removed = true
	res.Message = fmt.Sprintf("removed %s: %d voter%s left, quorum %d", id, res.VotersTo, plural(res.VotersTo), res.QuorumTo)
	return res, nil
}

// TransferLeadership hands leadership to another voter and waits (briefly)
// to see who leads.
func (o *Operator) TransferLeadership(ctx context.Context, to string) (*api.RaftTransferResult, error) {
	list, err := o.RaftPeers(ctx)
	if err != nil {
		return nil, err
	}
	others := 0
	for _, p := range list.Peers {
		if p.Suffrage == "voter" && p.ID != o.Self {
			others++
		}
	}
	if others == 0 {
		return nil, errdefs.WithHint(fmt.Errorf("transfer raft leadership: there is no other voter to hand it to (%d voter%s): %w", list.Voters, plural(list.Voters), errdefs.ErrConflict),
			"add servers to the cluster first; gantry dev is a single voter")
	}
	if to == o.Self && o.Store.IsLeader() {
		return &api.RaftTransferResult{From: o.Self, Leader: o.Self, Message: fmt.Sprintf("%s already leads; nothing changed", o.Self)}, nil
	}
	if !o.Store.IsLeader() {
		return nil, o.notLeader("transfer raft leadership")
	}
	if err := o.Store.TransferLeadership(ctx, to); err != nil {
		return nil, err
	}
	res := &api.RaftTransferResult{From: o.Self}
	wctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	for wctx.Err() == nil {
		if id, _ := o.Store.Leader(); id != "" && id != o.Self {
			res.Leader = id
			break
		}
		select {
		case <-wctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if res.Leader == "" {
		res.Message = fmt.Sprintf("%s stepped down; the election of the new leader is still under way (see raft_peers)", o.Self)
	} else {
		res.Message = fmt.Sprintf("leadership moved from %s to %s", o.Self, res.Leader)
	}
	return res, nil
}

// SaveSnapshot writes the whole state, from the leader.
func (o *Operator) SaveSnapshot(ctx context.Context, w io.Writer) (*api.SnapshotHeader, error) {
	if !o.Store.IsLeader() {
		return nil, o.notLeader("save snapshot")
	}
	var buf bytes.Buffer
	if err := o.Store.SaveSnapshot(ctx, &buf); err != nil {
		return nil, err
	}
	h, body, err := state.ReadSnapshotFile(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("save snapshot: the file just written does not read back: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("save snapshot: %w", err)
	}
	return headerView(h, body), nil
}

// RestoreSnapshot checks file and, unless dryRun, replaces the state with it.
func (o *Operator) RestoreSnapshot(ctx context.Context, file []byte, dryRun bool) (*api.SnapshotRestoreResult, error) {
	h, body, err := state.ReadSnapshotFile(bytes.NewReader(file))
	if err != nil {
		return nil, fmt.Errorf("restore snapshot: %w", err)
	}
	res := &api.SnapshotRestoreResult{Header: *headerView(h, body)}
	if dryRun {
		res.Message = fmt.Sprintf("dry run: the file is sound; restoring it would replace the whole state (now at index %d) with a snapshot at index %d of %s taken on %s, holding %s; nothing changed",
			o.Store.Index(), h.Index, h.Created.Format(time.RFC3339), h.Node, countsText(res.Header.Counts))
		return res, nil
	}
	if !o.Store.IsLeader() {
		return nil, o.notLeader("restore snapshot")
	}
	if err := o.Store.RestoreSnapshot(ctx, bytes.NewReader(file)); err != nil {
		return nil, err
	}
	res.Restored, res.Index = true, o.Store.Index()
	res.Message = fmt.Sprintf("restored the snapshot at index %d of %s taken on %s (%s); the state is now at index %d",
		h.Index, h.Created.Format(time.RFC3339), h.Node, countsText(res.Header.Counts), res.Index)
	if res.Header.Counts["secrets"] > 0 {
		res.Message += fmt.Sprintf("; secrets stay sealed with the %s of the cluster that saved them: unless this is that cluster, stop it, copy that file into its data directory and start it again",
			state.SecretKeyFile)
	}
	return res, nil
}

// headerView is a snapshot header with what the state holds, counted from
// its body (a format byte, then a JSON object of lists).
func headerView(h state.SnapshotHeader, body []byte) *api.SnapshotHeader {
	out := &api.SnapshotHeader{Index: h.Index, Term: h.Term, Created: h.Created, Node: h.Node, Size: h.Size, SHA256: h.SHA256}
	var lists map[string]json.RawMessage
	if len(body) < 2 || json.Unmarshal(body[1:], &lists) != nil {
		return out
	}
	out.Counts = map[string]int{}
	for k, raw := range lists {
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			out.Counts[k] = len(items)
		}
	}
	return out
}

func countsText(c map[string]int) string {
	if len(c) == 0 {
		return "an unknown content"
	}
	return fmt.Sprintf("%d services, %d versions of history, %d instances, %d nodes, %d tokens, %d secrets",
		c["services"], c["history"], c["instances"], c["nodes"], c["tokens"], c["secrets"])
}
