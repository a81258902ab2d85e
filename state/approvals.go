package state

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	memdb "github.com/hashicorp/go-memdb"
)

const tableApprovals = "approvals"

// Approval states. An approval is pending until a human approves or
// rejects it; an approved one is used by exactly one call. Expiry is not a
// stored state: a pending or approved approval past ExpiresAt is expired.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalUsed     = "used"
	ApprovalExpired  = "expired"
)

// approvalKeep is how long decided and expired approvals stay listed before
// a later PutApproval removes them.
const approvalKeep = 24 * time.Hour

// Approval is a tool call held by policy until a human decides. The call
// that uses it must be made by the same principal, of the same tool, with
// arguments of the same hash. Arguments are the redacted arguments, shown
// to the approver; the hash covers the real ones.
type Approval struct {
	ID        string          `json:"id"`
	Principal string          `json:"principal"`
	Tool      string          `json:"tool"`
	ArgsHash  string          `json:"args_hash"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Rule      string          `json:"rule,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`

	DecidedBy      string    `json:"decided_by,omitempty"`
	DecidedAt      time.Time `json:"decided_at,omitzero"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	UsedAt         time.Time `json:"used_at,omitzero"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// StateAt is the approval's state at time now, with expiry applied.
func (a *Approval) StateAt(now time.Time) string {
	if (a.State == ApprovalPending || a.State == ApprovalApproved) && !now.Before(a.ExpiresAt) {
		return ApprovalExpired
	}
	return a.State
}

// PutApproval queues a call for approval. TTL is how long it may wait and,
// once approved, be used. It also forgets approvals that ended more than a
// day ago.
type PutApproval struct {
	Approval Approval      `json:"approval"`
	TTL      time.Duration `json:"ttl"`
}

// DecideApproval approves or rejects a pending approval. The principal who
// asked cannot decide (errdefs.ErrPermission); a decided or expired one
// gets errdefs.ErrConflict.
type DecideApproval struct {
	ID      string `json:"id"`
	Approve bool   `json:"approve"`
	By      string `json:"by"`
	Reason  string `json:"reason,omitempty"`
}

// UseApproval consumes an approved approval for the call it was made for:
// it fails with errdefs.ErrPermission unless Principal, Tool and ArgsHash
// match, and with errdefs.ErrConflict unless it is approved and unexpired.
// Raft orders uses, so an approval is used at most once.
type UseApproval struct {
	ID        string `json:"id"`
	Principal string `json:"principal"`
	Tool      string `json:"tool"`
	ArgsHash  string `json:"args_hash"`
}

func (o PutApproval) wrap() wireOp    { return wireOp{PutApproval: &o} }
func (o DecideApproval) wrap() wireOp { return wireOp{DecideApproval: &o} }
func (o UseApproval) wrap() wireOp    { return wireOp{UseApproval: &o} }

func (o PutApproval) validate() error {
	a := &o.Approval
	switch {
	case a.ID == "" || a.Principal == "" || a.Tool == "" || a.ArgsHash == "":
		return invalid("put approval: id, principal, tool and args hash are required")
	case o.TTL <= 0:
		return invalid("put approval %q: ttl must be positive", a.ID)
	case len(a.Arguments) > 0 && !json.Valid(a.Arguments):
		return invalid("put approval %q: arguments are not valid JSON", a.ID)
	}
	return nil
}

func (o DecideApproval) validate() error {
	if o.ID == "" || o.By == "" {
		return invalid("decide approval: id and by are required")
	}
	return nil
}

func (o UseApproval) validate() error {
	if o.ID == "" || o.Principal == "" || o.Tool == "" || o.ArgsHash == "" {
		return invalid("use approval: id, principal, tool and args hash are required")
	}
	return nil
}

func approvalsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableApprovals,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

func (a *applier) putApproval(op PutApproval) error {
	ap := op.Approval
	if old := must(a.txn.First(tableApprovals, indexID, ap.ID)); old != nil {
		return fmt.Errorf("approval %q already exists: %w", ap.ID, errdefs.ErrConflict)
	}
	// Forget approvals that ended (decided, used or expired) a day ago.
	var stale []any
	it := must(a.txn.Get(tableApprovals, indexID))
	for obj := it.Next(); obj != nil; obj = it.Next() {
		old := obj.(*Approval)
		end := old.ExpiresAt
		if !old.DecidedAt.IsZero() && old.State == ApprovalRejected {
			end = old.DecidedAt
		}
		if !old.UsedAt.IsZero() {
			end = old.UsedAt
		}
		if a.now.Sub(end) > approvalKeep {
			stale = append(stale, obj)
		}
	}
	for _, obj := range stale {
		check(a.txn.Delete(tableApprovals, obj))
	}
	ap.State = ApprovalPending
	ap.CreatedAt, ap.ExpiresAt = a.now, a.now.Add(op.TTL)
	ap.DecidedBy, ap.DecidedAt, ap.DecisionReason, ap.UsedAt = "", time.Time{}, "", time.Time{}
	ap.CreateIndex, ap.ModifyIndex = a.index, a.index
	a.insert(tableApprovals, &ap)
	return nil
}

func (a *applier) approval(id string) (*Approval, error) {
	old, _ := must(a.txn.First(tableApprovals, indexID, id)).(*Approval)
	if old == nil {
		return nil, errdefs.WithHint(fmt.Errorf("approval %q: %w", id, errdefs.ErrNotFound), "list approvals with gantry approvals")
	}
	return old, nil
}

func (a *applier) decideApproval(op DecideApproval) error {
	old, err := a.approval(op.ID)
	if err != nil {
		return err
	}
	if op.By == old.Principal {
		return fmt.Errorf("approval %s: %s asked for it and cannot decide it; another principal with the admin scope must: %w", op.ID, op.By, errdefs.ErrPermission)
	}
	if st := old.StateAt(a.now); st != ApprovalPending {
		return fmt.Errorf("approval %s is %s, not pending: only a pending approval can be approved or rejected: %w", op.ID, st, errdefs.ErrConflict)
	}
	ap := *old
	ap.State = ApprovalRejected
	if op.Approve {
		ap.State = ApprovalApproved
	}
	ap.DecidedBy, ap.DecidedAt, ap.DecisionReason = op.By, a.now, op.Reason
	ap.ModifyIndex = a.index
	a.insert(tableApprovals, &ap)
	return nil
}

func (a *applier) useApproval(op UseApproval) error {
	old, err := a.approval(op.ID)
	if err != nil {
		return err
	}
	if old.Principal != op.Principal || old.Tool != op.Tool || old.ArgsHash != op.ArgsHash {
		return fmt.Errorf("approval %s was given for a different call (%s by %s): retry exactly the call that was queued, with the same arguments and token: %w",
			op.ID, old.Tool, old.Principal, errdefs.ErrPermission)
	}
	switch st := old.StateAt(a.now); st {
	case ApprovalApproved:
	case ApprovalPending:
		return errdefs.WithHint(fmt.Errorf("approval %s is still pending: %w", op.ID, errdefs.ErrConflict), "wait until a human approves it (gantry approve "+op.ID+")")
	default:
		return fmt.Errorf("approval %s is %s and cannot be used: make the call again without approval_id to ask for a new approval: %w", op.ID, st, errdefs.ErrConflict)
	}
	ap := *old
	ap.State, ap.UsedAt, ap.ModifyIndex = ApprovalUsed, a.now, a.index
	a.insert(tableApprovals, &ap)
	return nil
}

// Approval returns the approval with the given ID, or an
// errdefs.ErrNotFound error.
func (s *Store) Approval(id string) (*Approval, error) {
	ap, _ := must(s.txn().First(tableApprovals, indexID, id)).(*Approval)
	if ap == nil {
		return nil, errdefs.WithHint(fmt.Errorf("approval %q: %w", id, errdefs.ErrNotFound), "list approvals with gantry approvals")
	}
	return clone(ap), nil
}

// Approvals returns the approvals whose state at now is st (every one when
// st is empty), oldest first.
func (s *Store) Approvals(st string, now time.Time) []*Approval {
	out := collect[Approval](must(s.txn().Get(tableApprovals, indexID)), func(a *Approval) bool {
		return st == "" || a.StateAt(now) == st
	})
	slices.SortStableFunc(out, func(a, b *Approval) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return cloneAll(out)
}
