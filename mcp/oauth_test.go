package mcp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
	"github.com/gantry-dev/gantry/mcp/oidctest"
)

const gantryAudience = "https://gantry.test/mcp"

// oauthEnv is a real OpenID provider (oidctest: zitadel/oidc's op package)
// on one httptest server and the real gantry MCP server, in OAuth
// resource-server mode next to its static token, on another.
type oauthEnv struct {
	op     *oidctest.Provider
	gantry *httptest.Server
}

func newOAuthEnv(t *testing.T, refresh time.Duration) *oauthEnv {
	t.Helper()
	e := &oauthEnv{op: oidctest.Start(t)}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	oa, err := mcp.NewOAuth(mcp.OAuthConfig{Issuer: e.op.URL, Audience: gantryAudience, HTTPClient: &http.Client{Transport: tr},
		KeyRefreshInterval: refresh})
	if err != nil {
		t.Fatal(err)
	}
	if err := oa.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := mcptest.New()
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Auth: mcp.OAuthOrTokens(oa, staticToken(testToken))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	mux.Handle(mcp.ProtectedResourcePath, oa.MetadataHandler())
	e.gantry = httptest.NewServer(mux)
	t.Cleanup(e.gantry.Close)
	// Sessions that raw requests opened end with the test (Serve does this
	// at shutdown; httptest.Server.Close does not).
	t.Cleanup(srv.CloseSessions)
	return e
}

// staticToken is the admin token, standing in for gantry's token store.
type staticToken string

func (s staticToken) Authenticate(_ context.Context, tok string) (mcp.Principal, error) {
	if tok != string(s) {
		return mcp.Principal{}, errBad
	}
	return mcp.Principal{Name: "admin", Scopes: []mcp.Scope{mcp.ScopeAdmin}}, nil
}

var errBad = errors.New("not the admin token")

func (e *oauthEnv) token(t *testing.T, audience, scope string) string {
	return e.op.Token(t, audience, scope)
}

func sign(t *testing.T, key *oidctest.Key, claims map[string]any) string {
	return oidctest.Sign(t, key, claims)
}

func (e *oauthEnv) claims(scope string) map[string]any { return e.op.Claims(gantryAudience, scope) }

// post sends an MCP initialize with token and returns the response.
func (e *oauthEnv) post(t *testing.T, token string) *http.Response {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, e.gantry.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.gantry.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (e *oauthEnv) session(t *testing.T, token string) *sdk.ClientSession {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cl := sdk.NewClient(&sdk.Implementation{Name: "oauth-test", Version: "1"}, nil)
	cs, err := cl.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: e.gantry.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token, tr}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func callText(t *testing.T, cs *sdk.ClientSession, tool string, args any) (*sdk.CallToolResult, string) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return res, b.String()
}

// A token the real OP issues for gantry's audience is accepted with the
// scopes it carries, and only those; gantry's own tokens still work.
func TestOAuthTokensFromRealProvider(t *testing.T) {
	e := newOAuthEnv(t, time.Hour)
	reader := e.session(t, e.token(t, gantryAudience, "openid gantry:read"))
	if res, text := callText(t, reader, api.ToolListServices, struct{}{}); res.IsError {
		t.Errorf("gantry:read token, list_services: %s", text)
	}
	spec := map[string]any{"spec": map[string]any{"name": "web", "image": "127.0.0.1:5000/web:1"}}
	if res, text := callText(t, reader, api.ToolDeploy, spec); !res.IsError || !strings.Contains(text, "needs the operate scope") ||
		!strings.Contains(text, "oauth:"+oidctest.ClientID+"@"+e.op.URL) {
		t.Errorf("gantry:read token, deploy: error=%v %s", res.IsError, text)
	}
	operator := e.session(t, e.token(t, gantryAudience, "gantry:operate"))
	if res, text := callText(t, operator, api.ToolDeploy, spec); res.IsError && strings.Contains(text, "scope") {
		t.Errorf("gantry:operate token, deploy refused by scope: %s", text)
	}
	admin := e.session(t, testToken)
	if res, text := callText(t, admin, api.ToolListServices, struct{}{}); res.IsError {
		t.Errorf("static admin token: %s", text)
	}
	if n := e.op.KeyFetches(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want once (cached)", n)
	}
}

