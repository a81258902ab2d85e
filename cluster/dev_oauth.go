package cluster

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
)

// registerOAuthFlags adds the flags of OAuth 2.1 resource-server mode.
func registerOAuthFlags(fs *flag.FlagSet, o *DevOptions) {
	fs.StringVar(&o.OAuthIssuer, "oauth-issuer", "", "accept JWT access tokens from this OpenID provider (issuer URL; its keys are found through /.well-known/openid-configuration). gty_ and admin tokens keep working")
	fs.StringVar(&o.OAuthAudience, "oauth-audience", "", "the audience (aud) tokens must be issued for: gantry's own, e.g. https://gantry.example.com/mcp; needed with --oauth-issuer")
	fs.StringVar(&o.OAuthScopeClaim, "oauth-scope-claim", "scope", "claim holding the token's scopes; gantry:read, gantry:operate and gantry:admin map to gantry's scopes")
	fs.StringVar(&o.OAuthResource, "oauth-resource", "", "resource identifier in the protected-resource metadata (default: the URL clients use for /mcp)")
}

// checkOAuthFlags checks that the OAuth flags make sense together.
func checkOAuthFlags(o *DevOptions) error {
	if o.OAuthIssuer == "" {
		if o.OAuthAudience != "" || o.OAuthResource != "" {
			return errdefs.WithHint(fmt.Errorf("--oauth-audience and --oauth-resource need --oauth-issuer: %w", errdefs.ErrInvalid),
				"pass the issuer URL of your OpenID provider with --oauth-issuer")
		}
		return nil
	}
	_, err := mcp.NewOAuth(oauthConfig(o, nil))
	return err
}

func oauthConfig(o *DevOptions, log *slog.Logger) mcp.OAuthConfig {
	return mcp.OAuthConfig{Issuer: o.OAuthIssuer, Audience: o.OAuthAudience, ScopeClaim: o.OAuthScopeClaim,
		Resource: o.OAuthResource, Logger: log}
}

// withOAuth returns the authenticator of gantry dev: tokens alone, or, with
// --oauth-issuer, JWTs checked against the issuer and other tokens against
// tokens. The issuer is contacted once here so that a wrong URL shows in
// the log at start; if it is down, tokens are answered 503 until it is up.
func withOAuth(ctx context.Context, o *DevOptions, tokens mcp.Authenticator, log *slog.Logger) (mcp.Authenticator, *mcp.OAuth, error) {
	if o.OAuthIssuer == "" {
		return tokens, nil, nil
	}
	oa, err := mcp.NewOAuth(oauthConfig(o, log))
	if err != nil {
		return nil, nil, err
	}
	if err := oa.Discover(ctx); err != nil {
		log.Warn("OAuth issuer not reachable yet; JWTs get 503 until it is", "issuer", o.OAuthIssuer, "err", err)
	}
	return mcp.OAuthOrTokens(oa, tokens), oa, nil
}

// mountOAuth serves the protected-resource metadata (RFC 9728) at the
// well-known path and at its /mcp-suffixed form, which clients derive from
// the resource URL.
func mountOAuth(mux *http.ServeMux, oa *mcp.OAuth) {
	if oa == nil {
		return
	}
	mux.Handle(mcp.ProtectedResourcePath, oa.MetadataHandler())
	mux.Handle(mcp.ProtectedResourcePath+"/mcp", oa.MetadataHandler())
}
