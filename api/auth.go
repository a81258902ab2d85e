package api

import "time"

// Tool names of the token and audit tools (scope admin).
const (
	ToolCreateToken = "create_token"
	ToolListTokens  = "list_tokens"
	ToolRevokeToken = "revoke_token"
	ToolAuditLog    = "audit_log"
	ToolVerifyAudit = "verify_audit"
)

// Token scopes: each includes the ones before it (admin ⊇ operate ⊇ read).
const (
	ScopeRead    = "read"
	ScopeOperate = "operate"
	ScopeAdmin   = "admin"
)

// CreateTokenInput is the input of create_token.
type CreateTokenInput struct {
	Name   string `json:"name" jsonschema:"who or what the token is for, e.g. ci or alice-laptop: 1 to 63 letters, digits, '-', '_' or '.'"`
	Scope  string `json:"scope" jsonschema:"read (list and inspect), operate (also deploy, scale, remove, pull, import) or admin (also manage tokens and read the audit log)"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: create nothing and generate no secret; check name and scope and return the token that would be created (id and token empty)"`
}

// CreatedToken is the output of create_token. Token is the secret, shown
// only this once: the server keeps only its hash.
type CreatedToken struct {
	ID        string    `json:"id" jsonschema:"the token's ID, used to revoke it"`
	Name      string    `json:"name"`
	Scope     string    `json:"scope"`
	Token     string    `json:"token" jsonschema:"the bearer token (gty_<id>_<secret>); it is shown only once and cannot be recovered"`
	CreatedAt time.Time `json:"created_at"`
	DryRun    bool      `json:"dry_run,omitempty" jsonschema:"true: a dry run; nothing was created, id and token are empty"`
}

// TokenInfo describes a token without its secret or hash.
type TokenInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	Revoked   bool       `json:"revoked"`
	RevokedBy string     `json:"revoked_by,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// TokenList is the output of list_tokens.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// RevokeTokenInput is the input of revoke_token.
type RevokeTokenInput struct {
	ID     string `json:"id" jsonschema:"the token ID from list_tokens (the part after gty_ in the token)"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: revoke nothing; return the token that would be revoked (an unknown ID is refused as without dry_run)"`
}

// RevokeTokenResult is the output of revoke_token.
type RevokeTokenResult struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	AlreadyRevoked bool       `json:"already_revoked" jsonschema:"true when the token was revoked before this call"`
	DryRun         bool       `json:"dry_run,omitempty" jsonschema:"true: a dry run; nothing was revoked"`
	Token          *TokenInfo `json:"token,omitempty" jsonschema:"set on a dry run: the token that would be revoked"`
}

// AuditLogInput filters audit_log.
type AuditLogInput struct {
	Limit     int    `json:"limit,omitempty" jsonschema:"how many of the newest matching entries to return: 1 to 1000, default 50"`
	Tool      string `json:"tool,omitempty" jsonschema:"only calls of this tool, e.g. deploy"`
	Principal string `json:"principal,omitempty" jsonschema:"only calls by this principal: admin, a token name, or name/id"`
}

// AuditEntry is one recorded tool call.
type AuditEntry struct {
	Seq       uint64         `json:"seq"`
	Time      time.Time      `json:"time"`
	Principal string         `json:"principal" jsonschema:"who called: admin (the bootstrap token) or token-name/token-id"`
	Tool      string         `json:"tool"`
	Arguments map[string]any `json:"arguments,omitempty" jsonschema:"the call's arguments with secrets, env values and long strings redacted"`
	Decision  string         `json:"decision" jsonschema:"allowed, denied or pending-approval"`
	Reason    string         `json:"reason,omitempty" jsonschema:"why the call was denied"`
	Rule      string         `json:"rule,omitempty" jsonschema:"the policy rule that decided, if any"`
	Result    string         `json:"result,omitempty" jsonschema:"ok, or the error category (invalid, not found, conflict, unavailable, permission denied, error)"`
	LatencyMS float64        `json:"latency_ms"`
	PrevHash  string         `json:"prev_hash"`
	Hash      string         `json:"hash" jsonschema:"SHA-256 of prev_hash and the entry's canonical JSON"`
}

// AuditLog is the output of audit_log.
type AuditLog struct {
	Entries []AuditEntry `json:"entries" jsonschema:"oldest first"`
}

// AuditVerification is the output of verify_audit.
type AuditVerification struct {
	OK       bool   `json:"ok" jsonschema:"true when every kept entry links to the one before and matches its hash"`
	Checked  int    `json:"checked" jsonschema:"entries verified"`
	FirstSeq uint64 `json:"first_seq,omitempty" jsonschema:"the oldest kept entry; older ones were trimmed"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	BrokenAt uint64 `json:"broken_at,omitempty" jsonschema:"the first entry whose link does not hold"`
	Problem  string `json:"problem,omitempty"`
	Anchor   string `json:"anchor,omitempty" jsonschema:"prev_hash of the oldest kept entry, where verification starts"`
}
