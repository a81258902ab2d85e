package cli

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"

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
	pos, err := c.app.parse(c.fs, scaleHelp, hideNegatives(args))
	if err != nil {
		return err
	}
	for i, p := range pos {
		pos[i] = strings.TrimPrefix(p, negativeMark)
	}
	if err := exactArgs("scale", pos, "NAME", "REPLICAS"); err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[1])
	if err != nil {
		return usagef("scale", "REPLICAS: expected a whole number from 0 to 1000, got %q", pos[1])
	}
	if n < 0 || n > 1000 {
		return usagef("scale", "replicas must be between 0 and 1000, got %d", n)
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

// negativeMark prefixes a negative number while flags are parsed, so that
// "gantry scale web -1" reads -1 as the replica count (and refuses it as
// out of range) instead of as an unknown flag -1.
const negativeMark = "\x00neg"

var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

func hideNegatives(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if negativeNumber.MatchString(a) {
			a = negativeMark + a
		}
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
	}
	return out
}
