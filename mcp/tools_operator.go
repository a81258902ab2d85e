package mcp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// Operator is what the Raft and snapshot tools need from the cluster.
// Membership changes, transfers, saves and restores run on the leader: on
// a follower they fail naming it.
type Operator interface {
	RaftPeers(ctx context.Context) (*api.RaftPeerList, error)
	// RemoveRaftPeer removes a server from the Raft group; dryRun says
	// what the quorum would become and changes nothing.
	RemoveRaftPeer(ctx context.Context, id string, force, dryRun bool) (*api.RaftRemovePeerResult, error)
	// TransferLeadership hands leadership to voter to (empty: any other).
	TransferLeadership(ctx context.Context, to string) (*api.RaftTransferResult, error)
	// SaveSnapshot writes a consistent snapshot file of the whole state.
	SaveSnapshot(ctx context.Context, w io.Writer) (*api.SnapshotHeader, error)
	// RestoreSnapshot checks a snapshot file and, unless dryRun, replaces
	// the whole state with it.
	RestoreSnapshot(ctx context.Context, file []byte, dryRun bool) (*api.SnapshotRestoreResult, error)
}

// maxSnapshotFile bounds a restored snapshot once decompressed. The request
// carrying it is bounded by the transport (4 MiB of JSON: about 3 MiB of
// gzip, tens of MiB of state).
const maxSnapshotFile = 1 << 30

// registerOperatorTools adds raft_peers, raft_remove_peer,
// raft_transfer_leadership, snapshot_save and snapshot_restore when cfg has
// an Operator.
//
// Snapshots travel as tool calls, not as a resource: a tool states its
// scope (admin: the file holds sealed secrets and token hashes), goes
// through the policy and is audited, so who took a copy of the state is on
// record. The file is gzip-compressed in base64 both ways.
func registerOperatorTools(s *Server, cfg Config) {
	if cfg.Operator == nil {
		return
	}
	op := cfg.Operator
	addTool(s, &sdk.Tool{
		Name:        api.ToolRaftPeers,
		Description: "List the servers of the Raft group: ID, Raft address, suffrage (voter, nonvoter, staging), which one leads, and each one's gossip state (alive, suspect, dead, left) as this server sees it; with the number of voters and the quorum.",
		Annotations: readOnly("Raft peers"),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.RaftPeerList, string, error) {
		res, err := op.RaftPeers(ctx)
		if err != nil {
			return api.RaftPeerList{}, "", describe(api.ToolRaftPeers, err, errorHint{notFound: "retry"})
		}
		if res == nil {
			return api.RaftPeerList{}, "", errors.New("the cluster returned no peers")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d voter%s, quorum %d, leader %s", res.Voters, plural(res.Voters), res.Quorum, orNoneText(res.Leader))
		for _, p := range res.Peers {
			fmt.Fprintf(&b, "\n%s %s %s", p.ID, p.Addr, p.Suffrage)
			if p.Leader {
				b.WriteString(" leader")
			}
			if p.Gossip != "" {
				fmt.Fprintf(&b, " gossip=%s", p.Gossip)
			}
		}
		return *res, b.String(), nil
	})
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolRaftRemovePeer,
		Description: "Remove a server from the Raft group, for a server that is gone for good. It refuses to remove the last voter, and a server gossip shows alive unless force is true. " +
			"With dry_run true nothing changes and the result says what the quorum would become. Runs on the leader: on a follower it fails naming the leader.",
		Annotations: mutating("Remove Raft peer", true, false),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, in api.RaftRemovePeerInput) (api.RaftRemovePeerResult, string, error) {
		if err := validatePeerID(in.ID); err != nil {
			return api.RaftRemovePeerResult{}, "", err
		}
		res, err := op.RemoveRaftPeer(ctx, in.ID, in.Force, in.DryRun)
		if err != nil {
			return api.RaftRemovePeerResult{}, "", describe(api.ToolRaftRemovePeer, err, errorHint{notFound: "list the peers with raft_peers"})
		}
		if res == nil {
			return api.RaftRemovePeerResult{}, "", errors.New("the cluster returned no result")
		}
		return *res, res.Message, nil
	})
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolRaftTransferLeadership,
		Description: "Hand Raft leadership to another voter (to), or with to empty to the most up-to-date other voter, e.g. before restarting the leader. " +
			"Runs on the leader: on a follower it fails naming the leader.",
		Annotations: mutating("Transfer Raft leadership", false, false),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, in api.RaftTransferInput) (api.RaftTransferResult, string, error) {
		if in.To != "" {
			if err := validatePeerID(in.To); err != nil {
				return api.RaftTransferResult{}, "", err
			}
		}
		res, err := op.TransferLeadership(ctx, in.To)
		if err != nil {
			return api.RaftTransferResult{}, "", describe(api.ToolRaftTransferLeadership, err, errorHint{notFound: "list the peers with raft_peers"})
		}
		if res == nil {
			return api.RaftTransferResult{}, "", errors.New("the cluster returned no result")
		}
		return *res, res.Message, nil
	})
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolSnapshotSave,
		Description: "Save a consistent snapshot of the whole state (services, history, instances, nodes, events, tokens, sealed secrets, audit) as a file restorable with snapshot_restore, into this cluster or a new one. " +
			"The file comes gzip-compressed in base64 in data, with its header. It holds sealed secrets and token hashes: admin scope only; keep it safe. Runs on the leader.",
		Annotations: readOnly("Save state snapshot"),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.SnapshotSaveResult, string, error) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		h, err := op.SaveSnapshot(ctx, zw)
		if err != nil {
			return api.SnapshotSaveResult{}, "", describe(api.ToolSnapshotSave, err, errorHint{notFound: "retry"})
		}
		if err := zw.Close(); err != nil || h == nil {
			return api.SnapshotSaveResult{}, "", fmt.Errorf("compress the snapshot: %v", err)
		}
		out := api.SnapshotSaveResult{Header: *h, Data: base64.StdEncoding.EncodeToString(buf.Bytes())}
		return out, "saved " + headerText(*h), nil
	})
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolSnapshotRestore,
		Description: "Replace the whole state with a snapshot saved by snapshot_save (data: the file in base64, gzip-compressed or not), typically into a new cluster. " +
			"The file is checked first (format, size, checksum, loadable): a damaged one is refused and nothing changes. Everything written since the snapshot is lost. " +
			"With dry_run true the file is only checked and its header (index, term, time, counts) returned. Runs on the leader.",
		Annotations: mutating("Restore state snapshot", true, false),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, in api.SnapshotRestoreInput) (api.SnapshotRestoreResult, string, error) {
		file, err := decodeSnapshot(in.Data)
		if err != nil {
			return api.SnapshotRestoreResult{}, "", err
		}
		res, err := op.RestoreSnapshot(ctx, file, in.DryRun)
		if err != nil {
			return api.SnapshotRestoreResult{}, "", describe(api.ToolSnapshotRestore, err, errorHint{notFound: "retry"})
		}
		if res == nil {
			return api.SnapshotRestoreResult{}, "", errors.New("the cluster returned no result")
		}
		return *res, res.Message, nil
	})
}

