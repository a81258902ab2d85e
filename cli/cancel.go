package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/gantry-dev/gantry/api"
)

// cancelCmd is gantry cancel: it cancels a service's rollout in progress.
type cancelCmd struct {
	app    *app
	fs     *flag.FlagSet
	dryRun bool
}

var cancelHelp = cmdHelp{
	usage: "cancel NAME [--dry-run]",
	summary: `Cancel the rollout in progress of service NAME (a deploy whose new version
is not yet running and ready everywhere, e.g. one made with --detach or by
someone else): the previous spec is deployed again as a new version, or, when
the deploy created the service, the service is removed. It fails when no
rollout is in progress.`,
}

func newCancelCmd(a *app) *cancelCmd {
	c := &cancelCmd{app: a, fs: newFlagSet("cancel")}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan and its ID for gantry apply")
	a.g.register(c.fs)
	return c
}

// Run runs gantry cancel.
func (c *cancelCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, cancelHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("cancel", pos, "NAME"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.CancelDeployResult
	if err := cl.call(ctx, api.ToolCancelDeploy, api.CancelDeployInput{Name: pos[0], DryRun: c.dryRun}, &res); err != nil {
		return err
	}
	if res.Plan != nil {
		printPlan(c.app.stdout, res.Plan)
		return nil
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	if res.Action == api.ActionRemove {
		fmt.Fprintf(c.app.stdout, "follow the removal with: gantry status %s\n", res.Service)
	} else {
		fmt.Fprintf(c.app.stdout, "follow the rollout with: gantry status %s\n", res.Service)
	}
	return nil
}
