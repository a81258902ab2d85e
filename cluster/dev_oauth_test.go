package cluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// The OAuth flags are checked together at parse time, before anything
// starts.
func TestDevOAuthFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string // "" = accepted
	}{
		{nil, ""},
		{[]string{"--oauth-issuer", "https://idp.example.com", "--oauth-audience", "https://gantry.example.com/mcp"}, ""},
		{[]string{"--oauth-issuer", "http://127.0.0.1:5556", "--oauth-audience", "gantry", "--oauth-scope-claim", "scp"}, ""},
		{[]string{"--oauth-audience", "gantry"}, "need --oauth-issuer"},
		{[]string{"--oauth-issuer", "https://idp.example.com"}, "audience is empty"},
		{[]string{"--oauth-issuer", "http://idp.example.com", "--oauth-audience", "gantry"}, "https"},
	}
	for _, c := range cases {
		o, err := ParseDevFlags(c.args, &bytes.Buffer{})
		if c.want == "" {
			if err != nil {
				t.Errorf("%v: %v", c.args, err)
			} else if len(c.args) > 5 && o.OAuthScopeClaim != "scp" {
				t.Errorf("%v: scope claim %q", c.args, o.OAuthScopeClaim)
			}
			continue
		}
		if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want an invalid-argument error containing %q", c.args, err, c.want)
		}
	}
}