// decodeSnapshot turns snapshot_restore's data into the snapshot file:
// base64, then gunzip when it is gzip.
func decodeSnapshot(data string) ([]byte, error) {
	if data == "" {
		return nil, invalidf("missing data: pass the snapshot file in base64 (from snapshot_save, or gantry snapshot restore FILE)")
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, invalidf("data is not standard base64: %v; pass the snapshot file in base64", err)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, invalidf("data is a damaged gzip stream: %v; save the snapshot again", err)
	}
	file, err := io.ReadAll(io.LimitReader(zr, maxSnapshotFile+1))
	if err != nil {
		return nil, invalidf("data is a damaged gzip stream: %v; save the snapshot again", err)
	}
	if len(file) > maxSnapshotFile {
		return nil, invalidf("data decompresses to over %d bytes: not a gantry snapshot", maxSnapshotFile)
	}
	return file, nil
}

// headerText is a snapshot header in one line.
func headerText(h api.SnapshotHeader) string {
	var b strings.Builder
	fmt.Fprintf(&b, "snapshot at index %d (term %d) of %s, taken on %s, %d bytes", h.Index, h.Term, h.Created.Format("2006-01-02T15:04:05Z07:00"), orNoneText(h.Node), h.Size)
	if len(h.Counts) > 0 {
		fmt.Fprintf(&b, ": %v", h.Counts)
	}
	return b.String()
}

func orNoneText(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func validatePeerID(id string) error {
	if id == "" {
		return invalidf("missing peer ID: list them with raft_peers")
	}
	if strings.HasPrefix(id, "-") || len(id) > maxIDLength || !instanceID.MatchString(id) || strings.Contains(id, "..") {
		return invalidf("invalid peer ID %s: list the peers' IDs with raft_peers", quote(id))
	}
	return nil
}
