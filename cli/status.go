package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// statusCmd shows one service.
type statusCmd struct {
	app    *app
	fs     *flag.FlagSet
	output *outputFormat
	events int
}

var statusHelp = cmdHelp{
	usage:   "status NAME [-o table|json]",
	summary: "Show one service: image, version, running and desired replicas, every instance and the recent events.\nWith -o json, print the get_service result (name, desired, running, instances with id, state,\nrestarts, exit_code, reason, ip, ports, ...) as JSON.",
}

func newStatusCmd(a *app) *statusCmd {
	c := &statusCmd{app: a, fs: newFlagSet("status")}
	c.output = a.outputFlag(c.fs)
	c.fs.IntVar(&c.events, "events", 10, "how many recent events to show")
	a.g.register(c.fs)
	return c
}

// Run runs gantry status.
func (c *statusCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, statusHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("status", pos, "NAME"); err != nil {
		return err
	}
	if c.events < 0 {
		return usagef("status", "--events: expected a number of events of 0 or more, got %d", c.events)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var st api.ServiceStatus
	if err := cl.call(ctx, api.ToolGetService, api.NameInput{Name: pos[0]}, &st); err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(c.app.stdout, st)
	}
	w := c.app.stdout
	now := time.Now()
	tw := newTable(w, "Service:", st.Name)
	row(tw, "Image:", st.Image)
	row(tw, "Version:", strconv.Itoa(st.Version))
	row(tw, "Replicas:", fmt.Sprintf("%d/%d running", st.Running, st.Desired))
	if !st.CreatedAt.IsZero() {
		row(tw, "Created:", fmt.Sprintf("%s (%s ago)", st.CreatedAt.Local().Format(time.DateTime), age(st.CreatedAt, now)))
	}
	if !st.UpdatedAt.IsZero() {
		row(tw, "Updated:", fmt.Sprintf("%s (%s ago)", st.UpdatedAt.Local().Format(time.DateTime), age(st.UpdatedAt, now)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(st.Instances) == 0 {
		fmt.Fprintln(w, "No instances.")
	} else {
		tw = newTable(w, "INSTANCE", "NODE", "VERSION", "STATE", "HEALTH", "RESTARTS", "LAST EXIT", "IP", "PORTS", "AGE")
		for _, in := range st.Instances {
			row(tw, in.ID, orDash(in.Node), strconv.Itoa(in.SpecVersion), in.State, health(st, in), strconv.Itoa(in.Restarts), lastExit(in), orDash(in.IP), ports(in.Ports), startedAge(in, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, in := range st.Instances {
			if in.Message != "" {
				fmt.Fprintf(w, "  %s: %s\n", in.ID, in.Message)
			}
		}
	}

	events := st.Events
	if len(events) > c.events {
		events = events[len(events)-c.events:]
	}
	if len(events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		tw = newTable(w, "AGE", "TYPE", "INSTANCE", "MESSAGE")
		for _, e := range events {
			row(tw, age(e.Time, now), e.Type, orDash(e.Instance), e.Message)
		}
		return tw.Flush()
	}
	return nil
}

// lastExit renders the last exit of an instance: "137 (OOMKilled)".
func lastExit(in api.InstanceStatus) string {
	if in.ExitCode == nil {
		return "-"
	}
	s := strconv.Itoa(*in.ExitCode)
	switch {
	case in.Reason != "" && in.Signal != "":
		s += fmt.Sprintf(" (%s, %s)", in.Reason, in.Signal)
	case in.Reason != "":
		s += " (" + in.Reason + ")"
	case in.Signal != "":
		s += " (" + in.Signal + ")"
	}
	return s
}
