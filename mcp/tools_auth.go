package mcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// Access is what the token and audit tools need from the cluster. The
// principal making the call is in ctx (PrincipalFromContext).
type Access interface {
	CreateToken(ctx context.Context, name string, scope Scope) (*api.CreatedToken, error)
	ListTokens(ctx context.Context) ([]api.TokenInfo, error)
	RevokeToken(ctx context.Context, id string) (*api.RevokeTokenResult, error)
	AuditLog(ctx context.Context, in api.AuditLogInput) ([]api.AuditEntry, error)
	VerifyAudit(ctx context.Context) (*api.AuditVerification, error)
}

const (
	defaultAuditLimit = 50
	maxAuditLimit     = 1000
)

var (
	tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	tokenID   = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	toolName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	// OAuth principals are "oauth:<sub>@<issuer URL>" (oauth.go).
	principal = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+|-]{0,511}$`)
)

// registerAuthTools installs the middleware that authorizes and audits
// every tool call and, when the cluster provides Access, adds the admin
// tools.
func registerAuthTools(s *Server) {
	s.srv.AddReceivingMiddleware(s.guardCalls)
	if s.access == nil {
		return
	}
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolCreateToken,
		Description: "Create an API bearer token with a name and a scope: read (list and inspect), operate (also deploy, scale, remove, pull and import) or admin (also tokens and the audit log). " +
			"The result holds the token itself, shown only this once: the server keeps only a hash. " +
			"With dry_run true nothing is created and no secret is generated: name and scope are checked and the token that would be made is described. Needs scope admin.",
		Annotations: &sdk.ToolAnnotations{Title: "Create token", DestructiveHint: boolPtr(false), OpenWorldHint: boolPtr(false)},
	}), s.createToken)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name:        api.ToolListTokens,
		Description: "List API tokens with ID, name, scope, creator and whether they are revoked; never their secrets or hashes. Needs scope admin.",
		Annotations: readOnly("List tokens"),
	}), s.listTokens)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolRevokeToken,
		Description: "Revoke an API token by ID (from list_tokens): requests carrying it are refused from then on. Revoking a revoked token changes nothing. " +
			"With dry_run true nothing is revoked: the token that would be is shown (an unknown ID is refused). Needs scope admin.",
		Annotations: mutating("Revoke token", true, false),
	}), s.revokeToken)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolAuditLog,
		Description: "Show the newest entries of the audit log of tool calls (limit, default 50, at most 1000; filter by tool or principal): who called what, with redacted arguments, " +
			"whether it was allowed, the result and the latency, each entry hash-chained to the one before. Needs scope admin.",
		Annotations: readOnly("Audit log"),
	}), s.auditLog)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name:        api.ToolVerifyAudit,
		Description: "Verify the audit log's hash chain from its oldest kept entry: reports how many entries were checked and the first broken link, if any. Needs scope admin.",
		Annotations: readOnly("Verify audit log"),
	}), s.verifyAudit)
}

func (s *Server) createToken(ctx context.Context, _ *sdk.CallToolRequest, in api.CreateTokenInput) (api.CreatedToken, string, error) {
	if !tokenName.MatchString(in.Name) {
		return api.CreatedToken{}, "", invalidf("invalid token name %s: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. \"ci\"", quote(in.Name))
	}
	if Scope(in.Scope).rank() == 0 {
		return api.CreatedToken{}, "", invalidf("invalid scope %s: use read, operate or admin", quote(in.Scope))
	}
	if in.DryRun {
		return dryRunCreateToken(ctx, in)
	}
	tok, err := s.access.CreateToken(ctx, in.Name, Scope(in.Scope))
	if err != nil {
		return api.CreatedToken{}, "", describe(api.ToolCreateToken, err, errorHint{notFound: "retry"})
	}
	if tok == nil {
		return api.CreatedToken{}, "", errors.New("the cluster returned no token")
	}
	return *tok, fmt.Sprintf("created %s token %q (id %s). Store the token now: it is not shown again and the server keeps only its hash.", tok.Scope, tok.Name, tok.ID), nil
}

func (s *Server) listTokens(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.TokenList, string, error) {
	toks, err := s.access.ListTokens(ctx)
	if err != nil {
		return api.TokenList{}, "", describe(api.ToolListTokens, err, errorHint{notFound: "retry"})
	}
	if toks == nil {
		toks = []api.TokenInfo{}
	}
	parts := make([]string, len(toks))
	for i, t := range toks {
		parts[i] = fmt.Sprintf("%s %s (%s)", t.ID, t.Name, t.Scope)
		if t.Revoked {
			parts[i] += " revoked"
		}
	}
	return api.TokenList{Tokens: toks}, fmt.Sprintf("%d token%s: %s", len(toks), plural(len(toks)), strings.Join(parts, ", ")), nil
}

func (s *Server) revokeToken(ctx context.Context, _ *sdk.CallToolRequest, in api.RevokeTokenInput) (api.RevokeTokenResult, string, error) {
	id := strings.TrimPrefix(in.ID, "gty_")
	if !tokenID.MatchString(id) {
		return api.RevokeTokenResult{}, "", invalidf("invalid token ID %s: pass the ID column of list_tokens (gantry token ls), e.g. \"3f9a2c01ab12\"", quote(in.ID))
	}
	if in.DryRun {
		return s.dryRunRevokeToken(ctx, id)
	}
	res, err := s.access.RevokeToken(ctx, id)
	if err != nil {
		return api.RevokeTokenResult{}, "", describe(api.ToolRevokeToken, err, errorHint{subject: fmt.Sprintf("token %q", id), notFound: "list token IDs with list_tokens (gantry token ls)"})
	}
	if res == nil {
		return api.RevokeTokenResult{}, "", errors.New("the cluster returned no revoke result")
	}
	if res.AlreadyRevoked {
		return *res, fmt.Sprintf("token %s (%s) was already revoked; nothing changed", res.ID, res.Name), nil
	}
	return *res, fmt.Sprintf("token %s (%s) revoked: requests carrying it are refused from now on", res.ID, res.Name), nil
}

func (s *Server) auditLog(ctx context.Context, _ *sdk.CallToolRequest, in api.AuditLogInput) (api.AuditLog, string, error) {
	switch {
	case in.Limit < 0 || in.Limit > maxAuditLimit:
		return api.AuditLog{}, "", invalidf("invalid limit %d: must be between 1 and %d (0 means the default, %d)", in.Limit, maxAuditLimit, defaultAuditLimit)
	case in.Limit == 0:
		in.Limit = defaultAuditLimit
	}
	if in.Tool != "" && !toolName.MatchString(in.Tool) {
		return api.AuditLog{}, "", invalidf("invalid tool %s: pass a tool name such as \"deploy\"", quote(in.Tool))
	}
	if in.Principal != "" && !principal.MatchString(in.Principal) {
		return api.AuditLog{}, "", invalidf("invalid principal %s: pass \"admin\", a token name, name/id or oauth:sub@issuer as shown in the log", quote(in.Principal))
	}
	entries, err := s.access.AuditLog(ctx, in)
	if err != nil {
		return api.AuditLog{}, "", describe(api.ToolAuditLog, err, errorHint{notFound: "retry"})
	}
	if entries == nil {
		entries = []api.AuditEntry{}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d audit entr%s", len(entries), map[bool]string{true: "y", false: "ies"}[len(entries) == 1])
	for _, e := range entries {
		fmt.Fprintf(&b, "\n#%d %s %s %s %s", e.Seq, e.Time.Format("2006-01-02T15:04:05Z"), e.Principal, e.Tool, e.Decision)
		if e.Reason != "" {
			fmt.Fprintf(&b, " (%s)", e.Reason)
		}
		if e.Result != "" {
			fmt.Fprintf(&b, " -> %s", e.Result)
		}
	}
	return api.AuditLog{Entries: entries}, b.String(), nil
}

func (s *Server) verifyAudit(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.AuditVerification, string, error) {
	v, err := s.access.VerifyAudit(ctx)
	if err != nil {
		return api.AuditVerification{}, "", describe(api.ToolVerifyAudit, err, errorHint{notFound: "retry"})
	}
	if v == nil {
		return api.AuditVerification{}, "", errors.New("the cluster returned no verification")
	}
	switch {
	case !v.OK:
		return *v, fmt.Sprintf("audit chain BROKEN at entry %d: %s (%d entries before it verified)", v.BrokenAt, v.Problem, v.Checked), nil
	case v.Checked == 0:
		return *v, "audit log is empty: nothing to verify", nil
	}
	return *v, fmt.Sprintf("audit chain intact: %d entries verified, %d to %d", v.Checked, v.FirstSeq, v.LastSeq), nil
}
