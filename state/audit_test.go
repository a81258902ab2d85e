package state

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

func auditEntry(tool string, i int) AuditEntry {
	return AuditEntry{Principal: "admin", Tool: tool, Arguments: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i)),
		Decision: AuditAllowed, Result: "ok", LatencyUS: int64(i)}
}

func TestTokensHashedRevokedAndSnapshotted(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, func(c *Config) { c.TrailingLogs = 1 })
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		t.Fatal(err)
	}
	raw := "gty_abc123_" + hex.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(raw))
	apply(t, s, PutToken{Token: Token{ID: "abc123", Name: "ci", Scope: ScopeRead, Hash: hex.EncodeToString(sum[:]), CreatedBy: "admin"}})
	if _, err := s.Apply(t.Context(), PutToken{Token: Token{ID: "abc123", Name: "again", Scope: ScopeAdmin, Hash: hex.EncodeToString(sum[:])}}); !errdefs.IsConflict(err) {
		t.Errorf("second put of the same ID: err = %v, want conflict", err)
	}
	if _, err := s.Apply(t.Context(), PutToken{Token: Token{ID: "x", Name: "x", Scope: "root", Hash: hex.EncodeToString(sum[:])}}); !errdefs.IsInvalid(err) {
		t.Errorf("unknown scope: err = %v, want invalid", err)
	}
	if _, err := s.Apply(t.Context(), RevokeToken{ID: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("revoke missing: err = %v, want not found", err)
	}
	tok, err := s.Token("abc123")
	if err != nil || tok.Revoked || tok.Scope != ScopeRead || tok.CreatedAt.IsZero() || tok.CreateIndex == 0 {
		t.Fatalf("token = %+v, %v", tok, err)
	}
	apply(t, s, RevokeToken{ID: "abc123", By: "admin"})
	apply(t, s, RevokeToken{ID: "abc123", By: "other"}) // idempotent
	tok, _ = s.Token("abc123")
	if !tok.Revoked || tok.RevokedBy != "admin" || tok.RevokedAt.IsZero() {
		t.Errorf("revoked token = %+v", tok)
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	apply(t, s, AppendEvent{Event: Event{Type: "X"}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	if toks := s2.Tokens(); len(toks) != 1 || !toks[0].Revoked || toks[0].Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("tokens after restore = %+v", toks)
	}
	// Neither the log nor the snapshots hold the secret, in any encoding.
	needles := [][]byte{[]byte(raw), secret[:], []byte(hex.EncodeToString(secret[:]))}
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("%s contains the raw token secret", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(finishedSnapshots(t, dir)) == 0 {
		t.Error("no snapshot was written; the test did not look at one")
	}
}

func TestAuditChainTrimAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for b := range 4 {
		var es []AuditEntry
		for i := range 3 {
			es = append(es, auditEntry("list_services", b*3+i))
		}
		apply(t, s, AppendAudit{Entries: es, Keep: 10})
	}
	all := s.Audit(AuditFilter{})
	if len(all) != 10 || all[0].Seq != 3 || all[9].Seq != 12 {
		t.Fatalf("kept %d entries, seqs %d..%d; want 10, 3..12", len(all), all[0].Seq, all[len(all)-1].Seq)
	}
	for i := 1; i < len(all); i++ {
		if all[i].PrevHash != all[i-1].Hash || all[i].Hash == "" {
			t.Fatalf("entry %d does not link to %d", all[i].Seq, all[i-1].Seq)
		}
	}
	v := s.VerifyAudit()
	if !v.OK || v.Checked != 10 || v.FirstSeq != 3 || v.LastSeq != 12 || v.Anchor != all[0].PrevHash || v.Anchor == "" {
		t.Errorf("verify = %+v", v)
	}
	if got := s.Audit(AuditFilter{Limit: 2}); len(got) != 2 || got[1].Seq != 12 {
		t.Errorf("limit 2 = %+v", got)
	}
	apply(t, s, AppendAudit{Entries: []AuditEntry{{Principal: "ci", Tool: "deploy", Decision: AuditDenied, Reason: "needs operate"}}, Keep: 10})
	if got := s.Audit(AuditFilter{Principal: "ci"}); len(got) != 1 || got[0].Tool != "deploy" || got[0].Time.IsZero() {
		t.Errorf("principal filter = %+v", got)
	}
	if got := s.Audit(AuditFilter{Tool: "deploy", Principal: "admin"}); len(got) != 0 {
		t.Errorf("tool+principal filter = %+v", got)
	}

	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	before := s.Audit(AuditFilter{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	after := s2.Audit(AuditFilter{})
	if b, a := mustJSON(t, before), mustJSON(t, after); b != a {
		t.Fatalf("audit after restore differs:\n%s\n%s", b, a)
	}
	if v := s2.VerifyAudit(); !v.OK {
		t.Errorf("verify after restore = %+v", v)
	}
	// The chain continues across the restart.
	apply(t, s2, AppendAudit{Entries: []AuditEntry{auditEntry("get_service", 99)}})
	last := s2.Audit(AuditFilter{Limit: 1})[0]
	if last.Seq != after[len(after)-1].Seq+1 || last.PrevHash != after[len(after)-1].Hash {
		t.Errorf("entry after restart = %+v", last)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tamper rewrites a stored audit row behind the FSM's back, as someone with
// write access to the state would.
func tamper(s *Store, seq uint64, change func(e *AuditEntry)) {
	txn := s.fsm.db.Load().Txn(true)
	old := must(txn.First(tableAudit, indexID, seq)).(*AuditEntry)
	e := *old
	change(&e)
	check(txn.Insert(tableAudit, &e))
	txn.Commit()
}

func TestAuditVerifyFindsTampering(t *testing.T) {
	for name, tc := range map[string]struct {
		seq    uint64
		change func(e *AuditEntry)
		delete bool
		want   string
	}{
		"changed principal":   {seq: 3, change: func(e *AuditEntry) { e.Principal = "someone-else" }, want: "do not match its hash"},
		"changed arguments":   {seq: 2, change: func(e *AuditEntry) { e.Arguments = json.RawMessage(`{"n":1000}`) }, want: "do not match its hash"},
		"denied made allowed": {seq: 4, change: func(e *AuditEntry) { e.Decision = AuditAllowed; e.Reason = "" }, want: "do not match its hash"},
		"rehashed entry": {seq: 2, change: func(e *AuditEntry) {
			e.Tool = "remove_service"
			e.Hash, _ = AuditHash(e.PrevHash, e)
		}, want: "prev_hash"},
		"deleted entry": {seq: 3, delete: true, want: "missing"},
	} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			es := []AuditEntry{auditEntry("a", 1), auditEntry("b", 2), auditEntry("c", 3),
				{Principal: "ci", Tool: "deploy", Decision: AuditDenied, Reason: "needs operate"}, auditEntry("e", 5)}
			apply(t, s, AppendAudit{Entries: es})
			if v := s.VerifyAudit(); !v.OK || v.Checked != 5 {
				t.Fatalf("before tampering: %+v", v)
			}
			if tc.delete {
				txn := s.fsm.db.Load().Txn(true)
				if _, err := txn.DeleteAll(tableAudit, indexID, tc.seq); err != nil {
					t.Fatal(err)
				}
				txn.Commit()
			} else {
				tamper(s, tc.seq, tc.change)
			}
			v := s.VerifyAudit()
			wantAt := tc.seq
			if tc.delete || strings.Contains(tc.want, "prev_hash") {
				wantAt = tc.seq + 1 // the link after the change is what breaks
			}
			if v.OK || v.BrokenAt != wantAt || !strings.Contains(v.Problem, tc.want) {
				t.Errorf("verify = %+v; want broken at %d with %q", v, wantAt, tc.want)
			}
		})
	}
}

func TestAppendAuditValidation(t *testing.T) {
	s := openStore(t, t.TempDir())
	for name, op := range map[string]AppendAudit{
		"empty":         {},
		"no decision":   {Entries: []AuditEntry{{Tool: "x"}}},
		"bad arguments": {Entries: []AuditEntry{{Tool: "x", Decision: AuditAllowed, Arguments: json.RawMessage(`{`)}}},
		"negative keep": {Entries: []AuditEntry{auditEntry("x", 1)}, Keep: -1},
	} {
		if _, err := s.Apply(t.Context(), op); !errdefs.IsInvalid(err) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
	if n := len(s.Audit(AuditFilter{})); n != 0 {
		t.Errorf("%d entries after invalid appends", n)
	}
}
