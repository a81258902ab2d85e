package state

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	memdb "github.com/hashicorp/go-memdb"
)

// API token scopes, each including the ones before it: admin ⊇ operate ⊇ read.
const (
	ScopeRead    = "read"
	ScopeOperate = "operate"
	ScopeAdmin   = "admin"
)

// ValidScope reports whether s is one of the token scopes.
func ValidScope(s string) bool { return s == ScopeRead || s == ScopeOperate || s == ScopeAdmin }

const tableTokens = "tokens"

// Token is an API bearer token. Only the SHA-256 of its secret is stored: the
// secret is 32 random bytes, so the hash cannot be reversed or brute-forced,
// and a slow password hash would add nothing but per-call latency.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Hash      string    `json:"hash"` // hex SHA-256 of the secret
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// PutToken creates a token. Creating an ID that exists fails with
// errdefs.ErrConflict: tokens are never replaced, only revoked. The FSM
// stamps CreatedAt and the indexes.
type PutToken struct {
	Token Token `json:"token"`
}

// RevokeToken marks a token revoked; the row stays so that listings and the
// audit log can still name it. Revoking a revoked token does nothing; a
// missing one fails with errdefs.ErrNotFound.
type RevokeToken struct {
	ID string `json:"id"`
	By string `json:"by,omitempty"`
}

func (o PutToken) wrap() wireOp    { return wireOp{PutToken: &o} }
func (o RevokeToken) wrap() wireOp { return wireOp{RevokeToken: &o} }

func (o PutToken) validate() error {
	t := &o.Token
	switch {
	case t.ID == "":
		return invalid("put token: id is empty")
	case t.Name == "":
		return invalid("put token %q: name is empty", t.ID)
	case !ValidScope(t.Scope):
		return invalid("put token %q: scope %q is unknown (use read, operate or admin)", t.ID, t.Scope)
	}
	if b, err := hex.DecodeString(t.Hash); err != nil || len(b) != 32 {
		return invalid("put token %q: hash must be a hex SHA-256 digest", t.ID)
	}
	return nil
}

func (o RevokeToken) validate() error {
	if o.ID == "" {
		return invalid("revoke token: id is empty")
	}
	return nil
}

func tokensTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableTokens,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		},
	}
}

func (a *applier) putToken(op PutToken) error {
	t := op.Token
	if old := must(a.txn.First(tableTokens, indexID, t.ID)); old != nil {
		return fmt.Errorf("token %q already exists: %w", t.ID, errdefs.ErrConflict)
	}
	t.Revoked, t.RevokedBy, t.RevokedAt = false, "", time.Time{}
	t.CreatedAt = a.now
	t.CreateIndex, t.ModifyIndex = a.index, a.index
	a.insert(tableTokens, &t)
	return nil
}

func (a *applier) revokeToken(op RevokeToken) error {
	old, _ := must(a.txn.First(tableTokens, indexID, op.ID)).(*Token)
	if old == nil {
		return errdefs.WithHint(fmt.Errorf("token %q: %w", op.ID, errdefs.ErrNotFound), "list token IDs with gantry token ls")
	}
	if old.Revoked {
		return nil
	}
	t := *old
	t.Revoked, t.RevokedBy, t.RevokedAt = true, op.By, a.now
	t.ModifyIndex = a.index
	a.insert(tableTokens, &t)
	return nil
}

// Token returns the token with the given ID, or an errdefs.ErrNotFound error.
func (s *Store) Token(id string) (*Token, error) {
	t, _ := must(s.txn().First(tableTokens, indexID, id)).(*Token)
	if t == nil {
		return nil, fmt.Errorf("token %q: %w", id, errdefs.ErrNotFound)
	}
	return clone(t), nil
}

// Tokens returns every token (revoked ones too), oldest first.
func (s *Store) Tokens() []*Token {
	out := collect[Token](must(s.txn().Get(tableTokens, indexID)), nil)
	slices.SortStableFunc(out, func(a, b *Token) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return cloneAll(out)
}
