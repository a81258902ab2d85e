package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// Secrets opens stored secrets with the node's key. The worker resolves a
// spec's secrets through it when an instance starts, and the backend uses
// it to seal new values and to scrub values from output.
//
// The key is per data dir: a cluster of several servers must give them all
// the same secrets.key (issue 4).
type Secrets struct {
	Store *state.Store
	Key   *state.SecretKey
}

// ResolveSecrets maps each variable of refs (variable -> secret name) to
// the secret's value; it implements worker.SecretResolver.
func (s *Secrets) ResolveSecrets(ctx context.Context, refs map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(refs))
	for env, name := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := s.value(name)
		if err != nil {
			return nil, fmt.Errorf("secrets.%s: %w", env, err)
		}
		out[env] = v
	}
	return out, nil
}

// Check opens every stored secret once and reports those the key cannot
// open (say, a data dir restored without its secrets.key), whose services'
// instances would fail to start.
func (s *Secrets) Check() error {
	list, _ := s.Store.Secrets()
	var bad []string
	for _, sec := range list {
		if _, err := s.Key.Open(sec.Name, sec.Sealed); err != nil {
			bad = append(bad, sec.Name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return errdefs.WithHint(fmt.Errorf("the secrets key cannot open %d stored secret(s): %s: %w", len(bad), strings.Join(bad, ", "), errdefs.ErrInvalid),
		"restore this data dir's original secrets.key, or set these secrets again with gantry secret set NAME")
}

func (s *Secrets) value(name string) (string, error) {
	sec, err := s.Store.Secret(name)
	if err != nil {
		return "", err
	}
	v, err := s.Key.Open(name, sec.Sealed)
	if err != nil {
		return "", err
	}
	return string(v), nil
}

var _ mcp.SecretStore = (*Backend)(nil)

// errNoSecrets is returned by the secret tools of a backend built without
// a key.
var errNoSecrets = errdefs.WithHint(fmt.Errorf("this server has no secrets key: %w", errdefs.ErrUnavailable),
	"start gantry with a data dir it can write secrets.key to")

// SetSecret seals value and stores it under name; with dryRun it only says
// whether the secret would be created or replaced.
func (b *Backend) SetSecret(ctx context.Context, name string, value []byte, dryRun bool) (*api.SetSecretResult, error) {
	if b.Secrets == nil {
		return nil, errNoSecrets
	}
	if msg := spec.SecretNameProblem(name); msg != "" {
		return nil, fmt.Errorf("secret name %q %s: %w", name, msg, errdefs.ErrInvalid)
	}
	res := &api.SetSecretResult{Name: name, Action: api.SecretCreate, Version: 1, DryRun: dryRun}
	old, err := b.Store.Secret(name)
	switch {
	case err == nil:
		res.Action, res.Version = api.SecretReplace, old.Version+1
	case !errdefs.IsNotFound(err):
		return nil, err
	}
	_, users := b.Store.Secrets()
	res.UsedBy = orEmpty(users[name])
	if dryRun {
		res.Message = fmt.Sprintf("dry run: secret %s would be %sd (version %d); nothing was changed", name, res.Action, res.Version)
		return res, nil
	}
	sealed, err := b.Secrets.Key.Seal(name, value)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("secret %s %sd (version %d)", name, res.Action, res.Version)
	idx, err := b.Store.Apply(ctx, state.PutSecret{Name: name, Sealed: sealed},
		state.AppendEvent{Event: state.Event{Time: time.Now().UTC(), Type: "SecretSet", Message: msg}})
	if err != nil {
		return nil, err
	}
	if sec, err := b.Store.Secret(name); err == nil && sec.ModifyIndex == idx {
		res.Version = sec.Version
		msg = fmt.Sprintf("secret %s %sd (version %d)", name, res.Action, res.Version)
	}
	res.Message = msg
	if len(res.UsedBy) > 0 {
		res.Message += fmt.Sprintf("; used by %s: running instances keep the old value until restarted (restart_service)", strings.Join(res.UsedBy, ", "))
	}
	return res, nil
}

// ListSecrets lists the secrets, never their values.
func (b *Backend) ListSecrets(ctx context.Context) (*api.SecretList, error) {
	list, users := b.Store.Secrets()
	out := &api.SecretList{Secrets: make([]api.SecretInfo, 0, len(list))}
	for _, s := range list {
		out.Secrets = append(out.Secrets, api.SecretInfo{Name: s.Name, Version: s.Version, CreatedAt: s.CreatedAt,
			UpdatedAt: s.UpdatedAt, UsedBy: orEmpty(users[s.Name])})
	}
	return out, nil
}

// DeleteSecret deletes a secret no service references; with dryRun it
// checks that it could.
func (b *Backend) DeleteSecret(ctx context.Context, name string, dryRun bool) (*api.DeleteSecretResult, error) {
	if _, err := b.Store.Secret(name); err != nil {
		return nil, err
	}
	if dryRun {
		if _, users := b.Store.Secrets(); len(users[name]) > 0 {
			return nil, errdefs.WithHint(fmt.Errorf("secret %q is used by service(s) %v: %w", name, users[name], errdefs.ErrConflict),
				"remove it from their specs' secrets (or remove the services) first, then delete it")
		}
		return &api.DeleteSecretResult{Name: name, DryRun: true,
			Message: fmt.Sprintf("dry run: secret %s would be deleted; no service references it; nothing was changed", name)}, nil
	}
	msg := fmt.Sprintf("secret %s deleted", name)
	if _, err := b.Store.Apply(ctx, state.DeleteSecret{Name: name},
		state.AppendEvent{Event: state.Event{Time: time.Now().UTC(), Type: "SecretDeleted", Message: msg}}); err != nil {
		return nil, err
	}
	return &api.DeleteSecretResult{Name: name, Deleted: true, Message: msg}, nil
}

// checkSecretRefs fails when sp references a secret that does not exist,
// naming the field and the command that creates it. The FSM checks again
// when the spec is stored.
func (b *Backend) checkSecretRefs(sp *spec.Service) error {
	if sp == nil {
		return nil
	}
	envs := make([]string, 0, len(sp.Secrets))
	for env := range sp.Secrets {
		envs = append(envs, env)
	}
	sort.Strings(envs)
	var errs []error
	for _, env := range envs {
		if _, err := b.Store.Secret(sp.Secrets[env]); errdefs.IsNotFound(err) {
			errs = append(errs, state.MissingSecretError(env, sp.Secrets[env]))
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// SecretScrubber returns the scrubber for the values of the secrets that
// service's spec references, in its current version or any version kept
// in its history (nil, which scrubs nothing, when there are none):
// instances of an older version (during a rollout, or after a deploy that
// dropped or renamed a secret) still hold and may print those. Whatever
// returns a service's output to a client passes it through this:
// service_logs and exec_instance do.
func (b *Backend) SecretScrubber(service string) *Scrubber {
	if b.Secrets == nil {
		return nil
	}
	svc, err := b.Store.Service(service)
	if err != nil {
		return nil
	}
	names := map[string]bool{}
	for _, name := range svc.Spec.Secrets {
		names[name] = true
	}
	for _, v := range b.Store.History(service) {
		for _, name := range v.Spec.Secrets {
			names[name] = true
		}
	}
	if len(names) == 0 {
		return nil
	}
	// Instances started before the last replace print the previous value;
	// the ones this node runs say what they run with, however old.
	values := b.instanceSecretValues(service, svc)
	for name := range names {
		sec, err := b.Store.Secret(name)
		if err != nil {
			continue
		}
		for _, sealed := range [][]byte{sec.Sealed, sec.Previous} {
			if v, err := b.Secrets.Key.Open(name, sealed); err == nil && len(sealed) > 0 {
				values = append(values, map[string]string{name: string(v)})
			}
		}
	}
	return newScrubberOf(values...)
}

// instanceSecretValues reads, for each instance of service on this node,
// the values its bundle holds for its version's secret variables, keyed by
// secret name (by variable when that version's spec is no longer kept).
func (b *Backend) instanceSecretValues(service string, svc *state.Service) []map[string]string {
	if b.InstanceEnv == nil {
		return nil
	}
	insts, _ := b.Store.Instances(state.InstanceFilter{Service: service})
	var out []map[string]string
	for _, in := range insts {
		refs := svc.Spec.Secrets
		if in.SpecVersion != svc.Version {
			refs = nil
			if v, err := b.Store.SpecAt(service, in.SpecVersion); err == nil {
				refs = v.Spec.Secrets
			}
		}
		vars := make([]string, 0, len(refs))
		for env := range refs {
			vars = append(vars, env)
		}
		if refs == nil {
			// Its spec was trimmed from the history: any variable a kept
			// version maps to a secret.
			for _, v := range b.Store.History(service) {
				for env := range v.Spec.Secrets {
					vars = append(vars, env)
				}
			}
		}
		vals := b.InstanceEnv(in.ID, vars)
		if len(vals) == 0 {
			continue
		}
		m := make(map[string]string, len(vals))
		for env, v := range vals {
			name := refs[env]
			if name == "" {
				name = env
			}
			m[name] = v
		}
		out = append(out, m)
	}
	return out
}
