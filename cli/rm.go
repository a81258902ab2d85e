package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// rmCmd removes a service.
type rmCmd struct {
	app     *app
	fs      *flag.FlagSet
	detach  bool
	timeout time.Duration
	dryRun  bool
}

var rmHelp = cmdHelp{
	usage: "rm NAME [--dry-run] [--detach] [--timeout 2m]",
	summary: `Remove service NAME: its instances are stopped (stop signal, then the grace
period) and cleaned up, then the service is deleted. Unless --detach, gantry
waits until that is done.`,
}

func newRmCmd(a *app) *rmCmd {
	c := &rmCmd{app: a, fs: newFlagSet("rm")}
	c.fs.BoolVar(&c.detach, "detach", false, "return once the removal is accepted instead of waiting for it")
	c.fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "how long to wait for the removal")
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan and its ID for gantry apply")
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
	if c.timeout <= 0 {
		return usagef("rm", "--timeout: expected a positive duration such as 2m, got %s", c.timeout)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.RemoveResult
	if err := cl.call(ctx, api.ToolRemoveService, api.RemoveInput{Name: pos[0], DryRun: c.dryRun}, &res); err != nil {
		return err
	}
	if res.Plan != nil {
		printPlan(c.app.stdout, res.Plan)
		return nil
	}
	if !res.Removed {
		fmt.Fprintf(c.app.stdout, "service %s was already removed\n", res.Service)
		return nil
	}
	if c.detach {
		fmt.Fprintf(c.app.stdout, "service %s is being removed (%s stopping)\n", res.Service, plural(res.Stopped, "instance"))
		return nil
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for {
		var list api.ServiceList
		if err := cl.call(wctx, api.ToolListServices, struct{}{}, &list); err != nil {
			if wctx.Err() != nil {
				return fmt.Errorf("timed out after %s waiting for %s to be removed; check with: gantry status %s", c.timeout, res.Service, res.Service)
			}
			return err
		}
		if !slices.ContainsFunc(list.Services, func(s api.ServiceStatus) bool { return s.Name == res.Service }) {
			fmt.Fprintf(c.app.stdout, "service %s removed (%s stopped, %s)\n", res.Service, plural(res.Stopped, "instance"),
				time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("timed out after %s waiting for %s to be removed; check with: gantry status %s", c.timeout, res.Service, res.Service)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// plural renders "1 instance" or "3 instances".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
