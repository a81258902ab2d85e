package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gantry-dev/gantry/api"
)

// operatorCmd dispatches gantry operator raft ...
type operatorCmd struct {
	app *app
}

var operatorHelp = cmdHelp{
	usage: "operator raft peers|remove-peer|transfer-leader [arguments]",
	summary: `Operate the servers' Raft group:
  operator raft peers [-o table|json]    list the servers: ID, address, suffrage,
                                         leader and gossip state
  operator raft remove-peer ID [--force] [--dry-run]
                                         remove a server that is gone for good
                                         (refuses the last voter, and without
                                         --force a server that is alive)
  operator raft transfer-leader [ID]     hand leadership to ID, or to any other voter
Removing and transferring need an admin token and run on the leader.`,
}

func newOperatorCmd(a *app) *operatorCmd { return &operatorCmd{app: a} }

// Run runs gantry operator.
func (c *operatorCmd) Run(ctx context.Context, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
		printHelp(c.app.stdout, newFlagSet("operator"), operatorHelp)
		return errHelp
	}
	if len(args) == 0 || args[0] != "raft" {
		return usagef("operator", "expected: operator raft peers|remove-peer|transfer-leader")
	}
	if len(args) == 1 {
		return usagef("operator raft", "missing subcommand: expected peers, remove-peer or transfer-leader")
	}
	switch args[1] {
	case "peers", "list-peers":
		return c.peers(ctx, args[2:])
	case "remove-peer":
		return c.removePeer(ctx, args[2:])
	case "transfer-leader", "transfer-leadership":
		return c.transfer(ctx, args[2:])
	case "-h", "-help", "--help", "help":
		printHelp(c.app.stdout, newFlagSet("operator raft"), operatorHelp)
		return errHelp
	}
	return usagef("operator raft", "unknown subcommand %q: expected peers, remove-peer or transfer-leader", args[1])
}

func (c *operatorCmd) peers(ctx context.Context, args []string) error {
	fs := newFlagSet("operator raft peers")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "operator raft peers [-o table|json]",
		summary: "List the servers of the Raft group: ID, Raft address, suffrage, leader, and gossip state as this server sees it."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("operator raft peers", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RaftPeerList
	if err := cl.call(ctx, api.ToolRaftPeers, struct{}{}, &res); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res)
	}
	tw := newTable(c.app.stdout, "ID", "ADDRESS", "SUFFRAGE", "LEADER", "GOSSIP")
	for _, p := range res.Peers {
		leader := ""
		if p.Leader {
			leader = "leader"
		}
		row(tw, p.ID, p.Addr, p.Suffrage, orDash(leader), orDash(p.Gossip))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "%d voter(s), quorum %s\n", res.Voters, strconv.Itoa(res.Quorum))
	return nil
}

func (c *operatorCmd) removePeer(ctx context.Context, args []string) error {
	fs := newFlagSet("operator raft remove-peer")
	force := fs.Bool("force", false, "remove the server even though gossip shows it alive")
	dryRun := fs.Bool("dry-run", false, "change nothing: say what the quorum would become")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "operator raft remove-peer ID [--force] [--dry-run]",
		summary: "Remove a server that is gone for good from the Raft group. Refuses the last voter, and without --force a server gossip shows alive."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("operator raft remove-peer", pos, "ID"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RaftRemovePeerResult
	if err := cl.call(ctx, api.ToolRaftRemovePeer, api.RaftRemovePeerInput{ID: pos[0], Force: *force, DryRun: *dryRun}, &res); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res)
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}

func (c *operatorCmd) transfer(ctx context.Context, args []string) error {
	fs := newFlagSet("operator raft transfer-leader")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "operator raft transfer-leader [ID]",
		summary: "Hand Raft leadership to the voter ID, or to the most up-to-date other voter. Run it against the leader."}, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("operator raft transfer-leader", "unexpected argument %q: give at most one server ID", pos[1])
	}
	in := api.RaftTransferInput{}
	if len(pos) == 1 {
		in.To = pos[0]
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RaftTransferResult
	if err := cl.call(ctx, api.ToolRaftTransferLeadership, in, &res); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res)
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}