// Every token that is not a valid, unexpired token from the configured
// issuer for gantry's audience, signed by a published key, gets 401 with a
// challenge that points to the protected-resource metadata.
func TestOAuthRefusesBadTokens(t *testing.T) {
	e := newOAuthEnv(t, time.Hour)
	good := e.token(t, gantryAudience, "gantry:admin")
	key := e.op.SigningKey()
	stranger := oidctest.NewKey(t, jose.ES256, "unknown-kid")
	parts := strings.Split(good, ".")
	tamperedClaims, _ := json.Marshal(map[string]any{"iss": e.op.URL, "sub": "mallory", "aud": gantryAudience, "scope": "gantry:admin",
		"exp": time.Now().Add(time.Hour).Unix()})
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload := func(m map[string]any) string { b, _ := json.Marshal(m); return base64.RawURLEncoding.EncodeToString(b) }

	expired := e.claims("gantry:admin")
	expired["exp"], expired["iat"], expired["nbf"] = time.Now().Add(-time.Minute).Unix(), time.Now().Add(-time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	wrongIss := e.claims("gantry:admin")
	wrongIss["iss"] = "https://evil.example.com"
	notYet := e.claims("gantry:admin")
	notYet["nbf"] = time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name, token, want string
	}{
		{"wrong audience (token passthrough)", e.token(t, "https://other-service.test", "gantry:admin"), "expected audience"},
		{"expired", sign(t, key, expired), "expired"},
		{"wrong issuer", sign(t, key, wrongIss), "different provider"},
		{"not yet valid", sign(t, key, notYet), "nbf"},
		{"unknown kid", sign(t, stranger, e.claims("gantry:admin")), "key the issuer does not publish"},
		{"alg none", noneHeader + "." + payload(e.claims("gantry:admin")) + ".", "malformed"},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedClaims) + "." + parts[2], "does not verify"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), "does not verify"},
		{"no gantry scope", sign(t, key, e.claims("openid profile")), "none of the scopes"},
		{"no sub", func() string { c := e.claims("gantry:read"); delete(c, "sub"); return sign(t, key, c) }(), "no sub"},
		{"control characters in sub", func() string { c := e.claims("gantry:read"); c["sub"] = "bob\nadmin"; return sign(t, key, c) }(), "control characters"},
	}
	if k, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("public-key-used-as-secret-000000")}, nil); err == nil {
		claims, _ := json.Marshal(e.claims("gantry:admin"))
		jws, _ := k.Sign(claims)
		hs, _ := jws.CompactSerialize()
		cases = append(cases, struct{ name, token, want string }{"HS256", hs, "malformed"})
	}
	for _, c := range cases {
		resp := e.post(t, c.token)
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `resource_metadata="`+e.gantry.URL+mcp.ProtectedResourcePath+`"`) ||
			!strings.Contains(challenge, c.want) {
			t.Errorf("%s: status %d, WWW-Authenticate %q; want 401 mentioning %q", c.name, resp.StatusCode, challenge, c.want)
		}
	}
	if resp := e.post(t, ""); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := e.post(t, good); resp.StatusCode != http.StatusOK {
		t.Errorf("the good token: status %d", resp.StatusCode)
	}
	// The unknown kid did not make gantry fetch the keys again within the
	// refresh interval.
	if n := e.op.KeyFetches(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func flip(sig string) string {
	b, _ := base64.RawURLEncoding.DecodeString(sig)
	b[len(b)/2] ^= 0x01
	return base64.RawURLEncoding.EncodeToString(b)
}

// When the provider rotates its key, a token signed with the new key makes
// gantry fetch the key set again, once however many calls arrive together,
// and is accepted.
func TestOAuthKeyRotation(t *testing.T) {
	e := newOAuthEnv(t, 50*time.Millisecond)
	if resp := e.post(t, e.token(t, gantryAudience, "gantry:read")); resp.StatusCode != http.StatusOK {
		t.Fatalf("before rotation: %d", resp.StatusCode)
	}
	e.op.Rotate(oidctest.NewKey(t, jose.ES256, "ec-2"))
	time.Sleep(60 * time.Millisecond)
	tok := e.token(t, gantryAudience, "gantry:read")
	codes := make(chan int, 8)
	for range 8 {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, e.gantry.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := e.gantry.Client().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range 8 {
		if c := <-codes; c == http.StatusUnauthorized || c == 0 {
			t.Errorf("after rotation to ES256: status %d", c)
		}
	}
	if n := e.op.KeyFetches(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
}

// The protected-resource metadata (RFC 9728) names the resource, the
// issuer, gantry's scopes and the header bearer method.
func TestOAuthProtectedResourceMetadata(t *testing.T) {
	e := newOAuthEnv(t, time.Hour)
	resp, err := e.gantry.Client().Get(e.gantry.URL + mcp.ProtectedResourcePath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || meta["resource"] != e.gantry.URL+"/mcp" {
		t.Errorf("status %d, metadata %v", resp.StatusCode, meta)
	}
	if as, _ := meta["authorization_servers"].([]any); len(as) != 1 || as[0] != e.op.URL {
		t.Errorf("authorization_servers = %v", meta["authorization_servers"])
	}
	if sc, _ := json.Marshal(meta["scopes_supported"]); string(sc) != `["gantry:read","gantry:operate","gantry:admin"]` {
		t.Errorf("scopes_supported = %s", sc)
	}
	if bm, _ := json.Marshal(meta["bearer_methods_supported"]); string(bm) != `["header"]` {
		t.Errorf("bearer_methods_supported = %s", bm)
	}
}

// A misconfigured issuer is refused before anything is served.
func TestOAuthConfigChecked(t *testing.T) {
	for _, c := range []mcp.OAuthConfig{
		{Issuer: "http://idp.example.com", Audience: "a"},
		{Issuer: "not a url", Audience: "a"},
		{Issuer: "https://idp.example.com"},
	} {
		if _, err := mcp.NewOAuth(c); err == nil {
			t.Errorf("%+v: accepted", c)
		}
	}
	// An unreachable issuer makes tokens fail with 503, not 401.
	oa, err := mcp.NewOAuth(mcp.OAuthConfig{Issuer: "http://127.0.0.1:1", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oa.Authenticate(context.Background(), "a.b.c"); err == nil || !strings.Contains(err.Error(), "discovery failed") {
		t.Errorf("unreachable issuer: %v", err)
	}
}
