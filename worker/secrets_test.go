package worker

import (
	"context"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
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
