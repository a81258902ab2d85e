package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

const tableAudit = "audit"

// DefaultMaxAudit is how many audit entries are kept when AppendAudit does
// not say; older ones are trimmed.
const DefaultMaxAudit = 100_000

// Audit decisions.
const (
	AuditAllowed = "allowed"
	AuditDenied  = "denied"
	// AuditPending: policy held the call for a human's approval.
	AuditPending = "pending-approval"
)

// AuditEntry is one tool call in the hash-chained audit log. The FSM assigns
// Seq (1, 2, 3, ... with no gaps), PrevHash (the Hash of the entry before,
// empty for the first ever) and Hash = SHA-256(prev hash bytes || canonical
// JSON of every other field), so any change to a kept entry, or removing or
// reordering one, breaks the chain at that point.
type AuditEntry struct {
	Seq       uint64          `json:"seq"`
	Time      time.Time       `json:"time"`
	Principal string          `json:"principal"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments,omitempty"` // redacted by the caller
	Decision  string          `json:"decision"`            // AuditAllowed or AuditDenied
	Reason    string          `json:"reason,omitempty"`
	Result    string          `json:"result,omitempty"` // "ok", or the error category
	LatencyUS int64           `json:"latency_us"`
	Rule      string          `json:"rule,omitempty"` // the policy rule that decided, if any
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

// AppendAudit appends entries to the audit log, in order, and trims the
// oldest beyond Keep (DefaultMaxAudit when 0). Keep is part of the op, not of
// the server's config, so that replaying the log trims exactly the same way.
type AppendAudit struct {
	Entries []AuditEntry `json:"entries"`
	Keep    int          `json:"keep,omitempty"`
}

func (o AppendAudit) wrap() wireOp { return wireOp{AppendAudit: &o} }

func (o AppendAudit) validate() error {
	if len(o.Entries) == 0 {
		return invalid("append audit: no entries")
	}
	if o.Keep < 0 {
		return invalid("append audit: keep %d is negative", o.Keep)
	}
	for i, e := range o.Entries {
		if e.Tool == "" || (e.Decision != AuditAllowed && e.Decision != AuditDenied && e.Decision != AuditPending) {
			return invalid("append audit: entry %d needs a tool and a decision (%q or %q)", i, AuditAllowed, AuditDenied)
		}
		if len(e.Arguments) > 0 && !json.Valid(e.Arguments) {
			return invalid("append audit: entry %d: arguments are not valid JSON", i)
		}
	}
	return nil
}

func auditTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableAudit,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.UintFieldIndex{Field: "Seq"}},
		},
	}
}

