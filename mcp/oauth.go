package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/gantry-dev/gantry/errdefs"
)

// OAuth scopes a token from the issuer carries to get Gantry's scopes.
const (
	OAuthScopeRead    = "gantry:read"
	OAuthScopeOperate = "gantry:operate"
	OAuthScopeAdmin   = "gantry:admin"
)

// ProtectedResourcePath is where RFC 9728 protected-resource metadata is
// served; a resource at /mcp also has it at this path + "/mcp".
const ProtectedResourcePath = "/.well-known/oauth-protected-resource"

// oauthAlgs are the signature algorithms accepted: asymmetric only, so a
// token cannot be forged with a public key used as an HMAC secret, and
// never "none".
var oauthAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// OAuthConfig configures OAuth 2.1 resource-server mode.
type OAuthConfig struct {
	// Issuer is the authorization server's issuer URL, exactly as its
	// tokens' iss claim and its /.well-known/openid-configuration say.
	Issuer string
	// Audience is Gantry's own audience: a token must list it in aud.
	// Tokens meant for another service are refused (no token passthrough).
	Audience string
	// ScopeClaim is the claim holding the scopes: a space-separated string
	// or an array of strings. Default "scope".
	ScopeClaim string
	// Resource is the resource identifier served in the metadata; empty
	// means the URL the client used for /mcp.
	Resource string
	// HTTPClient fetches discovery and keys; nil means a client with a
	// 10 s timeout.
	HTTPClient *http.Client
	// KeyRefreshInterval is the least time between two fetches of the
	// issuer's keys caused by tokens naming an unknown key ID. Default 10 s.
	KeyRefreshInterval time.Duration
	Logger             *slog.Logger
}

// OAuth authenticates JWT access tokens issued by an OpenID provider. The
// provider's keys are found through its discovery document, cached, and
// fetched again when a token names a key ID not in the cache (at most once
// every minRefresh, so junk tokens cannot make Gantry hammer the provider).
type OAuth struct {
	cfg    OAuthConfig
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // nil until discovery succeeds
	lastTry  time.Time
	lastErr  error
}

var _ Authenticator = (*OAuth)(nil)

// retryDiscovery is how long a failed discovery is remembered before the
// next token tries again.
const retryDiscovery = 5 * time.Second

// NewOAuth checks cfg; it does not reach the issuer (Discover does, and
// Authenticate does when Discover has not succeeded yet).
func NewOAuth(cfg OAuthConfig) (*OAuth, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, errdefs.WithHint(fmt.Errorf("OAuth issuer %q: want an https URL (http only on loopback): %w", cfg.Issuer, errdefs.ErrInvalid),
			"pass the issuer URL exactly as the provider's tokens carry it in iss, e.g. https://login.example.com/realms/ops")
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errdefs.WithHint(fmt.Errorf("OAuth audience is empty: %w", errdefs.ErrInvalid),
			"pass the audience your provider puts in aud for tokens meant for gantry, e.g. its endpoint URL https://gantry.example.com/mcp")
	}
	if cfg.ScopeClaim == "" {
		cfg.ScopeClaim = "scope"
	}
	if cfg.KeyRefreshInterval <= 0 {
		cfg.KeyRefreshInterval = 10 * time.Second
	}
	o := &OAuth{cfg: cfg, client: cfg.HTTPClient, log: cfg.Logger}
	if o.client == nil {
		o.client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Discover fetches the issuer's discovery document and prepares the
// verifier. Authenticate calls it when needed; calling it at start-up
// reports a misconfigured issuer early.
func (o *OAuth) Discover(ctx context.Context) error {
	_, err := o.verifierFor(ctx, true)
	return err
}

func (o *OAuth) verifierFor(ctx context.Context, force bool) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	if !force && o.lastErr != nil && time.Since(o.lastTry) < retryDiscovery {
		return nil, o.lastErr
	}
	o.lastTry = time.Now()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, o.client), o.cfg.Issuer)
	if err != nil {
		o.lastErr = fmt.Errorf("OAuth issuer %s: discovery failed (%v): %w", o.cfg.Issuer, err, errdefs.ErrUnavailable)
		return nil, o.lastErr
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		o.lastErr = fmt.Errorf("OAuth issuer %s: its discovery document has no jwks_uri: %w", o.cfg.Issuer, errdefs.ErrUnavailable)
		return nil, o.lastErr
	}
	algs := make([]string, len(oauthAlgs))
	for i, a := range oauthAlgs {
		algs[i] = string(a)
	}
	keys := &jwksCache{url: meta.JWKSURI, client: o.client, minRefresh: o.cfg.KeyRefreshInterval, log: o.log}
	o.verifier = oidc.NewVerifier(o.cfg.Issuer, keys, &oidc.Config{ClientID: o.cfg.Audience, SupportedSigningAlgs: algs})
	o.lastErr = nil
	o.log.Info("OAuth issuer discovered", "issuer", o.cfg.Issuer, "jwks_uri", meta.JWKSURI)
	return o.verifier, nil
}

