package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/health"
	"github.com/gantry-dev/gantry/spec"
)

type fixedSecrets map[string]string // secret name -> value

func (f fixedSecrets) ResolveSecrets(_ context.Context, refs map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for env, name := range refs {
		if v, ok := f[name]; ok {
			out[env] = v
		}
	}
	return out, nil
}

// The bundle's env gets the secrets' values; the stored spec is untouched.
func TestWithSecrets(t *testing.T) {
	sp := &spec.Service{Name: "web", Env: map[string]string{"A": "b"}, Secrets: map[string]string{"DB_PASSWORD": "db-password"}}
	w := &Worker{cfg: Config{Secrets: fixedSecrets{"db-password": "hunter2"}}}
	got, err := w.withSecrets(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Env["DB_PASSWORD"] != "hunter2" || got.Env["A"] != "b" {
		t.Errorf("env = %v", got.Env)
	}
	if _, leaked := sp.Env["DB_PASSWORD"]; leaked {
		t.Error("withSecrets changed the caller's spec")
	}
	sp.Secrets["API_KEY"] = "api-key"
	if _, err := w.withSecrets(t.Context(), sp); !errdefs.IsNotFound(err) {
		t.Errorf("missing secret: %v, want not found", err)
	}
	if _, err := (&Worker{}).withSecrets(t.Context(), sp); !errdefs.IsInvalid(err) {
		t.Errorf("no resolver: %v, want invalid", err)
	}
	plain := &spec.Service{Name: "web"}
	if got, err := (&Worker{}).withSecrets(t.Context(), plain); err != nil || got.Env != nil {
		t.Errorf("spec without secrets: %v, %v", got.Env, err)
	}
}

type printingCheck struct{ out string }

func (p printingCheck) Exec(context.Context, string, []string, time.Duration) (int, []byte, error) {
	return 1, []byte(p.out), nil
}

// A failing exec check that prints a secret does not carry it into the
// instance's message, however the health package quotes or cuts it.
func TestWithholdCheckOutput(t *testing.T) {
	const value = `s3cr"et\value`
	h := &spec.Health{Exec: &spec.ExecCheck{Command: []string{"sh"}}}
	for _, out := range []string{"pw=" + value + "\n", strings.Repeat("x", 190) + value} {
		err := health.Probe(t.Context(), h, health.Target{ID: "x", Exec: printingCheck{out}})
		if err == nil {
			t.Fatal("the check passed")
		}
		msg := fmt.Sprintf("health check failed %d times in a row: %v", 3, err)
		got := withholdCheckOutput(msg, true)
		if strings.Contains(got, "s3cr") || !strings.Contains(got, "exit code 1") || !strings.Contains(got, "withheld") {
			t.Errorf("withheld message = %q", got)
		}
		if withholdCheckOutput(msg, false) != msg {
			t.Error("a service without secrets lost its check output")
		}
	}
}

// SecretEnv reads the values an instance was started with from its bundle,
// only for the variables asked, and nothing for unknown or path-like IDs.
func TestSecretEnv(t *testing.T) {
	dir := t.TempDir()
	w := &Worker{cfg: Config{Dir: dir}}
	bundle := filepath.Join(dir, "web-0-abc123", "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(specs.Spec{Process: &specs.Process{Env: []string{"PATH=/bin", "DB_PASSWORD=first=value", "OTHER=x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	got := w.SecretEnv("web-0-abc123", []string{"DB_PASSWORD", "MISSING"})
	if len(got) != 1 || got["DB_PASSWORD"] != "first=value" {
		t.Errorf("SecretEnv = %v, want only DB_PASSWORD=first=value", got)
	}
	for _, id := range []string{"nosuch-0-000000", "../web-0-abc123", "", "."} {
		if got := w.SecretEnv(id, []string{"DB_PASSWORD"}); got != nil {
			t.Errorf("SecretEnv(%q) = %v, want nil", id, got)
		}
	}
	if got := w.SecretEnv("web-0-abc123", nil); got != nil {
		t.Errorf("SecretEnv with no variables = %v", got)
	}
}
