// Package oidctest runs a real OpenID provider in-process for tests: the
// op package of github.com/zitadel/oidc with the library's own in-memory
// example storage, on an httptest server. Only what a resource-server test
// needs is changed: the service user sid1 (secret "verysecret") gets JWT
// access tokens (the example issues opaque ones) for a chosen audience,
// with the requested scopes in the scope claim, and the signing key can be
// rotated. Tests also sign tokens a well-behaved provider never issues
// (expired, wrong issuer, unknown key) with Sign.
package oidctest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client credentials of the provider's service user.
const (
	ClientID     = "sid1"
	ClientSecret = "verysecret"
)

// Key is a signing key of the provider, or a stranger's.
type Key struct {
	id   string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// NewKey makes a key: RS256 (2048-bit RSA) or ES256 (P-256).
func NewKey(tb testing.TB, alg jose.SignatureAlgorithm, id string) *Key {
	tb.Helper()
	var priv crypto.Signer
	var err error
	if alg == jose.RS256 {
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		alg = jose.ES256
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &Key{id: id, alg: alg, priv: priv}
}

// ID is the key's kid.
func (k *Key) ID() string { return k.id }

// op.SigningKey and op.Key.
func (k *Key) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *Key) Algorithm() jose.SignatureAlgorithm          { return k.alg }
func (k *Key) Key() any                                    { return k.priv }
func (k *Key) Use() string                                 { return "sig" }

type publicKey struct{ k *Key }

func (p publicKey) Key() any                           { return p.k.priv.Public() }
func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }

// opStorage is the example storage with the changes above.
type opStorage struct {
	*storage.Storage

	mu       sync.Mutex
	audience string
	key      *Key
}

func (s *opStorage) current() *Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

func (s *opStorage) SigningKey(context.Context) (op.SigningKey, error) { return s.current(), nil }

func (s *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.current().alg}, nil
}

func (s *opStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{k: s.current()}}, nil
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

func (s *opStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	c, err := s.Storage.ClientCredentials(ctx, id, secret)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

func (s *opStorage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &oidc.JWTTokenRequest{Subject: clientID, Audience: []string{s.audience}, Scopes: scopes}, nil
}

func (s *opStorage) GetPrivateClaimsFromScopes(_ context.Context, _, _ string, scopes []string) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(scopes, " ")}, nil
}

// Provider is a running OpenID provider; its issuer is URL.
type Provider struct {
	URL        string
	srv        *httptest.Server
	st         *opStorage
	keyFetches atomic.Int32
}

// Start runs a provider on a loopback httptest server until the test ends.
// Its first signing key is RS256.
func Start(tb testing.TB) *Provider {
	tb.Helper()
	p := &Provider{}
	var handler http.Handler
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			p.keyFetches.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	tb.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	p.st = &opStorage{Storage: storage.NewStorage(storage.NewUserStore(p.URL)), key: NewKey(tb, jose.RS256, "rsa-1")}
	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	h, err := op.NewProvider(&op.Config{CryptoKey: cryptoKey}, p.st, op.StaticIssuer(p.URL), op.WithAllowInsecure())
	if err != nil {
		tb.Fatal(err)
	}
	handler = h
	return p
}

// KeyFetches is how many times the JWKS (/keys) was fetched.
func (p *Provider) KeyFetches() int { return int(p.keyFetches.Load()) }

// SigningKey is the provider's current key.
func (p *Provider) SigningKey() *Key { return p.st.current() }

// Rotate makes k the provider's signing key (and its only published key).
func (p *Provider) Rotate(k *Key) {
	p.st.mu.Lock()
	p.st.key = k
	p.st.mu.Unlock()
}

// Token gets an access token for audience with scope (space-separated)
// from the provider's token endpoint, with the client_credentials grant,
// as a real client would.
func (p *Provider) Token(tb testing.TB, audience, scope string) string {
	tb.Helper()
	p.st.mu.Lock()
	p.st.audience = audience
	p.st.mu.Unlock()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ClientID, ClientSecret)
	resp, err := p.srv.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		tb.Fatalf("token endpoint: %s %v %s", resp.Status, err, out.Error)
	}
	if strings.Count(out.AccessToken, ".") != 2 {
		tb.Fatalf("the provider issued a non-JWT access token: %q", out.AccessToken)
	}
	return out.AccessToken
}

// Claims are valid claims of a token from this provider for audience:
// subject "robot", valid from now for an hour.
func (p *Provider) Claims(audience, scope string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": p.URL, "sub": "robot", "aud": []string{audience}, "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign makes a compact JWS of claims signed by k, with k's kid.
func Sign(tb testing.TB, k *Key, claims map[string]any) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.id))
	if err != nil {
		tb.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
