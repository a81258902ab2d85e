package mcp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
)

// Scope is what a principal may do. Each scope includes the ones before it:
// admin ⊇ operate ⊇ read.
type Scope string

// The scopes.
const (
	ScopeRead    Scope = api.ScopeRead
	ScopeOperate Scope = api.ScopeOperate
	ScopeAdmin   Scope = api.ScopeAdmin
)

func (s Scope) rank() int {
	switch s {
	case ScopeRead:
		return 1
	case ScopeOperate:
		return 2
	case ScopeAdmin:
		return 3
	}
	return 0
}

// Principal is who a request is made by.
type Principal struct {
	// Name identifies the principal in the audit log: "admin" for the
	// bootstrap token, "name/id" for an API token.
	Name   string
	Scopes []Scope
}

// Has reports whether p holds need or a scope that includes it.
func (p Principal) Has(need Scope) bool {
	return slices.ContainsFunc(p.Scopes, func(s Scope) bool { return s.rank() >= need.rank() && need.rank() > 0 })
}

// top is p's widest scope, for messages.
func (p Principal) top() Scope {
	var best Scope
	for _, s := range p.Scopes {
		if s.rank() > best.rank() {
			best = s
		}
	}
	return best
}

// Authenticator turns a bearer token into a principal. An unknown, malformed
// or revoked token is an error (the request gets 401; an error in
// errdefs.ErrUnavailable gets 503); its message is shown to the caller, so
// it must say how to get a valid token and must not echo the token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// AuditRecord is one tool call, as the server reports it to an Auditor.
type AuditRecord struct {
	Time      time.Time
	Principal string
	Tool      string
	Arguments json.RawMessage // already redacted
	Allowed   bool
	Reason    string // why it was denied
	Decision  string // "pending-approval"; empty: allowed or denied per Allowed
	Rule      string // the policy rule that decided, if any
	Result    string // "ok" or an error category
	Latency   time.Duration
}

// Auditor records tool calls. Record is called after every call, refused
// ones included; it must not take long (queue, don't write through).
type Auditor interface {
	Record(ctx context.Context, r AuditRecord)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the principal a tool call is made by.
func PrincipalFromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// staticAuth accepts one token as the admin principal: Config.Token.
type staticAuth struct{ sum [sha256.Size]byte }

func (a staticAuth) Authenticate(_ context.Context, token string) (Principal, error) {
	// Compare fixed-size digests so that neither content nor length leaks.
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], a.sum[:]) != 1 {
		return Principal{}, errors.New("the token does not match the server's admin token")
	}
	return Principal{Name: "admin", Scopes: []Scope{ScopeAdmin}}, nil
}

// unauthorizedHelp tells a client without a valid token how to get one.
const unauthorizedHelp = "this endpoint needs the header 'Authorization: Bearer <token>'. The admin token is in the file admin.token in gantry's data directory (default /var/lib/gantry/admin.token, readable by root); the gantry CLI reads it from there or from the GANTRY_TOKEN environment variable. An admin creates scoped tokens with: gantry token create --name NAME --scope read|operate|admin"

// principalInfoKey is where the principal travels in the SDK's TokenInfo.
const principalInfoKey = "gantry.principal"

