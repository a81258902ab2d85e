package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// SecretStore is what the secret tools need from the cluster. Values go in
// and never come out: no method returns one.
type SecretStore interface {
	// SetSecret creates or replaces a secret; with dryRun it only says which.
	SetSecret(ctx context.Context, name string, value []byte, dryRun bool) (*api.SetSecretResult, error)
	ListSecrets(ctx context.Context) (*api.SecretList, error)
	// DeleteSecret deletes an unreferenced secret; with dryRun it only
	// checks that it could.
	DeleteSecret(ctx context.Context, name string, dryRun bool) (*api.DeleteSecretResult, error)
}

// maxSecretValue is the largest secret value set_secret accepts.
const maxSecretValue = 64 << 10

// MinSecretValue is the shortest secret value set_secret accepts, and the
// shortest that output scrubbing replaces: a shorter one occurs in
// ordinary text, where replacing it would mangle the output and reveal
// the value by where it was replaced.
const MinSecretValue = 4

// registerSecretTools adds set_secret, list_secrets and delete_secret when
// cfg has Secrets.
func registerSecretTools(s *Server, cfg Config) {
	if cfg.Secrets == nil {
		return
	}
	sec := cfg.Secrets
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolSetSecret,
		Description: "Create a secret or replace its value. Services receive it as an environment variable by naming it in their spec: secrets: {DB_PASSWORD: db-password}. " +
			"The value (4 bytes to 64 KiB) is encrypted before it is stored and is never returned by any tool, and it is replaced by [secret:<name>] in service logs and command output. " +
			"Replacing a value overwrites the old one for good and does not restart anything: running instances keep the old value until restarted (restart_service). " +
			"Setting the same value again is harmless. With dry_run true nothing changes and the result says whether the secret would be created or replaced. Needs scope admin.",
		Annotations: mutating("Set secret", true, false),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, in api.SetSecretInput) (api.SetSecretResult, string, error) {
		if err := validateSecretName(in.Name); err != nil {
			return api.SetSecretResult{}, "", err
		}
		switch {
		case in.Value == "":
			return api.SetSecretResult{}, "", invalidf("missing value: pass the secret's value (%d bytes to 64 KiB)", MinSecretValue)
		case len(in.Value) < MinSecretValue:
			return api.SetSecretResult{}, "", invalidf("value is %d byte(s), shorter than %d: a value that short occurs in ordinary text, so it cannot be kept out of logs and command output; use a longer value", len(in.Value), MinSecretValue)
		case len(in.Value) > maxSecretValue:
			return api.SetSecretResult{}, "", invalidf("value is %d bytes, more than 64 KiB: keep only a credential in a secret, not whole files", len(in.Value))
		case strings.ContainsRune(in.Value, 0):
			return api.SetSecretResult{}, "", invalidf("value contains a NUL byte, which an environment variable cannot hold")
		}
		res, err := sec.SetSecret(ctx, in.Name, []byte(in.Value), in.DryRun)
		if err != nil {
			return api.SetSecretResult{}, "", describe(api.ToolSetSecret, err, errorHint{notFound: "retry"})
		}
		if res.UsedBy == nil {
			res.UsedBy = []string{}
		}
		return *res, res.Message, nil
	})
	addTool(s, &sdk.Tool{
		Name:        api.ToolListSecrets,
		Description: "List the secrets by name with their version, when they were created and last set, and the services whose spec references each. Values are never shown.",
		Annotations: readOnly("List secrets"),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.SecretList, string, error) {
		res, err := sec.ListSecrets(ctx)
		if err != nil {
			return api.SecretList{}, "", describe(api.ToolListSecrets, err, errorHint{notFound: "retry"})
		}
		if res == nil || res.Secrets == nil {
			res = &api.SecretList{Secrets: []api.SecretInfo{}}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d secret%s", len(res.Secrets), plural(len(res.Secrets)))
		for i, x := range res.Secrets {
			if x.UsedBy == nil {
				res.Secrets[i].UsedBy = []string{}
			}
			fmt.Fprintf(&b, "\n%s version %d, set %s", x.Name, x.Version, x.UpdatedAt.UTC().Format(time.RFC3339))
			if len(x.UsedBy) > 0 {
				fmt.Fprintf(&b, ", used by %s", strings.Join(x.UsedBy, ", "))
			}
		}
		return *res, b.String(), nil
	})
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolDeleteSecret,
		Description: "Delete a secret for good. Refused while any service's spec references it (the error names them): remove it from their specs first. " +
			"With dry_run true nothing changes and the result says whether the delete would succeed. Needs scope admin.",
		Annotations: mutating("Delete secret", true, false),
	}), func(ctx context.Context, _ *sdk.CallToolRequest, in api.DeleteSecretInput) (api.DeleteSecretResult, string, error) {
		if err := validateSecretName(in.Name); err != nil {
			return api.DeleteSecretResult{}, "", err
		}
		res, err := sec.DeleteSecret(ctx, in.Name, in.DryRun)
		if err != nil {
			return api.DeleteSecretResult{}, "", describe(api.ToolDeleteSecret, err, errorHint{notFound: "list secrets with list_secrets"})
		}
		return *res, res.Message, nil
	})
}

// validateSecretName checks that name is a secret name: a DNS label.
func validateSecretName(name string) error {
	const rule = "a secret name is a DNS label: 1 to 63 lowercase letters, digits and '-', starting with a letter, e.g. \"db-password\""
	switch {
	case name == "":
		return invalidf("missing secret name: pass name, e.g. \"db-password\" (list secrets with list_secrets)")
	case strings.HasPrefix(name, "-"):
		return invalidf("invalid secret name %s: it looks like a command-line flag; %s", quote(name), rule)
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
		return invalidf("invalid secret name %s: it looks like a path; %s", quote(name), rule)
	case len(name) > 63 || !dnsLabel.MatchString(name) || name[0] < 'a' || name[0] > 'z':
		return invalidf("invalid secret name %s: %s", quote(name), rule)
	}
	return nil
}
