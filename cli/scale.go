package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/gantry-dev/gantry/api"
)

// scaleCmd sets a service's replica count.
type scaleCmd struct {
	app    *app
	fs     *flag.FlagSet
	dryRun bool
}

var scaleHelp = cmdHelp{
	usage:   "scale NAME REPLICAS [--dry-run]",
	summary: "Set the number of replicas (0 to 1000) of service NAME. Scaling down stops instances.",
}

func newScaleCmd(a *app) *scaleCmd {
	c := &scaleCmd{app: a, fs: newFlagSet("scale")}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan and its ID for gantry apply")
	a.g.register(c.fs)
	return c
}

// Run runs gantry scale.
func (c *scaleCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, scaleHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("scale", pos, "NAME", "REPLICAS"); err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil || n < 0 || n > 1000 {
		return usagef("scale", "REPLICAS: expected a whole number from 0 to 1000, got %q", pos[1])
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.ScaleResult
	if err := cl.call(ctx, api.ToolScaleService, api.ScaleInput{Name: pos[0], Replicas: n, DryRun: c.dryRun}, &res); err != nil {
		return err
	}
	if res.Plan != nil {
		printPlan(c.app.stdout, res.Plan)
		return nil
	}
	if res.Previous == res.Desired {
		fmt.Fprintf(c.app.stdout, "service %s already has %d replicas\n", res.Service, res.Desired)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "service %s scaled from %d to %d replicas\n", res.Service, res.Previous, res.Desired)
	return nil
}
