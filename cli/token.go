package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// tokenCmd dispatches the token subcommands.
type tokenCmd struct {
	app *app
}

var tokenHelp = cmdHelp{
	usage: "token create|ls|revoke [arguments]",
	summary: `Manage API tokens (needs an admin token):
  token create --name NAME --scope read|operate|admin   create a token; it is printed once
  token ls [-o table|json]                              list tokens (never their secrets)
  token revoke ID                                       revoke a token by ID
Scopes: read lists and inspects; operate also deploys, scales, removes, pulls
and imports; admin also manages tokens and reads the audit log.`,
}

func newTokenCmd(a *app) *tokenCmd { return &tokenCmd{app: a} }

// Run runs gantry token.
func (c *tokenCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("token", "missing subcommand: expected create, ls or revoke")
	}
	switch args[0] {
	case "create":
		return c.create(ctx, args[1:])
	case "ls", "list":
		return c.ls(ctx, args[1:])
	case "revoke", "rm":
		return c.revoke(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		printHelp(c.app.stdout, newFlagSet("token"), tokenHelp)
		return errHelp
	}
	return usagef("token", "unknown subcommand %q: expected create, ls or revoke", args[0])
}

func (c *tokenCmd) create(ctx context.Context, args []string) error {
	fs := newFlagSet("token create")
	name := fs.String("name", "", "who or what the token is for, e.g. ci (required)")
	scope := fs.String("scope", "", "read, operate or admin (required)")
	dryRun := fs.Bool("dry-run", false, "create nothing: check name and scope and say what would be created (no secret is generated)")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "token create --name NAME --scope read|operate|admin",
		summary: "Create an API token. The token is printed once: the server keeps only its hash."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("token create", pos); err != nil {
		return err
	}
	if *name == "" {
		return usagef("token create", "missing --name: say who or what the token is for, e.g. --name ci")
	}
	switch *scope {
	case api.ScopeRead, api.ScopeOperate, api.ScopeAdmin:
	case "":
		return usagef("token create", "missing --scope: expected read, operate or admin")
	default:
		return usagef("token create", "--scope %q: expected read, operate or admin", *scope)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var tok api.CreatedToken
	if err := cl.call(ctx, api.ToolCreateToken, api.CreateTokenInput{Name: *name, Scope: *scope, DryRun: *dryRun}, &tok); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, tok)
	}
	if tok.DryRun {
		fmt.Fprintf(c.app.stdout, "dry run, nothing created: would create %s token %q (no secret generated)\n", tok.Scope, tok.Name)
		return nil
	}
	fmt.Fprintln(c.app.stdout, tok.Token)
	fmt.Fprintf(c.app.stderr, "created %s token %q (id %s); it is shown only once: store it now and use it with GANTRY_TOKEN or --token-file\n", tok.Scope, tok.Name, tok.ID)
	return nil
}

func (c *tokenCmd) ls(ctx context.Context, args []string) error {
	fs := newFlagSet("token ls")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "token ls [-o table|json]", summary: "List API tokens: ID, name, scope, creator, age and whether revoked."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("token ls", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.TokenList
	if err := cl.call(ctx, api.ToolListTokens, struct{}{}, &list); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, list)
	}
	now := time.Now()
	tw := newTable(c.app.stdout, "ID", "NAME", "SCOPE", "CREATED BY", "AGE", "STATUS")
	for _, t := range list.Tokens {
		status := "active"
		if t.Revoked {
			status = "revoked"
			if t.RevokedBy != "" {
				status += " by " + t.RevokedBy
			}
		}
		row(tw, t.ID, t.Name, t.Scope, orDash(t.CreatedBy), age(t.CreatedAt, now), status)
	}
	return tw.Flush()
}

func (c *tokenCmd) revoke(ctx context.Context, args []string) error {
	fs := newFlagSet("token revoke")
	dryRun := fs.Bool("dry-run", false, "revoke nothing: show the token that would be revoked")
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "token revoke ID [--dry-run]", summary: "Revoke the API token with this ID (see gantry token ls); requests carrying it are refused from then on."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("token revoke", pos, "ID"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RevokeTokenResult
	if err := cl.call(ctx, api.ToolRevokeToken, api.RevokeTokenInput{ID: strings.TrimPrefix(pos[0], "gty_"), DryRun: *dryRun}, &res); err != nil {
		var te *toolError
		if errors.As(err, &te) && strings.Contains(te.text, "not found") {
			var list api.TokenList
			if lerr := cl.call(ctx, api.ToolListTokens, struct{}{}, &list); lerr == nil {
				if hint := tokenNameHint(pos[0], list.Tokens); hint != "" {
					return fmt.Errorf("%w\n%s", err, hint)
				}
			}
		}
		return err
	}
	if res.DryRun && res.Token != nil && !res.AlreadyRevoked {
		t := res.Token
		fmt.Fprintf(c.app.stdout, "dry run, nothing revoked: would revoke token %s (%s, scope %s, created by %s %s)\n",
			t.ID, t.Name, t.Scope, orDash(t.CreatedBy), t.CreatedAt.Local().Format(time.RFC3339))
		return nil
	}
	if res.AlreadyRevoked {
		fmt.Fprintf(c.app.stdout, "token %s (%s) was already revoked\n", res.ID, res.Name)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "token %s (%s) revoked\n", res.ID, res.Name)
	return nil
}

// tokenNameHint says which IDs carry name, for a revoke given a token's
// name instead of its ID; "" when no active token has that name.
func tokenNameHint(name string, tokens []api.TokenInfo) string {
	var ids []string
	for _, t := range tokens {
		if t.Name == name && !t.Revoked {
			ids = append(ids, t.ID)
		}
	}
	switch len(ids) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("%q is the name of token %s; revoke takes the ID: gantry token revoke %s", name, ids[0], ids[0])
	}
	return fmt.Sprintf("%q is the name of %d tokens (%s); revoke takes an ID: gantry token revoke ID", name, len(ids), strings.Join(ids, ", "))
}
