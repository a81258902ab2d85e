package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp/oidctest"
)

// gantry dev --oauth-issuer, against a real OpenID provider (zitadel/oidc,
// in this process): the protected-resource metadata names the provider,
// 401s point to it, a token the provider issues for gantry's audience works
// for the MCP client and the CLI with exactly its scopes, a token for
// another audience is refused, and the audit log names the OAuth principal.
func TestOAuthResourceServer(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	op := oidctest.Start(t)
	const audience = "gantry-e2e"
	d := startDevFlags(t, "http", &http.Client{Timeout: 5 * time.Second}, "--oauth-issuer", op.URL, "--oauth-audience", audience)
	base := "http://" + d.addr

	body, err := httpGet(base + "/.well-known/oauth-protected-resource")
	if err != nil {
		t.Fatalf("metadata: %v %s\n%s", err, body, d.log())
	}
	var meta struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal([]byte(body), &meta); err != nil || meta.Resource != base+"/mcp" ||
		len(meta.AuthorizationServers) != 1 || meta.AuthorizationServers[0] != op.URL || len(meta.ScopesSupported) != 3 {
		t.Errorf("metadata = %s (%v)", body, err)
	}
	resp, err := http.Post(base+"/mcp", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(c, `resource_metadata="`+base+`/.well-known/oauth-protected-resource"`) {
		t.Errorf("no token: %d %q", resp.StatusCode, c)
	}

	connect := func(token string) (*mcp.ClientSession, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-oauth", Version: "1"}, nil)
		return cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp",
			HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}}, nil)
	}
	readTok := op.Token(t, audience, "gantry:read")
	d.session, err = connect(readTok)
	if err != nil {
		t.Fatalf("connect with the provider's token: %v\n%s", err, d.log())
	}
	var nodes api.NodeList
	d.call("list_nodes", map[string]any{}, &nodes)
	err = d.callErr("deploy", map[string]any{"spec": map[string]any{"name": "oauth-web", "image": "127.0.0.1:5000/x:1"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "needs the operate scope") {
		t.Errorf("deploy with a gantry:read token: %v", err)
	}
	if s, err := connect(op.Token(t, "some-other-api", "gantry:admin")); err == nil {
		s.Close()
		t.Error("a token for another audience was accepted")
	}

	cmd := exec.Command(gantryBin, "ps")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR="+base+"/mcp", "GANTRY_TOKEN="+readTok)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("gantry ps with the provider's token: %v\n%s", err, out)
	}

	// The CLI passes on the server's reason for refusing a JWT.
	cmd = exec.Command(gantryBin, "ps")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR="+base+"/mcp", "GANTRY_TOKEN="+op.Token(t, "some-other-api", "gantry:read"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "rejected the OAuth access token") ||
		!strings.Contains(string(out), "audience") {
		t.Errorf("gantry ps with a token for another audience: %v\n%s", err, out)
	}

	// Switch to the admin token to read the audit log.
	d.session.Close()
	d.session, err = connect(d.token)
	if err != nil {
		t.Fatal(err)
	}
	var log api.AuditLog
	d.call("audit_log", map[string]any{"principal": "oauth:" + oidctest.ClientID + "@" + op.URL}, &log)
	if len(log.Entries) < 2 {
		t.Errorf("audit entries of the OAuth principal: %+v", log.Entries)
	}
}
