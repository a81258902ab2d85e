package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// SecretResolver opens the secrets a spec references.
type SecretResolver interface {
	// ResolveSecrets maps each environment variable of refs (variable ->
	// secret name) to the secret's value.
	ResolveSecrets(ctx context.Context, refs map[string]string) (map[string]string, error)
}

// withSecrets returns sp with its secrets' values added to a copy of its env,
// for the bundle only: the values are read when an instance starts, so a
// changed value reaches the instances started after the change.
func (w *Worker) withSecrets(ctx context.Context, sp *spec.Service) (spec.Service, error) {
	out := *sp
	if len(sp.Secrets) == 0 {
		return out, nil
	}
	if w.cfg.Secrets == nil {
		return out, fmt.Errorf("the spec references secrets but this worker has no secret store: %w", errdefs.ErrInvalid)
	}
	vals, err := w.cfg.Secrets.ResolveSecrets(ctx, sp.Secrets)
	if err != nil {
		return out, fmt.Errorf("secrets: %w", err)
	}
	out.Env = maps.Clone(sp.Env)
	if out.Env == nil {
		out.Env = make(map[string]string, len(vals))
	}
	for k := range sp.Secrets {
		v, ok := vals[k]
		if !ok {
			return out, fmt.Errorf("secrets.%s: no value for secret %q: %w", k, sp.Secrets[k], errdefs.ErrNotFound)
		}
		out.Env[k] = v
	}
	return out, nil
}

// checkOutput matches the output an exec health check's failure carries.
var checkOutput = regexp.MustCompile(`(?s)(exec check: exit code -?[0-9]+): ".*`)

// withholdCheckOutput drops an exec health check's output from msg when the
// instance has secrets: the check may print one, and msg goes into the
// replicated state (the instance's message and its Unhealthy event), where
// no value may go. Quoting and the 200-byte cut would defeat scrubbing, so
// the output is dropped whole.
func withholdCheckOutput(msg string, hasSecrets bool) string {
	if !hasSecrets {
		return msg
	}
	return checkOutput.ReplaceAllString(msg, "$1 (output withheld: the service has secrets; see service_logs)")
}

// SecretEnv returns the values that the bundle of instance id, as it was
// started, holds for the environment variables vars (nil when this node
// has no such bundle). These are the values the container actually runs
// with, which may be older than anything the secret store still keeps (a
// secret replaced twice since the instance started), so output scrubbing
// can use them.
func (w *Worker) SecretEnv(id string, vars []string) map[string]string {
	if len(vars) == 0 || id == "" || filepath.Base(id) != id || strings.HasPrefix(id, ".") {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(w.cfg.Dir, id, "bundle", "config.json"))
	if err != nil {
		return nil
	}
	var cfg struct {
		Process *struct {
			Env []string `json:"env"`
		} `json:"process"`
	}
	if json.Unmarshal(data, &cfg) != nil || cfg.Process == nil {
		return nil
	}
	want := make(map[string]bool, len(vars))
	for _, v := range vars {
		want[v] = true
	}
	out := map[string]string{}
	for _, kv := range cfg.Process.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && want[k] {
			out[k] = v
		}
	}
	return out
}
