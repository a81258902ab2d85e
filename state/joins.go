package state

import (
	"cmp"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	memdb "github.com/hashicorp/go-memdb"
)

const tableJoins = "joins"

// Roles a join token can give (the same strings as pki.Role).
const (
	JoinRoleServer = "server"
	JoinRoleWorker = "worker"
)

// joinKeep is how long an expired or revoked join token stays listed
// before a later PutJoinToken removes it.
const joinKeep = 24 * time.Hour

// JoinToken is a join token as the cluster records it: which role it
// gives, until when, how often, and the SHA-256 of its secret (hex), never
// the secret itself. The token string a node presents is made by
// pki.NewJoinToken; its ID and secret hash are what is stored here.
type JoinToken struct {
	ID         string    `json:"id"`
	Role       string    `json:"role"`
	SecretHash string    `json:"secret_hash"`
	ExpiresAt  time.Time `json:"expires_at"`
	// MaxUses is how many nodes may join with the token; 0 is no limit
	// (until it expires or is revoked).
	MaxUses   int       `json:"max_uses,omitempty"`
	Uses      int       `json:"uses"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`

	LastUsedBy string    `json:"last_used_by,omitempty"` // node name
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	Revoked    bool      `json:"revoked,omitempty"`
	RevokedBy  string    `json:"revoked_by,omitempty"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// Usable reports whether the token can still be used at now: not revoked,
// not expired, not used up.
func (t *JoinToken) Usable(now time.Time) bool {
	return !t.Revoked && now.Before(t.ExpiresAt) && (t.MaxUses == 0 || t.Uses < t.MaxUses)
}

// PutJoinToken records a new join token. An ID that exists fails with
// errdefs.ErrConflict, an ExpiresAt not after the time of the write with
// errdefs.ErrInvalid. It also forgets tokens that expired or were revoked
// more than a day ago.
type PutJoinToken struct {
	ID         string    `json:"id"`
	Role       string    `json:"role"`
	SecretHash string    `json:"secret_hash"`
	ExpiresAt  time.Time `json:"expires_at"`
	MaxUses    int       `json:"max_uses,omitempty"`
	CreatedBy  string    `json:"created_by,omitempty"`
}

// RevokeJoinToken makes a token unusable; the row stays so listings can
// still show it. Revoking a revoked token does nothing; a missing one fails
// with errdefs.ErrNotFound.
type RevokeJoinToken struct {
	ID string `json:"id"`
	By string `json:"by,omitempty"`
}

// UseJoinToken spends one use of a token for node Node. It fails with
// errdefs.ErrPermission, saying why, when the token does not exist, the
// secret hash is wrong, Role (when set) is not the token's role, or the
// token is revoked, expired or used up. The checks and the count happen in
// one FSM step, so concurrent joins cannot exceed MaxUses.
type UseJoinToken struct {
	ID         string `json:"id"`
	SecretHash string `json:"secret_hash"`
	Role       string `json:"role,omitempty"`
	Node       string `json:"node"`
}

func (o PutJoinToken) wrap() wireOp    { return wireOp{PutJoinToken: &o} }
func (o RevokeJoinToken) wrap() wireOp { return wireOp{RevokeJoinToken: &o} }
func (o UseJoinToken) wrap() wireOp    { return wireOp{UseJoinToken: &o} }

func validJoinRole(r string) bool { return r == JoinRoleServer || r == JoinRoleWorker }

func validSecretHash(h string) bool {
	b, err := hex.DecodeString(h)
	return err == nil && len(b) == 32
}

func (o PutJoinToken) validate() error {
	switch {
	case o.ID == "":
		return invalid("put join token: id is empty")
	case !validJoinRole(o.Role):
		return invalid("put join token %q: role %q is unknown (use %s or %s)", o.ID, o.Role, JoinRoleServer, JoinRoleWorker)
	case !validSecretHash(o.SecretHash):
		return invalid("put join token %q: secret hash must be a hex SHA-256 digest", o.ID)
	case o.ExpiresAt.IsZero():
		return invalid("put join token %q: expiry is not set (join tokens must expire)", o.ID)
	case o.MaxUses < 0:
		return invalid("put join token %q: max uses %d is negative (0 means no limit)", o.ID, o.MaxUses)
	}
	return nil
}

func (o RevokeJoinToken) validate() error {
	if o.ID == "" {
		return invalid("revoke join token: id is empty")
	}
	return nil
}

func (o UseJoinToken) validate() error {
	switch {
	case o.ID == "" || o.Node == "":
		return invalid("use join token: id and node are required")
	case !validSecretHash(o.SecretHash):
		return invalid("use join token %q: secret hash must be a hex SHA-256 digest", o.ID)
	case o.Role != "" && !validJoinRole(o.Role):
		return invalid("use join token %q: role %q is unknown", o.ID, o.Role)
	}
	return nil
}

func joinsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableJoins,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

func (a *applier) putJoinToken(op PutJoinToken) error {
	if old := must(a.txn.First(tableJoins, indexID, op.ID)); old != nil {
		return fmt.Errorf("join token %q already exists: %w", op.ID, errdefs.ErrConflict)
	}
	if !op.ExpiresAt.After(a.now) {
		return invalid("put join token %q: it would expire at %s, before it is created (give a positive time to live)",
			op.ID, op.ExpiresAt.UTC().Format(time.RFC3339))
	}
	var stale []any
	it := must(a.txn.Get(tableJoins, indexID))
	for obj := it.Next(); obj != nil; obj = it.Next() {
		old := obj.(*JoinToken)
		end := old.ExpiresAt
		if old.Revoked && old.RevokedAt.Before(end) {
			end = old.RevokedAt
		}
		if a.now.Sub(end) > joinKeep {
			stale = append(stale, obj)
		}
	}
	for _, obj := range stale {
		check(a.txn.Delete(tableJoins, obj))
	}
	a.insert(tableJoins, &JoinToken{
		ID: op.ID, Role: op.Role, SecretHash: op.SecretHash, ExpiresAt: op.ExpiresAt.UTC(),
		MaxUses: op.MaxUses, CreatedBy: op.CreatedBy, CreatedAt: a.now,
		CreateIndex: a.index, ModifyIndex: a.index,
	})
	return nil
}

func (a *applier) revokeJoinToken(op RevokeJoinToken) error {
	old, _ := must(a.txn.First(tableJoins, indexID, op.ID)).(*JoinToken)
	if old == nil {
		return errdefs.WithHint(fmt.Errorf("join token %q: %w", op.ID, errdefs.ErrNotFound), "list join tokens and their IDs (the part after the role)")
	}
	if old.Revoked {
		return nil
	}
	t := *old
	t.Revoked, t.RevokedBy, t.RevokedAt = true, op.By, a.now
	t.ModifyIndex = a.index
	a.insert(tableJoins, &t)
	return nil
}

func (a *applier) useJoinToken(op UseJoinToken) error {
	old, _ := must(a.txn.First(tableJoins, indexID, op.ID)).(*JoinToken)
	newToken := "ask an operator of the cluster for a new join token"
	if old == nil {
		return errdefs.WithHint(fmt.Errorf("join token %s is unknown to this cluster (it was never created here, or was forgotten a day after it ended): %w",
			op.ID, errdefs.ErrPermission), newToken)
	}
	// The hash is compared in constant time even though only a hash
	// travels here: it keeps the FSM from leaking how much of a guess matched.
	if subtle.ConstantTimeCompare([]byte(op.SecretHash), []byte(old.SecretHash)) != 1 {
		return errdefs.WithHint(fmt.Errorf("join token %s: the secret is wrong: %w", op.ID, errdefs.ErrPermission),
			"copy the whole token exactly as it was printed")
	}
	switch {
	case op.Role != "" && op.Role != old.Role:
		return fmt.Errorf("join token %s is for a %s, not a %s: use a %s join token: %w", op.ID, old.Role, op.Role, op.Role, errdefs.ErrPermission)
	case old.Revoked:
		return errdefs.WithHint(fmt.Errorf("join token %s was revoked at %s by %s: %w", op.ID,
			old.RevokedAt.UTC().Format(time.RFC3339), cmp.Or(old.RevokedBy, "an operator"), errdefs.ErrPermission), newToken)
	case !a.now.Before(old.ExpiresAt):
		return errdefs.WithHint(fmt.Errorf("join token %s expired at %s: %w", op.ID,
			old.ExpiresAt.UTC().Format(time.RFC3339), errdefs.ErrPermission), newToken)
	case old.MaxUses > 0 && old.Uses >= old.MaxUses:
		return errdefs.WithHint(fmt.Errorf("join token %s is used up (%d of %d uses, the last by %s): %w", op.ID,
			old.Uses, old.MaxUses, old.LastUsedBy, errdefs.ErrPermission), newToken)
	}
	t := *old
	t.Uses++
	t.LastUsedBy, t.LastUsedAt = op.Node, a.now
	t.ModifyIndex = a.index
	a.insert(tableJoins, &t)
	return nil
}

// JoinToken returns the join token with the given ID, or an
// errdefs.ErrNotFound error.
func (s *Store) JoinToken(id string) (*JoinToken, error) {
	t, _ := must(s.txn().First(tableJoins, indexID, id)).(*JoinToken)
	if t == nil {
		return nil, fmt.Errorf("join token %q: %w", id, errdefs.ErrNotFound)
	}
	return clone(t), nil
}

// JoinTokens returns every recorded join token (revoked and expired ones
// too, until they are forgotten), oldest first.
func (s *Store) JoinTokens() []*JoinToken {
	out := collect[JoinToken](must(s.txn().Get(tableJoins, indexID)), nil)
	slices.SortStableFunc(out, func(a, b *JoinToken) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return cloneAll(out)
}
