package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// maxSecretInput is the largest secret value gantry secret set reads.
const maxSecretInput = 64 << 10

// secretCmd dispatches the secret subcommands.
type secretCmd struct {
	app *app
}

var secretHelp = cmdHelp{
	usage: "secret set|ls|rm [arguments]",
	summary: `Manage secrets, the values services get as environment variables through
their spec's secrets field (secrets: {DB_PASSWORD: db-password}):
  secret set NAME [--from-file PATH] [--keep-newline] [--dry-run]
                     create or replace a secret; the value is read from stdin
                     (one trailing newline dropped) or from a file, never from
                     the command line, where other users could see it in ps
  secret ls [-o table|json]   list secrets and the services using them (never values)
  secret rm NAME [--dry-run]  delete a secret no service uses
Changing a value restarts nothing: gantry restart SERVICE picks it up.
Setting and deleting need an admin token.`,
}

func newSecretCmd(a *app) *secretCmd { return &secretCmd{app: a} }

// Run runs gantry secret.
func (c *secretCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("secret", "missing subcommand: expected set, ls or rm")
	}
	switch args[0] {
	case "set", "create":
		return c.set(ctx, args[1:])
	case "ls", "list":
		return c.ls(ctx, args[1:])
	case "rm", "delete":
		return c.rm(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		printHelp(c.app.stdout, newFlagSet("secret"), secretHelp)
		return errHelp
	}
	return usagef("secret", "unknown subcommand %q: expected set, ls or rm", args[0])
}

func (c *secretCmd) set(ctx context.Context, args []string) error {
	fs := newFlagSet("secret set")
	fromFile := fs.String("from-file", "", "read the value from this file, exactly as it is")
	keepNewline := fs.Bool("keep-newline", false, "keep the trailing newline of the value read from stdin")
	dryRun := fs.Bool("dry-run", false, "change nothing: say whether the secret would be created or replaced")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "secret set NAME [--from-file PATH] [--keep-newline] [--dry-run] < value",
		summary: "Create or replace a secret. The value is read from stdin (one trailing newline dropped unless --keep-newline) or from --from-file; never from the command line."}, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("secret set", "unexpected argument after the name: the value is never taken from the command line, where ps shows it; pipe it on stdin (printf %%s \"$VALUE\" | gantry secret set %s) or use --from-file", pos[0])
	}
	if err := exactArgs("secret set", pos, "NAME"); err != nil {
		return err
	}
	value, err := c.readValue(*fromFile, *keepNewline)
	if err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.SetSecretResult
	if err := cl.call(ctx, api.ToolSetSecret, api.SetSecretInput{Name: pos[0], Value: value, DryRun: *dryRun}, &res); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, res)
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}

// readValue reads the secret value from path, or from stdin without its
// trailing newline unless keepNewline.
func (c *secretCmd) readValue(path string, keepNewline bool) (string, error) {
	var r io.Reader
	source := "stdin"
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return "", usagef("secret set", "--from-file: %v", err)
		}
		defer f.Close()
		r, source = f, path
	} else {
		// A terminal, not any character device: /dev/null (cron, CI) is
		// one too, and there the prompt would only mislead.
		if f, ok := c.app.stdin.(*os.File); ok && isTerminal(f) {
			fmt.Fprintln(c.app.stderr, "reading the secret value from the terminal; end it with Ctrl-D (or pipe it in, or use --from-file)")
		}
		r = c.app.stdin
		if r == nil {
			r = strings.NewReader("")
		}
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSecretInput+3))
	if err != nil {
		return "", fmt.Errorf("read the secret value from %s: %w", source, err)
	}
	if path == "" && !keepNewline {
		data = bytes.TrimSuffix(data, []byte("\n"))
		data = bytes.TrimSuffix(data, []byte("\r"))
	}
	switch {
	case len(data) == 0:
		return "", usagef("secret set", "the value read from %s is empty: pipe the value in, e.g. printf %%s \"$VALUE\" | gantry secret set NAME, or use --from-file", source)
	case len(data) > maxSecretInput:
		return "", usagef("secret set", "the value read from %s is more than 64 KiB: keep only a credential in a secret", source)
	}
	return string(data), nil
}

func (c *secretCmd) ls(ctx context.Context, args []string) error {
	fs := newFlagSet("secret ls")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "secret ls [-o table|json]", summary: "List secrets: name, version, when set, and the services using each. Values are never shown."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("secret ls", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.SecretList
	if err := cl.call(ctx, api.ToolListSecrets, struct{}{}, &list); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, list)
	}
	now := time.Now()
	tw := newTable(c.app.stdout, "NAME", "VERSION", "UPDATED", "USED BY")
	for _, s := range list.Secrets {
		row(tw, s.Name, fmt.Sprint(s.Version), age(s.UpdatedAt, now), orDash(strings.Join(s.UsedBy, ",")))
	}
	return tw.Flush()
}

func (c *secretCmd) rm(ctx context.Context, args []string) error {
	fs := newFlagSet("secret rm")
	dryRun := fs.Bool("dry-run", false, "change nothing: check that the secret could be deleted")
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: "secret rm NAME [--dry-run]", summary: "Delete a secret. Refused while a service's spec uses it."}, args)
	if err != nil {
		return err
	}
	if err := exactArgs("secret rm", pos, "NAME"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.DeleteSecretResult
	if err := cl.call(ctx, api.ToolDeleteSecret, api.DeleteSecretInput{Name: pos[0], DryRun: *dryRun}, &res); err != nil {
		return err
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}