// errOAuthHelp is appended to every refusal of an OAuth token.
const errOAuthHelp = "get a new access token from the identity provider for this resource (see " + ProtectedResourcePath + ")"

// Authenticate implements Authenticator for JWT access tokens. The
// principal is "oauth:<sub>@<issuer>"; its scopes come from the
// gantry:read, gantry:operate and gantry:admin values of the scope claim.
func (o *OAuth) Authenticate(ctx context.Context, token string) (Principal, error) {
	v, err := o.verifierFor(ctx, false)
	if err != nil {
		return Principal{}, err
	}
	// The claim checks are go-oidc's: signature (by a key from the
	// issuer's JWKS, with an allowed algorithm), iss, aud, exp and nbf.
	t, err := v.Verify(ctx, token)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return Principal{}, fmt.Errorf("the access token expired at %s: %s", exp.Expiry.UTC().Format(time.RFC3339), errOAuthHelp)
		}
		return Principal{}, fmt.Errorf("the access token is not valid for this server (%s): %s", strings.TrimPrefix(err.Error(), "oidc: "), errOAuthHelp)
	}
	if t.Subject == "" {
		return Principal{}, fmt.Errorf("the access token has no sub claim: %s", errOAuthHelp)
	}
	// The subject names the principal in the audit log and in policy: keep
	// it printable and short.
	if len(t.Subject) > 255 || strings.IndexFunc(t.Subject, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return Principal{}, fmt.Errorf("the access token's sub claim is longer than 255 bytes or holds spaces or control characters: %s", errOAuthHelp)
	}
	var claims map[string]json.RawMessage
	if err := t.Claims(&claims); err != nil {
		return Principal{}, fmt.Errorf("the access token's claims cannot be read: %s", errOAuthHelp)
	}
	scopes := mapOAuthScopes(claims[o.cfg.ScopeClaim])
	if len(scopes) == 0 {
		return Principal{}, fmt.Errorf("the access token carries none of the scopes %s, %s, %s in its %q claim: ask the identity provider for one of them",
			OAuthScopeRead, OAuthScopeOperate, OAuthScopeAdmin, o.cfg.ScopeClaim)
	}
	return Principal{Name: "oauth:" + t.Subject + "@" + t.Issuer, Scopes: scopes}, nil
}

// mapOAuthScopes turns a scope claim (a space-separated string or an
// array) into Gantry scopes; other scopes are ignored.
func mapOAuthScopes(raw json.RawMessage) []Scope {
	var list []string
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		list = strings.Fields(s)
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil
	}
	var out []Scope
	for _, v := range list {
		var sc Scope
		switch v {
		case OAuthScopeRead:
			sc = ScopeRead
		case OAuthScopeOperate:
			sc = ScopeOperate
		case OAuthScopeAdmin:
			sc = ScopeAdmin
		default:
			continue
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// resourceURL is the resource identifier for a request.
func (o *OAuth) resourceURL(r *http.Request) string {
	if o.cfg.Resource != "" {
		return o.cfg.Resource
	}
	return requestBase(r) + "/mcp"
}

func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ResourceMetadataURL is the protected-resource metadata URL that 401
// responses point clients to (RFC 9728 §5.1).
func (o *OAuth) ResourceMetadataURL(r *http.Request) string {
	return requestBase(r) + ProtectedResourcePath
}

// MetadataHandler serves RFC 9728 protected-resource metadata; mount it at
// ProtectedResourcePath and ProtectedResourcePath+"/mcp".
func (o *OAuth) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONError(w, http.StatusMethodNotAllowed, jsonError("method_not_allowed", "use GET"))
			return
		}
		meta := oauthex.ProtectedResourceMetadata{
			Resource:               o.resourceURL(r),
			AuthorizationServers:   []string{o.cfg.Issuer},
			ScopesSupported:        []string{OAuthScopeRead, OAuthScopeOperate, OAuthScopeAdmin},
			BearerMethodsSupported: []string{"header"},
			ResourceName:           "Gantry MCP endpoint",
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		// Browser-based MCP clients read it cross-origin; it is public.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_ = json.NewEncoder(w).Encode(meta)
	})
}

