package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

const e2ePolicy = `
rules:
  - name: huge-scale
    when: tool == "scale_service" && args.replicas > 10
    effect: deny
    message: more than 10 replicas needs the platform team
  - name: prod-approval
    when: labels.tier == "prod" && !read_only && principal != "admin"
    effect: needs-approval
`

// A policy file given to gantry dev: a bad one stops it with the rule and
// the CEL error; a good one denies by rule and holds a prod change until
// another principal approves it from the CLI, and the approved call runs once.
func TestPolicyFileThroughGantryDev(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - {name: broken, when: 'tool ==', effect: deny}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gantryBin, "dev", "--data-dir", filepath.Join(dir, "never"), "--policy", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "rule broken.when: CEL") {
		t.Fatalf("gantry dev with a bad policy: %v\n%s", err, out)
	}
	good := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(good, []byte(e2ePolicy), 0o600); err != nil {
		t.Fatal(err)
	}

	ref := webImage(t)
	d := startDev(t, "--policy", good)
	d.deploy(`name: shop
image: ` + ref + `
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
replicas: 0
labels: {tier: prod}
resources: {cpu: 50m, memory: 16Mi, pids: 32}
`)
	if out, err := d.cli("scale", "shop", "20"); err == nil || !strings.Contains(out, "huge-scale") || !strings.Contains(out, "platform team") {
		t.Fatalf("scale to 20: %v\n%s", err, out)
	}
	tok, err := d.cli("token", "create", "--name", "ops", "--scope", "operate")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, tok)
	}
	opsToken := strings.TrimSpace(strings.Split(tok, "\n")[0])

	// ops over MCP: the call is held.
	cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-ops", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ops, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{opsToken, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	args := map[string]any{"name": "shop", "replicas": 1}
	res, err := ops.CallTool(ctx, &mcp.CallToolParams{Name: "scale_service", Arguments: args})
	if err != nil {
		t.Fatal(err)
	}
	text := toolText(res)
	id := regexp.MustCompile(`apr-[0-9a-f]+`).FindString(text)
	if !res.IsError || id == "" || !strings.Contains(text, "gantry approve "+id) {
		t.Fatalf("held call: %s", text)
	}
	if s := d.service("shop"); s.Desired != 0 {
		t.Fatalf("held call ran: desired %d", s.Desired)
	}
	if out, err := d.cli("approvals"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "prod-approval") {
		t.Fatalf("gantry approvals: %v\n%s", err, out)
	}
	if out, err := d.cli("approve", id, "--reason", "release"); err != nil || !strings.Contains(out, "approved "+id) {
		t.Fatalf("gantry approve: %v\n%s", err, out)
	}
	args[api.ApprovalIDArg] = id
	for i, want := range []bool{false, true} {
		res, err := ops.CallTool(ctx, &mcp.CallToolParams{Name: "scale_service", Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		if res.IsError != want {
			t.Fatalf("retry %d with the approval: error=%v: %s", i+1, res.IsError, toolText(res))
		}
	}
	if s := d.service("shop"); s.Desired != 1 {
		t.Fatalf("approved call: desired %d, want 1", s.Desired)
	}
	// The same from the CLI, with the ops token: held, approved, run with --approval.
	opsCLI := func(args ...string) (string, error) {
		cmd := exec.Command(gantryBin, args...)
		cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+opsToken)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	heldOut, err := opsCLI("scale", "shop", "2")
	id2 := regexp.MustCompile(`apr-[0-9a-f]+`).FindString(heldOut)
	if err == nil || id2 == "" || !strings.Contains(heldOut, "--approval "+id2) {
		t.Fatalf("held CLI scale: %v\n%s", err, heldOut)
	}
	if out, err := d.cli("approve", id2); err != nil {
		t.Fatalf("gantry approve: %v\n%s", err, out)
	}
	if out, err := opsCLI("scale", "shop", "2", "--approval", id2); err != nil {
		t.Fatalf("approved CLI scale: %v\n%s", err, out)
	}
	if s := d.service("shop"); s.Desired != 2 {
		t.Fatalf("approved CLI call: desired %d, want 2", s.Desired)
	}
	audit, err := d.cli("audit", "--tool", "scale_service", "-o", "json")
	if err != nil || !strings.Contains(audit, `"rule": "huge-scale"`) || !strings.Contains(audit, `"decision": "pending-approval"`) {
		t.Fatalf("gantry audit: %v\n%s", err, audit)
	}
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