// snapshotCmd dispatches gantry snapshot save|restore.
type snapshotCmd struct {
	app *app
}

var snapshotHelp = cmdHelp{
	usage: "snapshot save|restore FILE",
	summary: `Save and restore the whole cluster state:
  snapshot save FILE                 write a consistent snapshot of the whole state
  snapshot restore FILE [--dry-run]  replace the whole state with FILE's (typically
                                     in a new cluster); --dry-run only checks the
                                     file and shows what it holds
The file holds sealed secrets and token hashes: keep it as safe as the servers'
data. Secrets open only with the secrets.key of the cluster that saved them.
FILE is written and read where this command runs. Both need an admin token and
run on the Raft leader (gantry operator raft peers shows which server it is);
restore --dry-run runs on any server.`,
}

func newSnapshotCmd(a *app) *snapshotCmd { return &snapshotCmd{app: a} }

// Run runs gantry snapshot.
func (c *snapshotCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("snapshot", "missing subcommand: expected save or restore")
	}
	switch args[0] {
	case "save":
		return c.save(ctx, args[1:])
	case "restore":
		return c.restore(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		printHelp(c.app.stdout, newFlagSet("snapshot"), snapshotHelp)
		return errHelp
	}
	return usagef("snapshot", "unknown subcommand %q: expected save or restore", args[0])
}

func (c *snapshotCmd) save(ctx context.Context, args []string) error {
	fs := newFlagSet("snapshot save")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "snapshot save FILE",
		summary: "Write a consistent snapshot of the whole cluster state to FILE (mode 0600; an existing file is replaced only once the snapshot is complete)."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("snapshot save", pos, "FILE"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.SnapshotSaveResult
	if err := cl.call(ctx, api.ToolSnapshotSave, struct{}{}, &res); err != nil {
		return err
	}
	file, err := decodeSnapshotData(res.Data)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(pos[0], file); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res.Header)
	}
	fmt.Fprintf(c.app.stdout, "saved %s: %s\n", pos[0], snapshotHeaderText(res.Header))
	return nil
}

func (c *snapshotCmd) restore(ctx context.Context, args []string) error {
	fs := newFlagSet("snapshot restore")
	dryRun := fs.Bool("dry-run", false, "change nothing: check the file and show what it holds")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "snapshot restore FILE [--dry-run]",
		summary: "Replace the whole cluster state with the snapshot in FILE. The file is checked first; a damaged one is refused and nothing changes."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("snapshot restore", pos, "FILE"); err != nil {
		return err
	}
	raw, err := os.ReadFile(pos[0])
	if err != nil {
		return usagef("snapshot restore", "%v", err)
	}
	// Compressed on the way: the request body is bounded (4 MiB).
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress %s: %w", pos[0], err)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.SnapshotRestoreResult
	in := api.SnapshotRestoreInput{Data: base64.StdEncoding.EncodeToString(buf.Bytes()), DryRun: *dryRun}
	if err := cl.call(ctx, api.ToolSnapshotRestore, in, &res); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res)
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}

// decodeSnapshotData turns snapshot_save's data (base64 of gzip) into the
// snapshot file.
func decodeSnapshotData(data string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("the server sent a snapshot that is not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the server sent a damaged snapshot: %w", err)
	}
	file, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("the server sent a damaged snapshot: %w", err)
	}
	return file, nil
}

// writeFileAtomic writes data to path (mode 0600) through a temporary file
// in the same directory, so a failed save leaves no half file behind.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func snapshotHeaderText(h api.SnapshotHeader) string {
	s := fmt.Sprintf("index %d, term %d, taken %s on %s, %s", h.Index, h.Term, h.Created.Format("2006-01-02 15:04:05Z07:00"), h.Node, humanBytes(h.Size))
	if len(h.Counts) > 0 {
		s += fmt.Sprintf("; %d services, %d versions of history, %d instances, %d tokens, %d secrets",
			h.Counts["services"], h.Counts["history"], h.Counts["instances"], h.Counts["tokens"], h.Counts["secrets"])
	}
	return s
}
