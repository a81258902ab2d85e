package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// psCmd lists the instances of every service.
type psCmd struct {
	app    *app
	fs     *flag.FlagSet
	output *outputFormat
}

var psHelp = cmdHelp{
	usage:   "ps [-o table|json]",
	summary: "List every instance of every service: SERVICE INSTANCE NODE STATE HEALTH RESTARTS IP PORTS AGE.\nWith -o json, print the list_services result as JSON.",
}

func newPSCmd(a *app) *psCmd {
	c := &psCmd{app: a, fs: newFlagSet("ps")}
	c.output = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry ps.
func (c *psCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, psHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("ps", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.ServiceList
	if err := cl.call(ctx, api.ToolListServices, api.ListServicesInput{}, &list); err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(c.app.stdout, list)
	}
	now := time.Now()
	tw := newTable(c.app.stdout, "SERVICE", "INSTANCE", "NODE", "STATE", "HEALTH", "RESTARTS", "IP", "PORTS", "AGE")
	for _, svc := range list.Services {
		if len(svc.Instances) == 0 {
			row(tw, svc.Name, "-", "-", fmt.Sprintf("(no instances, %d desired)", svc.Desired), "-", "-", "-", "-", "-")
			continue
		}
		for _, in := range svc.Instances {
			row(tw, svc.Name, in.ID, orDash(in.Node), in.State, health(svc, in), strconv.Itoa(in.Restarts), orDash(in.IP), ports(in.Ports), startedAge(in, now))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(list.Services) == 0 {
		fmt.Fprintln(c.app.stderr, "no services yet: deploy one with: gantry deploy -f FILE")
	}
	return nil
}

// health renders an instance's health: "-" when the service has no check
// or the instance is not running, "starting" until the first check passes.
func health(svc api.ServiceStatus, in api.InstanceStatus) string {
	switch {
	case svc.Check == "" || in.State != "running":
		return "-"
	case in.Healthy:
		return "healthy"
	case in.StartedAt != nil && in.Restarts == 0 && in.Message == "":
		return "starting"
	}
	return "unhealthy"
}

func startedAge(in api.InstanceStatus, now time.Time) string {
	if in.StartedAt == nil {
		return "-"
	}
	return age(*in.StartedAt, now)
}