// authenticate rejects requests without a valid bearer token and hands the
// principal to the tools through the SDK's TokenInfo (the SDK copies it
// into every request's Extra).
func authenticate(a Authenticator, next http.Handler) http.Handler {
	verifier := func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		p, ok := PrincipalFromContext(ctx)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		scopes := make([]string, len(p.Scopes))
		for i, s := range p.Scopes {
			scopes[i] = string(s)
		}
		return &auth.TokenInfo{UserID: p.Name, Scopes: scopes, Extra: map[string]any{principalInfoKey: p}}, nil
	}
	withInfo := auth.RequireBearerToken(verifier, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		got = strings.TrimSpace(got)
		if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
			w.Header().Set("WWW-Authenticate", bearerChallenge(a, r, ""))
			writeJSONError(w, http.StatusUnauthorized, jsonError("unauthorized", unauthorizedHelp))
			return
		}
		p, err := a.Authenticate(r.Context(), got)
		if err != nil {
			if errdefs.IsUnavailable(err) {
				writeJSONError(w, http.StatusServiceUnavailable, jsonError("unavailable", err.Error()+"; retry in a few seconds"))
				return
			}
			w.Header().Set("WWW-Authenticate", bearerChallenge(a, r, fmt.Sprintf(`error="invalid_token", error_description=%q`, err.Error())))
			writeJSONError(w, http.StatusUnauthorized, jsonError("unauthorized", err.Error()+". "+unauthorizedHelp))
			return
		}
		// RequireBearerToken wants a single-space "Bearer <token>" header.
		r = r.WithContext(WithPrincipal(r.Context(), p))
		r.Header.Set("Authorization", "Bearer "+got)
		withInfo.ServeHTTP(w, r)
	})
}

func jsonError(code, msg string) string {
	b, _ := json.Marshal(map[string]string{"error": code, "message": msg})
	return string(b) + "\n"
}

// inProcess is the principal of calls that reach the MCP server without
// HTTP (MCPServer's in-process transports), which only trusted code gets.
var inProcess = Principal{Name: "in-process", Scopes: []Scope{ScopeAdmin}}

// callPrincipal returns who makes a tool call.
func callPrincipal(req *sdk.CallToolRequest) (Principal, bool) {
	if req == nil || req.Extra == nil {
		return inProcess, true
	}
	ti := req.Extra.TokenInfo
	if ti == nil {
		return Principal{}, false // over HTTP but not through authenticate: refuse
	}
	if p, ok := ti.Extra[principalInfoKey].(Principal); ok {
		return p, true
	}
	// A TokenInfo from another verifier (e.g. OAuth): its scopes by name.
	p := Principal{Name: ti.UserID}
	for _, s := range ti.Scopes {
		if Scope(s).rank() > 0 {
			p.Scopes = append(p.Scopes, Scope(s))
		}
	}
	return p, true
}

// scopeMetaKey is the _meta key under which each tool states the scope it
// needs, so clients can see it in tools/list.
const scopeMetaKey = "gantry.dev/scope"

// toolScope is the scope a tool needs: the one it declares in its _meta,
// else read for read-only tools and operate for the rest.
func toolScope(t *sdk.Tool) Scope {
	if s, ok := t.Meta[scopeMetaKey].(string); ok && Scope(s).rank() > 0 {
		return Scope(s)
	}
	if t.Annotations != nil && t.Annotations.ReadOnlyHint {
		return ScopeRead
	}
	return ScopeOperate
}

// needs marks t as needing scope s.
func needs(s Scope, t *sdk.Tool) *sdk.Tool {
	if t.Meta == nil {
		t.Meta = sdk.Meta{}
	}
	t.Meta[scopeMetaKey] = string(s)
	return t
}

// callGuard is one tool call's audit record in the making.
type callGuard struct {
	tool  string
	start time.Time
	p     Principal
	args  json.RawMessage
	deny  string // reason, when refused

	// Set by the policy middleware: the audit decision when not plain
	// allowed/denied, the rule that decided, a note for allowed calls and
	// a result for calls that did not run (held for approval).
	decision, rule, reason, result string

	mu    sync.Mutex
	noted bool  // the tool's handler ran and reported err
	err   error // what the handler returned
}

type guardKey struct{}

// noteResult tells the call's guard what the tool handler returned, so the
// audit log gets its error category.
func noteResult(ctx context.Context, err error) {
	if g, ok := ctx.Value(guardKey{}).(*callGuard); ok {
		g.mu.Lock()
		g.noted, g.err = true, err
		g.mu.Unlock()
	}
}

