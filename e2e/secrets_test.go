package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// A secret set through the CLI reaches the instance's environment (its
// health check passes only if it did), and its value is never seen again:
// not in any tool's answer, resource, event, audit entry or plan, not in
// service_logs (scrubbed), and not in the Raft log or snapshots on disk.
func TestSecretReachesTheInstanceAndNothingElse(t *testing.T) {
	ref := webImage(t)
	pf := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pf, []byte(execPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, "--policy", pf) // exec_instance allowed: its output is scrubbed too
	value := fmt.Sprintf("pl41n-%d-never-leaves", time.Now().UnixNano())

	cmd := exec.Command(gantryBin, "secret", "set", "db-password")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	cmd.Stdin = strings.NewReader(value + "\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "created") || strings.Contains(string(out), value) {
		t.Fatalf("gantry secret set: %v\n%s", err, out)
	}

	// The check compares a digest, so that the spec (which every reader
	// sees) does not hold the value: healthy means the value arrived whole.
	// It accepts the value set next too, for the restart at the end.
	value2 := value + "-rotated"
	sum, sum2 := sha256.Sum256([]byte(value)), sha256.Sum256([]byte(value2))
	spec := fmt.Sprintf(`
name: sec
image: %s
command: ["sh", "-c", "echo \"password is $DB_PASSWORD\"; sleep 1000"]
secrets: {DB_PASSWORD: db-password}
health: {exec: {command: [sh, -c, 'd=$(printf %%s "$DB_PASSWORD" | sha256sum | cut -c1-64); test "$d" = "%s" || test "$d" = "%s"']}, interval: 500ms, timeout: 400ms, failures: 2}
`, ref, hex.EncodeToString(sum[:]), hex.EncodeToString(sum2[:]))
	d.deploy(spec)
	s := d.waitFor("sec", 60*time.Second, "healthy", func(s api.ServiceStatus) bool {
		return s.Running == 1 && len(s.Instances) == 1 && s.Instances[0].Healthy
	})

	// The container printed the value; service_logs shows the token.
	var logs api.LogsResult
	deadline := time.Now().Add(20 * time.Second)
	for {
		d.call("service_logs", map[string]any{"name": "sec"}, &logs)
		raw, _ := json.Marshal(logs)
		if strings.Contains(string(raw), "[secret:db-password]") {
			if strings.Contains(string(raw), value) {
				t.Fatalf("service_logs holds the value: %s", raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service_logs never showed [secret:db-password]: %s", raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := d.callErr("service_logs", map[string]any{"name": "sec", "grep": value[:10]}, &logs); err != nil {
		t.Fatal(err)
	}
	for _, b := range logs.Instances {
		if len(b.Lines) > 0 {
			t.Errorf("grep for the value's start matched %q", b.Lines)
		}
	}

	// Every other way to look at it.
	var seen bytes.Buffer
	look := func(tool string, args map[string]any) {
		t.Helper()
		var out any
		if err := d.callErr(tool, args, &out); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(&seen, "%s: %s\n", tool, b)
	}
	look("get_service", map[string]any{"name": "sec"})
	look("list_services", map[string]any{})
	look("service_history", map[string]any{"name": "sec"})
	look("list_secrets", map[string]any{})
	look("list_events", map[string]any{})
	look("audit_log", map[string]any{"limit": 1000})
	look("explain_instance", map[string]any{"id": s.Instances[0].ID})
	look("deploy", map[string]any{"spec_yaml": strings.Replace(spec, "sleep 1000", "sleep 1001", 1), "dry_run": true})
	look("set_secret", map[string]any{"name": "db-password", "value": value, "dry_run": true})
	uris := []string{"gantry://services/sec", "gantry://services/sec/spec"}
	res, err := d.session.ListResources(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	for _, uri := range uris {
		rr, err := d.session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		for _, c := range rr.Contents {
			fmt.Fprintf(&seen, "%s: %s\n", uri, c.Text)
		}
	}
	if strings.Contains(seen.String(), value) {
		t.Fatalf("the value was returned:\n%s", seen.String())
	}
	if !strings.Contains(seen.String(), `"used_by":["sec"]`) || !strings.Contains(seen.String(), `"action":"replace"`) {
		t.Errorf("list_secrets or the set_secret dry run do not say what they should:\n%s", seen.String())
	}
	out, err := d.cli("secret", "ls")
	if err != nil || !strings.Contains(out, "db-password") || !strings.Contains(out, "sec") || strings.Contains(out, value) {
		t.Errorf("gantry secret ls: %v\n%s", err, out)
	}

	// Deleting it while sec uses it is refused, naming sec.
	out, err = d.cli("secret", "rm", "db-password")
	if err == nil || !strings.Contains(out, "sec") {
		t.Errorf("gantry secret rm of a secret in use: %v\n%s", err, out)
	}
	// A spec naming a missing secret is refused with the fix.
	err = d.callErr("deploy", map[string]any{"spec_yaml": strings.Replace(spec, "db-password}", "api-key}", 1)}, nil)
	if err == nil || !strings.Contains(err.Error(), "secrets.DB_PASSWORD") || !strings.Contains(err.Error(), "gantry secret set api-key") {
		t.Errorf("deploy with a missing secret: %v", err)
	}

	// On disk: the Raft log and snapshots hold only ciphertext, and so does
	// everything else in the data dir but the instance's own directory (its
	// bundle's config.json and the log the container wrote the value to).
	inst := filepath.Join(d.dataDir, "instances")
	checked := 0
	err = filepath.WalkDir(d.dataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (path == inst || path == filepath.Join(d.dataDir, "images")) {
			return filepath.SkipDir
		}
		if !e.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		if bytes.Contains(data, []byte(value)) {
			t.Errorf("%s holds the secret's plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(d.dataDir, "raft", "raft.db")) || checked < 3 {
		t.Fatalf("checked %d files; raft.db missing?", checked)
	}
	cfg := filepath.Join(inst, s.Instances[0].ID, "bundle", "config.json")
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("bundle config.json (which holds the env): %v, %v; want mode 0600", st, err)
	}
	// The one place it must be: the env runc gives the container.
	if data, err := os.ReadFile(cfg); err != nil || !bytes.Contains(data, []byte("DB_PASSWORD="+value)) {
		t.Errorf("bundle config.json lacks the secret's env entry: %v", err)
	}
	if st, err := os.Stat(filepath.Join(inst, s.Instances[0].ID)); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("instance dir: %v, %v; want mode 0700", st, err)
	}

	// A new value restarts nothing; restart_service brings it in, and the
	// logs of the new instance are scrubbed too.
	file := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(file, []byte(value2), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := d.cli("secret", "set", "db-password", "--from-file", file); err != nil || !strings.Contains(out, "replaced (version 2)") {
		t.Fatalf("gantry secret set --from-file: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	if now := d.service("sec"); len(now.Instances) != 1 || now.Instances[0].ID != s.Instances[0].ID || now.Instances[0].Restarts != 0 || now.Version != s.Version {
		t.Fatalf("setting the value changed the service: %+v", now)
	}
	d.call("restart_service", map[string]any{"name": "sec"}, nil)
	s2 := d.waitFor("sec", 60*time.Second, "a new healthy instance", func(n api.ServiceStatus) bool {
		return n.Running == 1 && len(n.Instances) == 1 && n.Instances[0].ID != s.Instances[0].ID && n.Instances[0].Healthy
	})
	if data, err := os.ReadFile(filepath.Join(inst, s2.Instances[0].ID, "bundle", "config.json")); err != nil || !bytes.Contains(data, []byte("DB_PASSWORD="+value2)) {
		t.Errorf("the restarted instance lacks the new value: %v", err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		d.call("service_logs", map[string]any{"name": "sec"}, &logs)
		raw, _ := json.Marshal(logs)
		if strings.Contains(string(raw), value) {
			t.Fatalf("service_logs after the restart holds a value: %s", raw)
		}
		if strings.Contains(string(raw), "[secret:db-password]") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no [secret:db-password] in the new instance's logs: %s", raw)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A command run in the instance can print its environment: the output
	// is scrubbed like the logs.
	var ex api.ExecResult
	d.call("exec_instance", map[string]any{"instance": s2.Instances[0].ID, "command": []string{"env"}}, &ex)
	if raw, _ := json.Marshal(ex); strings.Contains(string(raw), value) || !strings.Contains(ex.Stdout, "DB_PASSWORD=[secret:db-password]") {
		t.Fatalf("exec_instance env output not scrubbed: %s", raw)
	}
	// Output cut at its 64 KiB bound in the middle of the value: the
	// value's start left at the cut is removed too.
	pad := fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x; printf %%s \"$DB_PASSWORD\"", 64<<10-7)
	d.call("exec_instance", map[string]any{"instance": s2.Instances[0].ID, "command": []string{"sh", "-c", pad}}, &ex)
	if !ex.StdoutTruncated || strings.Contains(ex.Stdout, value[:7]) || !strings.HasSuffix(ex.Stdout, "xxx") {
		t.Fatalf("exec_instance output cut inside the value: truncated %v, ends %q", ex.StdoutTruncated, ex.Stdout[max(0, len(ex.Stdout)-40):])
	}
}
