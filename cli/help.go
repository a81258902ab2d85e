package cli

import (
	"context"
)

// helpCmd prints help.
type helpCmd struct {
	app *app
}

func newHelpCmd(a *app) *helpCmd { return &helpCmd{app: a} }

// Run prints the overview, or a command's help by running it with -h.
func (c *helpCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		c.app.printUsage(c.app.stdout)
		return nil
	}
	cmd, ok := lookup(args[0])
	if !ok {
		return usagef("help", "unknown command %q: run 'gantry help' for the list", args[0])
	}
	if cmd.name == "help" {
		c.app.printUsage(c.app.stdout)
		return nil
	}
	sub := append(append([]string{}, args[1:]...), "-h")
	return cmd.run(ctx, c.app, sub)
}