// guardCalls is receiving middleware that authorizes and audits every
// tools/call before the SDK decodes or validates its arguments, so calls
// with bad arguments and calls of unknown tools are refused by scope and
// recorded like the others. An allowed call's context carries its
// principal (PrincipalFromContext).
func (s *Server) guardCalls(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		r, ok := req.(*sdk.CallToolRequest)
		if method != "tools/call" || !ok || r.Params == nil {
			return next(ctx, method, req)
		}
		g := &callGuard{tool: auditToolName(r.Params.Name), start: time.Now(), args: r.Params.Arguments}
		p, ok := callPrincipal(r)
		if !ok {
			g.deny = "unauthenticated"
			return s.refuse(ctx, g, "this call carries no authenticated principal: call the server through its authenticated HTTP endpoint with a bearer token")
		}
		g.p = p
		need := ScopeRead // unknown tools: the SDK says so, to anyone who may read
		if v, ok := s.scopes.Load(r.Params.Name); ok {
			need = v.(Scope)
		}
		if !p.Has(need) {
			g.deny = fmt.Sprintf("needs scope %s; %s has %s", need, p.Name, orNone(p.top()))
			return s.refuse(ctx, g, fmt.Sprintf("permission denied: %s needs the %s scope, but this token (%s) has only %s. "+
				"Ask an admin for a token with scope %s (gantry token create --name NAME --scope %s) and use it via GANTRY_TOKEN or --token-file",
				g.tool, need, p.Name, orNone(p.top()), need, need))
		}
		ctx = context.WithValue(WithPrincipal(ctx, p), guardKey{}, g)
		if s.router != nil && r.Session != nil {
			var done func()
			ctx, done = s.router.trackCall(ctx, r.Session.ID())
			defer done()
		}
		res, err := next(ctx, method, req)
		g.mu.Lock()
		switch {
		case g.noted:
		case err != nil:
			g.err = err
		case isToolError(res):
			// The SDK refused the arguments before the handler ran.
			g.err = &toolError{cat: errdefs.ErrInvalid}
			rewordArgumentError(g.tool, res)
		}
		g.mu.Unlock()
		s.record(ctx, g)
		return res, err
	}
}

func isToolError(res sdk.Result) bool {
	r, ok := res.(*sdk.CallToolResult)
	return ok && r != nil && r.IsError
}

// refuse answers a call with a tool error and records the refusal.
func (s *Server) refuse(ctx context.Context, g *callGuard, msg string) (sdk.Result, error) {
	g.err = &toolError{msg: msg, cat: errdefs.ErrPermission}
	s.log.Warn("tool call refused", "tool", g.tool, "principal", g.p.Name, "reason", g.deny)
	s.record(ctx, g)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: msg}}}, nil
}

func orNone(s Scope) string {
	if s == "" {
		return "no scope"
	}
	return string(s)
}

// auditToolName is a tool name fit for the log: unknown names can be
// anything the caller sent.
func auditToolName(name string) string {
	switch {
	case name == "":
		return "(none)"
	case toolName.MatchString(name):
		return name
	}
	return quote(name)
}

// record hands the call to the auditor.
func (s *Server) record(ctx context.Context, g *callGuard) {
	if s.auditor == nil {
		return
	}
	r := AuditRecord{
		Time:      g.start.UTC(),
		Principal: g.p.Name,
		Tool:      g.tool,
		Arguments: redactArguments(g.args),
		Allowed:   g.deny == "",
		Reason:    g.deny,
		Result:    resultCategory(g.err),
		Latency:   time.Since(g.start),
	}
	if r.Principal == "" {
		r.Principal = "anonymous"
	}
	r.Decision, r.Rule = g.decision, g.rule
	if r.Reason == "" {
		r.Reason = g.reason
	}
	if g.result != "" {
		r.Result = g.result
	}
	s.auditor.Record(context.WithoutCancel(ctx), r)
}

// resultCategory is "ok" or the error's category.
func resultCategory(err error) string {
	if err == nil {
		return "ok"
	}
	if c := category(err); c != nil {
		return c.Error()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "cancelled"
	}
	return "error"
}
