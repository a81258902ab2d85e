package state

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/hashicorp/raft"
)

// Operator snapshots: the whole state in one file, for `gantry snapshot
// save|restore`. The file is
//
//	gantry-snapshot\n
//	{"format":1,"index":…,"term":…,"created":…,"node":…,"size":N,"sha256":…}\n
//	N bytes: the FSM snapshot (what raft's snapshots hold)
//
// The header is checked (format, size, checksum) and the body restored
// into a scratch store before anything is replaced, so a damaged or
// truncated file is refused with nothing lost.

const (
	snapshotMagic = "gantry-snapshot\n"
	// SnapshotFormat is the version of the operator snapshot file.
	SnapshotFormat = 1
	// maxSnapshotBody refuses a header that claims an absurd size before
	// allocating for it.
	maxSnapshotBody = 4 << 30
	maxHeaderLine   = 4 << 10
	// maxSnapshotIndex bounds the Raft index and term a header may give
	// (2^53: what JSON clients read exactly; a cluster doing a million
	// writes a second takes centuries to get there).
	maxSnapshotIndex = 1 << 53
)

// SnapshotHeader describes an operator snapshot file.
type SnapshotHeader struct {
	Format  int       `json:"format"`
	Index   uint64    `json:"index"` // raft index the state is at
	Term    uint64    `json:"term"`
	Created time.Time `json:"created"`
	Node    string    `json:"node"` // the server that saved it
	Size    int64     `json:"size"` // bytes of the body
	SHA256  string    `json:"sha256"`
}

// SaveSnapshot writes a consistent snapshot of the whole state to w (see
// SnapshotHeader for what the file says about itself). On the leader it first commits a barrier, so every
// write acknowledged before the call is in it; on a follower it holds what
// that server has applied (a prefix of the log). It makes raft take a
// snapshot (so the log is compacted as after any snapshot) and reads it
// back; the body is held in memory to checksum it before the header.
func (s *Store) SaveSnapshot(ctx context.Context, w io.Writer) error {
	if s.IsLeader() {
		if err := s.Barrier(ctx); err != nil {
			return fmt.Errorf("save snapshot: %w", err)
		}
	}
	meta, body, err := s.takeSnapshot(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	h := SnapshotHeader{
		Format: SnapshotFormat, Index: meta.Index, Term: meta.Term,
		Created: time.Now().UTC().Round(0), Node: s.cfg.NodeID,
		Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
	}
	line, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(snapshotMagic)
	bw.Write(line)
	bw.WriteByte('\n')
	bw.Write(body)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save snapshot: write: %w", err)
	}
	s.log.Info("saved state snapshot", "index", h.Index, "term", h.Term, "bytes", h.Size)
	return nil
}

// takeSnapshot makes raft snapshot the FSM and reads the snapshot back; when
// nothing was applied since the last one, it reads that one.
func (s *Store) takeSnapshot(ctx context.Context) (*raft.SnapshotMeta, []byte, error) {
	if err := s.begin(); err != nil {
		return nil, nil, err
	}
	defer s.inflight.Done()
	f := s.raft.Snapshot()
	var (
		meta *raft.SnapshotMeta
		rc   io.ReadCloser
	)
	err := s.await(ctx, f)
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		metas, lerr := s.snaps.List()
		if lerr != nil || len(metas) == 0 {
			return nil, nil, fmt.Errorf("save snapshot: list raft snapshots: %v: %w", lerr, err)
		}
		meta, rc, err = s.snaps.Open(metas[0].ID)
	case err != nil:
		return nil, nil, raftError("save snapshot", err)
	default:
		meta, rc, err = f.Open()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("save snapshot: open raft snapshot: %w", err)
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("save snapshot: read raft snapshot %s: %w", meta.ID, err)
	}
	return meta, body, nil
}

