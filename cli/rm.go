package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/gantry-dev/gantry/api"
)

// rmCmd removes a service.
type rmCmd struct {
	app *app
	fs  *flag.FlagSet
}

var rmHelp = cmdHelp{
	usage:   "rm NAME",
	summary: "Remove service NAME: its instances are stopped and its record deleted.",
}

func newRmCmd(a *app) *rmCmd {
	c := &rmCmd{app: a, fs: newFlagSet("rm")}
	a.g.register(c.fs)
	return c
}

// Run runs gantry rm.
func (c *rmCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, rmHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("rm", pos, "NAME"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RemoveResult
	if err := cl.call(ctx, api.ToolRemoveService, api.NameInput{Name: pos[0]}, &res); err != nil {
		return err
	}
	if !res.Removed {
		fmt.Fprintf(c.app.stdout, "service %s was already removed\n", res.Service)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "service %s removed (%d instances stopping)\n", res.Service, res.Stopped)
	return nil
}
