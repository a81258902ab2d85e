package api

import "time"

// Tool names of the Raft and snapshot operator tools.
const (
	ToolRaftPeers              = "raft_peers"
	ToolRaftRemovePeer         = "raft_remove_peer"
	ToolRaftTransferLeadership = "raft_transfer_leadership"
	ToolSnapshotSave           = "snapshot_save"
	ToolSnapshotRestore        = "snapshot_restore"
)

// RaftPeerList is the output of raft_peers.
type RaftPeerList struct {
	Peers  []RaftPeer `json:"peers"`
	Leader string     `json:"leader" jsonschema:"the leader's ID; empty during an election"`
	Voters int        `json:"voters"`
	Quorum int        `json:"quorum" jsonschema:"voters needed to commit: a majority"`
}

// RaftPeer is one server of the Raft group.
type RaftPeer struct {
	ID       string `json:"id"`
	Addr     string `json:"addr" jsonschema:"host:port of its Raft transport"`
	Suffrage string `json:"suffrage" jsonschema:"voter, nonvoter or staging"`
	Leader   bool   `json:"leader"`
	Gossip   string `json:"gossip,omitempty" jsonschema:"its state in gossip as this server sees it (alive, suspect, dead, left); empty when not known (gantry dev has no gossip)"`
}

// RaftRemovePeerInput is the input of raft_remove_peer.
type RaftRemovePeerInput struct {
	ID     string `json:"id" jsonschema:"the peer's ID (see raft_peers)"`
	Force  bool   `json:"force,omitempty" jsonschema:"remove it even though gossip shows it alive"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and say what the quorum would become"`
}

// RaftRemovePeerResult is the output of raft_remove_peer.
type RaftRemovePeerResult struct {
	ID         string `json:"id"`
	Removed    bool   `json:"removed" jsonschema:"false on a dry run"`
	VotersFrom int    `json:"voters_from"`
	VotersTo   int    `json:"voters_to"`
	QuorumTo   int    `json:"quorum_to" jsonschema:"voters needed to commit once it is removed"`
	Message    string `json:"message"`
}

// RaftTransferInput is the input of raft_transfer_leadership.
type RaftTransferInput struct {
	To string `json:"to,omitempty" jsonschema:"the voter to hand leadership to; empty: the most up-to-date other voter"`
}

// RaftTransferResult is the output of raft_transfer_leadership.
type RaftTransferResult struct {
	From    string `json:"from"`
	Leader  string `json:"leader" jsonschema:"the leader after the transfer (empty if the election is still under way)"`
	Message string `json:"message"`
}

// SnapshotHeader describes a state snapshot.
type SnapshotHeader struct {
	Index   uint64         `json:"index" jsonschema:"the Raft index the state is at"`
	Term    uint64         `json:"term"`
	Created time.Time      `json:"created"`
	Node    string         `json:"node" jsonschema:"the server that saved it"`
	Size    int64          `json:"size" jsonschema:"bytes of state"`
	SHA256  string         `json:"sha256"`
	Counts  map[string]int `json:"counts,omitempty" jsonschema:"what it holds: services, instances, nodes, history, tokens, secrets, ..."`
}

// SnapshotSaveResult is the output of snapshot_save.
type SnapshotSaveResult struct {
	Header SnapshotHeader `json:"header"`
	// Data is the snapshot file (what `gantry snapshot save` writes),
	// gzip-compressed, in standard base64.
	Data string `json:"data" jsonschema:"the snapshot file, gzip-compressed, in standard base64; it holds sealed secrets and token hashes: keep it as safe as the servers' data"`
}

// SnapshotRestoreInput is the input of snapshot_restore.
type SnapshotRestoreInput struct {
	Data   string `json:"data" jsonschema:"the snapshot file as saved by snapshot_save or gantry snapshot save, in standard base64; gzip-compressed or not"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: check the file and report what it holds; change nothing"`
}

// SnapshotRestoreResult is the output of snapshot_restore.
type SnapshotRestoreResult struct {
	Header   SnapshotHeader `json:"header"`
	Restored bool           `json:"restored" jsonschema:"false on a dry run"`
	Index    uint64         `json:"index,omitempty" jsonschema:"the cluster's Raft index after the restore"`
	Message  string         `json:"message"`
}
