package api

import "time"

// Tool names of the secret tools.
const (
	ToolSetSecret    = "set_secret"
	ToolListSecrets  = "list_secrets"
	ToolDeleteSecret = "delete_secret"
)

// Secret actions, as dry runs and results report them.
const (
	SecretCreate  = "create"
	SecretReplace = "replace"
	SecretDelete  = "delete"
)

// SetSecretInput is the input of set_secret.
type SetSecretInput struct {
	Name   string `json:"name" jsonschema:"the secret's name: a DNS label such as db-password; a service's spec references it under secrets"`
	Value  string `json:"value" jsonschema:"the secret value (4 bytes to 64 KiB); it is encrypted before it is stored and is never returned, logged or audited"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and say whether the secret would be created or replaced"`
}

// SetSecretResult is the output of set_secret. It never holds the value.
type SetSecretResult struct {
	Name    string   `json:"name"`
	Action  string   `json:"action" jsonschema:"create or replace"`
	Version uint64   `json:"version" jsonschema:"the secret's version after the call (1 for a new secret); on a dry run, the version it would get"`
	UsedBy  []string `json:"used_by" jsonschema:"services whose spec references the secret; they keep the old value until restarted (restart_service)"`
	DryRun  bool     `json:"dry_run,omitempty" jsonschema:"true: nothing was changed"`
	Message string   `json:"message"`
}

// SecretInfo describes a secret without its value.
type SecretInfo struct {
	Name      string    `json:"name"`
	Version   uint64    `json:"version" jsonschema:"how many values the secret has had"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at" jsonschema:"when the value was last set"`
	UsedBy    []string  `json:"used_by" jsonschema:"services whose spec references the secret"`
}

// SecretList is the output of list_secrets.
type SecretList struct {
	Secrets []SecretInfo `json:"secrets" jsonschema:"sorted by name; values are never listed"`
}

// DeleteSecretInput is the input of delete_secret.
type DeleteSecretInput struct {
	Name   string `json:"name" jsonschema:"the secret to delete; refused while a service's spec references it"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and say whether the delete would succeed"`
}

// DeleteSecretResult is the output of delete_secret.
type DeleteSecretResult struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted" jsonschema:"true: the secret is gone (false on a dry run)"`
	DryRun  bool   `json:"dry_run,omitempty" jsonschema:"true: nothing was changed"`
	Message string `json:"message"`
}
