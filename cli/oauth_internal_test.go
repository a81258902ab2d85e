package cli

import "testing"

func TestBearerErrorDescription(t *testing.T) {
	for in, want := range map[string]string{
		`Bearer realm="gantry"`: "",
		`Bearer realm="gantry", resource_metadata="http://x/.well-known/oauth-protected-resource", error="invalid_token", error_description="the access token expired at 2026-01-01T00:00:00Z: get a new one"`: "the access token expired at 2026-01-01T00:00:00Z: get a new one",
		`Bearer error="invalid_token", error_description="expected audience \"gantry\" got [\"other\"]"`:                                                                                                       `expected audience "gantry" got ["other"]`,
		`Bearer error_description="unterminated`: "",
	} {
		if got := bearerErrorDescription(in); got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
	if !isJWT("a.b.c") || isJWT("gty_abc_def") || isJWT("0123abcd") {
		t.Error("isJWT")
	}
}