// ReadSnapshotFile reads and checks an operator snapshot: header, size and
// checksum, and that the body is a state this binary can load. It returns
// the header and the body.
func ReadSnapshotFile(r io.Reader) (SnapshotHeader, []byte, error) {
	var h SnapshotHeader
	refuse := func(format string, args ...any) error {
		return errdefs.WithHint(fmt.Errorf("snapshot file "+format+": %w", append(args, errdefs.ErrInvalid)...),
			"use a file written by `gantry snapshot save`, copied whole")
	}
	br := bufio.NewReaderSize(r, maxHeaderLine)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return h, nil, refuse("is not a gantry snapshot (it does not start with %q)", snapshotMagic[:len(snapshotMagic)-1])
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, nil, refuse("has a damaged header: %v", err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, nil, refuse("has a damaged header: %v", err)
	}
	switch {
	case h.Format != SnapshotFormat:
		return h, nil, errdefs.WithHint(fmt.Errorf("snapshot file format %d is unknown: %w", h.Format, errdefs.ErrInvalid),
			"restore it with the gantry version that saved it, or a newer one")
	case h.Index > maxSnapshotIndex || h.Term > maxSnapshotIndex:
		// Raft restores at max(its last index, this)+1: an index near
		// 2^64 would wrap the log and wreck the cluster for good.
		return h, nil, refuse("header gives an impossible index %d or term %d", h.Index, h.Term)
	case h.Size <= 0 || h.Size > maxSnapshotBody:
		return h, nil, refuse("header gives an impossible size %d", h.Size)
	case len(h.SHA256) != 2*sha256.Size:
		return h, nil, refuse("header has no sha256 checksum")
	}
	// Read what is there rather than allocate what the header claims.
	body, err := io.ReadAll(io.LimitReader(br, h.Size+1))
	switch {
	case err != nil:
		return h, nil, fmt.Errorf("read snapshot file: %w", err)
	case int64(len(body)) < h.Size:
		return h, nil, refuse("is truncated: %d of %d bytes of state", len(body), h.Size)
	case int64(len(body)) > h.Size:
		return h, nil, refuse("has data after its %d bytes of state", h.Size)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != h.SHA256 {
		return h, nil, refuse("is corrupt: its checksum is %s, the header says %s", got[:16], h.SHA256[:16])
	}
	// A newer gantry may write fields this one does not know while keeping
	// the format: loading would drop them without a word, so refuse.
	// (Raft's own snapshots between servers are not checked this way: a
	// follower whose restore fails panics.)
	if len(body) > 1 && body[0] == snapshotJSON {
		dec := json.NewDecoder(bytes.NewReader(body[1:]))
		dec.DisallowUnknownFields()
		var probe snapshotData
		if err := dec.Decode(&probe); err != nil && strings.Contains(err.Error(), "unknown field") {
			return h, nil, errdefs.WithHint(fmt.Errorf("snapshot file holds data this gantry does not know (%v), which restoring would lose: %w", err, errdefs.ErrInvalid),
				"restore it with the gantry version that saved it, or a newer one")
		}
	}
	// Load it into a scratch FSM: what raft would do, where failing is
	// harmless (raft panics when a restore it started fails).
	scratch, err := newFSM(slog.New(slog.DiscardHandler), DefaultMaxEvents)
	if err != nil {
		return h, nil, err
	}
	if err := scratch.Restore(io.NopCloser(bytes.NewReader(body))); err != nil {
		return h, nil, refuse("holds a state this gantry cannot load: %v", err)
	}
	return h, body, nil
}

// RestoreSnapshot replaces the whole state with an operator snapshot's,
// typically in a new cluster (a fresh `gantry dev`, or the leader of a
// newly bootstrapped group); the other servers receive it as a raft
// snapshot. Leader only. The file is checked first (ReadSnapshotFile):
// one that is damaged, truncated or of an unknown format is refused and
// nothing stored changes. Writes in flight when the restore starts fail
// with raft.ErrAbortedByRestore.
//
// Raft indexes only grow: the restored state is given an index above both
// the snapshot's and this cluster's, so Index, ModifyIndex and event
// sequence numbers stay increasing for watchers.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	h, body, err := ReadSnapshotFile(r)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	var data snapshotData
	if err := json.Unmarshal(body[1:], &data); err != nil { // checked above
		return fmt.Errorf("restore snapshot: %v: %w", err, errdefs.ErrInvalid)
	}
	if !s.IsLeader() {
		return s.notLeader("restore snapshot")
	}
	// Raft gives the restored snapshot the index max(last, meta.Index)+1;
	// the FSM records the same one (writes racing the restore can only push
	// raft's higher, never the FSM's below what it had).
	base := max(h.Index, s.raft.LastIndex())
	data.Index = base + 1
	var buf bytes.Buffer
	buf.WriteByte(snapshotJSON)
	if err := json.NewEncoder(&buf).Encode(&data); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: base, Term: h.Term, Size: int64(buf.Len())}

	if err := s.begin(); err != nil {
		return err
	}
	defer s.inflight.Done()
	done := make(chan error, 1)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		done <- s.raft.Restore(meta, &buf, enqueueTimeout(ctx))
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("restore snapshot: %w (the restore may still complete)", ctx.Err())
	}
	if err != nil {
		return s.leaderError("restore snapshot", err)
	}
	s.log.Info("restored state snapshot", "from_index", h.Index, "from_node", h.Node, "saved", h.Created,
		"index", s.Index(), "services", len(data.Services), "instances", len(data.Instances))
	return nil
}
