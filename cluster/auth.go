package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// API tokens look like gty_<id>_<secret>: the ID (12 hex digits) finds the
// stored row, the secret (32 random bytes, hex) is checked against its
// SHA-256 in constant time. With 256 bits of entropy the secret cannot be
// guessed or brute-forced from its hash, so a slow password hash (bcrypt,
// argon2) would only add latency to every call without adding safety.
const (
	tokenPrefix   = "gty_"
	tokenIDBytes  = 6
	tokenSecBytes = 32
)

// Auth authenticates bearer tokens against the state store and serves the
// token and audit tools. The bootstrap token (gantry dev's admin.token) is
// the principal "admin" and is not stored in state.
type Auth struct {
	store     *state.Store
	audit     *AuditWriter
	bootstrap [sha256.Size]byte
}

var (
	_ mcp.Authenticator = (*Auth)(nil)
	_ mcp.Access        = (*Auth)(nil)
)

// NewAuth returns an Auth over st; bootstrapToken is the admin token, and
// audit (may be nil) is flushed before the audit log is read.
func NewAuth(st *state.Store, bootstrapToken string, audit *AuditWriter) *Auth {
	return &Auth{store: st, audit: audit, bootstrap: sha256.Sum256([]byte(bootstrapToken))}
}

// errBadToken is what an unknown or malformed token gets: no detail about
// which part did not match.
var errBadToken = errors.New("the token is not valid: it is not the admin token and no API token matches it")

// Authenticate implements mcp.Authenticator.
func (a *Auth) Authenticate(_ context.Context, token string) (mcp.Principal, error) {
	if rest, ok := strings.CutPrefix(token, tokenPrefix); ok {
		id, secret, ok := strings.Cut(rest, "_")
		if !ok || id == "" || secret == "" {
			return mcp.Principal{}, errBadToken
		}
		t, err := a.store.Token(id)
		if err != nil {
			return mcp.Principal{}, errBadToken
		}
		sum := sha256.Sum256([]byte(secret))
		want, err := hex.DecodeString(t.Hash)
		if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return mcp.Principal{}, errBadToken
		}
		if t.Revoked {
			return mcp.Principal{}, fmt.Errorf("token %s (%s) was revoked at %s by %s: ask an admin for a new token",
				t.ID, t.Name, t.RevokedAt.UTC().Format(time.RFC3339), orUnknown(t.RevokedBy))
		}
		return mcp.Principal{Name: t.Name + "/" + t.ID, Scopes: []mcp.Scope{mcp.Scope(t.Scope)}}, nil
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.bootstrap[:]) == 1 {
		return mcp.Principal{Name: "admin", Scopes: []mcp.Scope{mcp.ScopeAdmin}}, nil
	}
	return mcp.Principal{}, errBadToken
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func caller(ctx context.Context) string {
	if p, ok := mcp.PrincipalFromContext(ctx); ok {
		return p.Name
	}
	return ""
}

// CreateToken implements mcp.Access: it stores the hash of a new random
// secret and returns the token, which exists nowhere else.
func (a *Auth) CreateToken(ctx context.Context, name string, scope mcp.Scope) (*api.CreatedToken, error) {
	var idb [tokenIDBytes]byte
	var sec [tokenSecBytes]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}
	id, secret := hex.EncodeToString(idb[:]), hex.EncodeToString(sec[:])
	sum := sha256.Sum256([]byte(secret))
	if _, err := a.store.Apply(ctx, state.PutToken{Token: state.Token{
		ID: id, Name: name, Scope: string(scope), Hash: hex.EncodeToString(sum[:]), CreatedBy: caller(ctx),
	}}); err != nil {
		return nil, fmt.Errorf("create token %q: %w", name, err)
	}
	t, err := a.store.Token(id)
	if err != nil {
		return nil, err
	}
	return &api.CreatedToken{ID: id, Name: name, Scope: string(scope), Token: tokenPrefix + id + "_" + secret, CreatedAt: t.CreatedAt}, nil
}

// ListTokens implements mcp.Access.
func (a *Auth) ListTokens(context.Context) ([]api.TokenInfo, error) {
	toks := a.store.Tokens()
	out := make([]api.TokenInfo, len(toks))
	for i, t := range toks {
		out[i] = api.TokenInfo{ID: t.ID, Name: t.Name, Scope: t.Scope, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
			Revoked: t.Revoked, RevokedBy: t.RevokedBy}
		if t.Revoked {
			at := t.RevokedAt
			out[i].RevokedAt = &at
		}
	}
	return out, nil
}

// RevokeToken implements mcp.Access.
func (a *Auth) RevokeToken(ctx context.Context, id string) (*api.RevokeTokenResult, error) {
	t, err := a.store.Token(id)
	if err != nil {
		return nil, err
	}
	if t.Revoked {
		return &api.RevokeTokenResult{ID: t.ID, Name: t.Name, AlreadyRevoked: true}, nil
	}
	if _, err := a.store.Apply(ctx, state.RevokeToken{ID: id, By: caller(ctx)}); err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return &api.RevokeTokenResult{ID: t.ID, Name: t.Name}, nil
}

// AuditLog implements mcp.Access. Calls recorded before this one are
// written first, so the log is complete up to the call that reads it.
func (a *Auth) AuditLog(ctx context.Context, in api.AuditLogInput) ([]api.AuditEntry, error) {
	if err := a.flush(ctx); err != nil {
		return nil, err
	}
	entries := a.store.Audit(state.AuditFilter{Tool: in.Tool, Principal: in.Principal, Limit: in.Limit})
	out := make([]api.AuditEntry, len(entries))
	for i, e := range entries {
		out[i] = api.AuditEntry{Seq: e.Seq, Time: e.Time, Principal: e.Principal, Tool: e.Tool, Decision: e.Decision,
			Reason: e.Reason, Result: e.Result, LatencyMS: float64(e.LatencyUS) / 1000, PrevHash: e.PrevHash, Hash: e.Hash, Rule: e.Rule}
		if len(e.Arguments) > 0 {
			_ = json.Unmarshal(e.Arguments, &out[i].Arguments) // arguments are always an object; anything else is left out
		}
	}
	return out, nil
}

// VerifyAudit implements mcp.Access.
func (a *Auth) VerifyAudit(ctx context.Context) (*api.AuditVerification, error) {
	if err := a.flush(ctx); err != nil {
		return nil, err
	}
	v := a.store.VerifyAudit()
	return &api.AuditVerification{OK: v.OK, Checked: v.Checked, FirstSeq: v.FirstSeq, LastSeq: v.LastSeq,
		BrokenAt: v.BrokenAt, Problem: v.Problem, Anchor: v.Anchor}, nil
}

func (a *Auth) flush(ctx context.Context) error {
	if a.audit == nil {
		return nil
	}
	if err := a.audit.Flush(ctx); err != nil {
		return fmt.Errorf("write pending audit entries: %w: %w", err, errdefs.ErrUnavailable)
	}
	return nil
}