// OAuthOrTokens authenticates JWTs (three dot-separated parts) with
// oauth and everything else (gty_ API tokens, the admin token) with tokens.
func OAuthOrTokens(oauth *OAuth, tokens Authenticator) Authenticator {
	return &oauthOrTokens{oauth: oauth, tokens: tokens}
}

type oauthOrTokens struct {
	oauth  *OAuth
	tokens Authenticator
}

func (a *oauthOrTokens) Authenticate(ctx context.Context, token string) (Principal, error) {
	if strings.Count(token, ".") == 2 {
		return a.oauth.Authenticate(ctx, token)
	}
	return a.tokens.Authenticate(ctx, token)
}

func (a *oauthOrTokens) ResourceMetadataURL(r *http.Request) string {
	return a.oauth.ResourceMetadataURL(r)
}

// resourceMetadataURLer is an Authenticator whose 401s point to
// protected-resource metadata.
type resourceMetadataURLer interface {
	ResourceMetadataURL(r *http.Request) string
}

// bearerChallenge is the WWW-Authenticate value of a 401 (RFC 6750 §3,
// with RFC 9728's resource_metadata when the authenticator has one).
func bearerChallenge(a Authenticator, r *http.Request, params string) string {
	c := `Bearer realm="gantry"`
	if m, ok := a.(resourceMetadataURLer); ok {
		c += fmt.Sprintf(`, resource_metadata=%q`, m.ResourceMetadataURL(r))
	}
	if params != "" {
		c += ", " + params
	}
	return c
}

// jwksCache is an oidc.KeySet over the issuer's JWKS: keys are cached and
// fetched again only for a key ID the cache does not hold, at most once
// every minRefresh.
type jwksCache struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	log        *slog.Logger

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetched  time.Time
	inflight chan struct{} // closed when the fetch in flight ends
}

// maxJWKS bounds the key set document.
const maxJWKS = 1 << 20

var errUnknownKey = errors.New("the token is signed with a key the issuer does not publish")

// VerifySignature implements oidc.KeySet.
func (c *jwksCache) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, oauthAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	for attempt := 0; ; attempt++ {
		keys, known := c.lookup(kid)
		for _, k := range keys {
			if payload, err := jws.Verify(k.Key); err == nil {
				return payload, nil
			}
		}
		if known {
			return nil, errors.New("the token's signature does not verify")
		}
		if attempt > 0 || !c.refresh(ctx) {
			return nil, errUnknownKey
		}
	}
}

// lookup returns the keys that may have signed a token with kid, and
// whether kid is in the cache (an empty kid tries every key).
func (c *jwksCache) lookup(kid string) ([]jose.JSONWebKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if kid == "" {
		return c.keys, len(c.keys) > 0
	}
	for _, k := range c.keys {
		if k.KeyID == kid {
			return []jose.JSONWebKey{k}, true
		}
	}
	return nil, false
}

// refresh fetches the key set unless it was fetched less than minRefresh
// ago; it reports whether the cache may have changed. The fetch runs
// without the lock, so verifications with known keys never wait for the
// issuer; concurrent refreshes wait for the one in flight.
func (c *jwksCache) refresh(ctx context.Context) bool {
	c.mu.Lock()
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !c.fetched.IsZero() && time.Since(c.fetched) < c.minRefresh {
		c.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	c.inflight, c.fetched = ch, time.Now()
	c.mu.Unlock()

	keys, err := c.fetch(ctx)
	c.mu.Lock()
	if err == nil {
		c.keys = keys
	}
	c.inflight = nil
	c.mu.Unlock()
	close(ch)
	if err != nil {
		c.log.Warn("fetching the OAuth issuer's keys failed", "jwks_uri", c.url, "err", err)
		return false
	}
	return true
}

func (c *jwksCache) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", c.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKS {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", c.url, maxJWKS)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("GET %s: %w", c.url, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use == "" || k.Use == "sig" {
			if k.IsPublic() {
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}
