package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cliAs runs the gantry CLI against d with another token.
func (d *dev) cliAs(token string, args ...string) (string, error) {
	cmd := exec.Command(gantryBin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A read token made with the CLI can list but not deploy; the audit log
// records both calls, the refusal with its reason, and verifies; a revoked
// token is refused at the door.
func TestReadTokenThroughCLI(t *testing.T) {
	d := startDev(t)
	out, err := d.cli("token", "create", "--name", "e2e-reader", "--scope", "read")
	if err != nil {
		t.Fatalf("gantry token create: %v\n%s", err, out)
	}
	tok := regexp.MustCompile(`gty_([0-9a-f]+)_[0-9a-f]{64}`).FindStringSubmatch(out)
	if tok == nil || !strings.Contains(out, "shown only once") {
		t.Fatalf("gantry token create printed no token:\n%s", out)
	}
	token, id := tok[0], tok[1]

	if out, err := d.cliAs(token, "ps"); err != nil {
		t.Errorf("gantry ps with a read token: %v\n%s", err, out)
	}
	spec := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(spec, []byte("name: web\nimage: busybox:1.36\ncommand: [sleep, '1000']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = d.cliAs(token, "deploy", "--pull", "never", "-f", spec)
	if err == nil || !strings.Contains(out, "deploy needs the operate scope") || !strings.Contains(out, "gantry token create --name NAME --scope operate") {
		t.Errorf("gantry deploy with a read token: err %v, want a refusal that says which scope and how to get it:\n%s", err, out)
	}
	if out, err := d.cliAs(token, "token", "ls"); err == nil || !strings.Contains(out, "admin scope") {
		t.Errorf("gantry token ls with a read token: err %v\n%s", err, out)
	}

	out, err = d.cli("audit", "--verify")
	if err != nil {
		t.Fatalf("gantry audit --verify: %v\n%s", err, out)
	}
	principal := "e2e-reader/" + id
	var sawPS, sawDeploy bool
	for _, line := range strings.Split(out, "\n") {
		sawPS = sawPS || (strings.Contains(line, principal) && strings.Contains(line, "list_services") && strings.Contains(line, "allowed"))
		sawDeploy = sawDeploy || (strings.Contains(line, principal) && strings.Contains(line, " deploy ") && strings.Contains(line, "denied (needs scope operate"))
	}
	if !sawPS || !sawDeploy || !strings.Contains(out, "audit chain verified") {
		t.Errorf("gantry audit --verify does not show the allowed ps and the denied deploy, verified:\n%s", out)
	}
	if strings.Contains(out, token) {
		t.Errorf("the audit log shows the token:\n%s", out)
	}

	if out, err := d.cli("token", "revoke", id); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("gantry token revoke: %v\n%s", err, out)
	}
	if out, err := d.cliAs(token, "ps"); err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("gantry ps with a revoked token: err %v\n%s", err, out)
	}
	if out, err := d.cli("token", "ls"); err != nil || !strings.Contains(out, "e2e-reader") || !strings.Contains(out, "revoked by admin") {
		t.Errorf("gantry token ls: %v\n%s", err, out)
	}
}