// hashedEntry is what an entry's hash covers: every field but the hashes, in
// a fixed order, with the time in UTC. Arguments are compacted, so the hash
// does not depend on how the JSON was spaced.
type hashedEntry struct {
	Seq       uint64          `json:"seq"`
	Time      string          `json:"time"`
	Principal string          `json:"principal"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	Decision  string          `json:"decision"`
	Reason    string          `json:"reason"`
	Result    string          `json:"result"`
	LatencyUS int64           `json:"latency_us"`
	Rule      string          `json:"rule,omitempty"` // omitted when empty: older entries keep their hashes
}

// AuditHash computes an entry's hash from prevHash (hex; empty for the first
// entry) and the entry's fields other than PrevHash and Hash.
func AuditHash(prevHash string, e *AuditEntry) (string, error) {
	prev, err := hex.DecodeString(prevHash)
	if err != nil || (len(prev) != 0 && len(prev) != sha256.Size) {
		return "", invalid("audit entry %d: previous hash %q is not a hex SHA-256 digest", e.Seq, prevHash)
	}
	args := json.RawMessage("null")
	if len(e.Arguments) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, e.Arguments); err != nil {
			return "", invalid("audit entry %d: arguments are not valid JSON", e.Seq)
		}
		args = b.Bytes()
	}
	body, err := json.Marshal(hashedEntry{
		Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano), Principal: e.Principal, Tool: e.Tool,
		Arguments: args, Decision: e.Decision, Reason: e.Reason, Result: e.Result, LatencyUS: e.LatencyUS, Rule: e.Rule,
	})
	if err != nil {
		return "", fmt.Errorf("audit entry %d: encode: %w", e.Seq, err)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (a *applier) appendAudit(op AppendAudit) error {
	last, _ := must(a.txn.Last(tableAudit, indexID)).(*AuditEntry)
	var seq uint64
	var prev string
	if last != nil {
		seq, prev = last.Seq, last.Hash
	}
	for _, e := range op.Entries {
		seq++
		e.Seq, e.PrevHash = seq, prev
		if e.Time.IsZero() {
			e.Time = a.now
		}
		e.Time = e.Time.UTC()
		h, err := AuditHash(prev, &e)
		if err != nil {
			return err
		}
		e.Hash, prev = h, h
		a.insert(tableAudit, &e)
	}
	keep := op.Keep
	if keep == 0 {
		keep = DefaultMaxAudit
	}
	// Seqs have no gaps, so the count is last - first + 1.
	first, _ := must(a.txn.First(tableAudit, indexID)).(*AuditEntry)
	if first == nil {
		return nil
	}
	for s := first.Seq; seq-s+1 > uint64(keep); s++ {
		if _, err := a.txn.DeleteAll(tableAudit, indexID, s); err != nil {
			check(err)
		}
	}
	return nil
}

// AuditFilter selects audit entries; empty fields match everything.
type AuditFilter struct {
	Tool string
	// Principal matches the principal exactly, or, for "ci", every
	// "ci/<token id>".
	Principal string
	// Limit, when positive, keeps only the newest Limit matching entries.
	Limit int
}

// Audit returns the audit entries f selects, oldest first.
func (s *Store) Audit(f AuditFilter) []*AuditEntry {
	var out []*AuditEntry
	it := must(s.txn().ReverseLowerBound(tableAudit, indexID, ^uint64(0)))
	for obj := it.Next(); obj != nil; obj = it.Next() {
		e := obj.(*AuditEntry)
		if (f.Tool == "" || e.Tool == f.Tool) && matchPrincipal(f.Principal, e.Principal) {
			out = append(out, e)
			if f.Limit > 0 && len(out) == f.Limit {
				break
			}
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if out == nil {
		out = []*AuditEntry{}
	}
	return cloneAll(out)
}

func matchPrincipal(want, got string) bool {
	return want == "" || got == want || strings.HasPrefix(got, want+"/")
}

// AuditVerification is the result of walking the audit chain.
type AuditVerification struct {
	OK       bool   `json:"ok"`
	Checked  int    `json:"checked"`
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	// BrokenAt is the Seq of the first entry whose link does not hold, and
	// Problem says what is wrong with it.
	BrokenAt uint64 `json:"broken_at,omitempty"`
	Problem  string `json:"problem,omitempty"`
	// Anchor is the PrevHash of the oldest kept entry, where the walk starts:
	// older entries have been trimmed.
	Anchor string `json:"anchor,omitempty"`
}

// VerifyAudit walks the whole kept audit chain from its oldest entry.
func (s *Store) VerifyAudit() AuditVerification {
	return VerifyAuditChain(collect[AuditEntry](must(s.txn().Get(tableAudit, indexID)), nil))
}

// VerifyAuditChain checks entries (oldest first): each entry's Seq follows
// the one before, its PrevHash is the Hash before it, and its Hash matches its
// contents. The oldest entry's PrevHash is taken as the anchor.
func VerifyAuditChain(entries []*AuditEntry) AuditVerification {
	v := AuditVerification{OK: true}
	if len(entries) == 0 {
		return v
	}
	v.FirstSeq, v.LastSeq, v.Anchor = entries[0].Seq, entries[len(entries)-1].Seq, entries[0].PrevHash
	broken := func(e *AuditEntry, format string, args ...any) AuditVerification {
		v.OK, v.BrokenAt, v.Problem = false, e.Seq, fmt.Sprintf(format, args...)
		return v
	}
	prev := entries[0].PrevHash
	for i, e := range entries {
		if i > 0 {
			if before := entries[i-1]; e.Seq != before.Seq+1 {
				return broken(e, "entry %d follows entry %d: entries are missing", e.Seq, before.Seq)
			}
			if e.PrevHash != prev {
				return broken(e, "entry %d's prev_hash %s does not match entry %d's hash %s", e.Seq, short(e.PrevHash), entries[i-1].Seq, short(prev))
			}
		}
		h, err := AuditHash(e.PrevHash, e)
		if err != nil {
			return broken(e, "%v", err)
		}
		if h != e.Hash {
			return broken(e, "entry %d's contents do not match its hash (stored %s, computed %s): it was changed after it was written", e.Seq, short(e.Hash), short(h))
		}
		prev = e.Hash
		v.Checked++
	}
	return v
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
