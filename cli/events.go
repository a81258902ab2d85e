package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/untrusted"
)

// eventsCmd lists events.
type eventsCmd struct {
	app      *app
	fs       *flag.FlagSet
	instance string
	typ      string
	since    string
	limit    int
	out      *outputFormat
}

var eventsHelp = cmdHelp{
	usage: "events [NAME] [--instance ID] [--type TYPE] [--since 10m|TIME] [--limit N] [-o table|json]",
	summary: `List the cluster's events, oldest first, or those of service NAME: deploys,
scheduling, starts, exits with code and reason, health changes, placement failures.`,
}

func newEventsCmd(a *app) *eventsCmd {
	c := &eventsCmd{app: a, fs: newFlagSet("events")}
	c.fs.StringVar(&c.instance, "instance", "", "only events of this instance `ID`")
	c.fs.StringVar(&c.typ, "type", "", "only events of this `TYPE`, e.g. Exited or Pending")
	c.fs.StringVar(&c.since, "since", "", "only newer events: a duration such as 10m or an RFC 3339 time")
	c.fs.IntVar(&c.limit, "limit", 100, "the newest events to show (1 to 1000)")
	c.out = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry events.
func (c *eventsCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, eventsHelp, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("events", "unexpected argument %q: expected at most a service NAME", pos[1])
	}
	if c.limit < 1 || c.limit > 1000 {
		return usagef("events", "--limit: expected a number from 1 to 1000, got %d", c.limit)
	}
	in := api.EventsInput{Instance: c.instance, Type: c.typ, Since: c.since, Limit: c.limit}
	if len(pos) == 1 {
		in.Service = pos[0]
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.EventList
	if err := cl.call(ctx, api.ToolListEvents, in, &res); err != nil {
		return err
	}
	if *c.out == "json" {
		return printJSON(c.app.stdout, res)
	}
	tty := isTerminal(c.app.stdout)
	tw := tabwriter.NewWriter(c.app.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tSERVICE\tINSTANCE\tMESSAGE")
	for _, e := range res.Events {
		msg := e.Message
		if tty {
			msg = untrusted.Escape(msg)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05"), e.Type, orDash(e.Service), orDash(e.Instance), msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.Truncated {
		fmt.Fprintf(c.app.stderr, "(only the newest %d events are shown: narrow the filter or raise --limit)\n", c.limit)
	}
	if len(res.Events) == 0 && c.typ != "" {
		// Perhaps a misspelt type: say which types the other filters match.
		in.Type, in.Limit = "", 1000
		var all api.EventList
		if err := cl.call(ctx, api.ToolListEvents, in, &all); err == nil {
			fmt.Fprintln(c.app.stderr, eventTypesHint(c.typ, all.Events))
		}
	}
	return nil
}

// eventTypesHint says that no event has type typ, and which types the
// events matching the other filters have.
func eventTypesHint(typ string, events []api.EventRecord) string {
	var types []string
	for _, e := range events {
		if !slices.Contains(types, e.Type) {
			types = append(types, e.Type)
		}
	}
	if len(types) == 0 {
		return fmt.Sprintf("(no events of type %q, and none of any type with these filters)", typ)
	}
	slices.Sort(types)
	return fmt.Sprintf("(no events of type %q; the types with these filters are: %s)", typ, strings.Join(types, ", "))
}

// explainCmd explains why instances are not running.
type explainCmd struct {
	app *app
	fs  *flag.FlagSet
	out *outputFormat
}

var explainHelp = cmdHelp{
	usage: "explain NAME|ID [-o table|json]",
	summary: `Explain in plain language why the instances of service NAME, or instance ID,
are pending or not running, with a hint for each problem.`,
}

func newExplainCmd(a *app) *explainCmd {
	c := &explainCmd{app: a, fs: newFlagSet("explain")}
	c.out = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry explain.
func (c *explainCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, explainHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("explain", pos, "NAME|ID"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.Explanation
	if err := cl.call(ctx, api.ToolExplain, api.ExplainInput{ID: pos[0]}, &res); err != nil {
		return err
	}
	if *c.out == "json" {
		return printJSON(c.app.stdout, res)
	}
	w := c.app.stdout
	fmt.Fprintln(w, res.Summary)
	for _, f := range res.Findings {
		mark := " "
		if f.Problem {
			mark = "!"
		}
		who := ""
		if f.Instance != "" {
			who = f.Instance + " (" + f.State + "): "
		}
		fmt.Fprintf(w, "%s %s%s\n", mark, who, f.Reason)
		if f.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", f.Hint)
		}
	}
	return nil
}

// clusterCmd shows the cluster's status.
type clusterCmd struct {
	app *app
	fs  *flag.FlagSet
	out *outputFormat
}

var clusterHelp = cmdHelp{
	usage:   "cluster [-o table|json]",
	summary: "Show the cluster at a glance: nodes with their eligibility, services, replicas and instances by state.",
}

func newClusterCmd(a *app) *clusterCmd {
	c := &clusterCmd{app: a, fs: newFlagSet("cluster")}
	c.out = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry cluster.
func (c *clusterCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, clusterHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("cluster", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.ClusterStatus
	if err := cl.call(ctx, api.ToolClusterStatus, struct{}{}, &res); err != nil {
		return err
	}
	if *c.out == "json" {
		return printJSON(c.app.stdout, res)
	}
	return printCluster(c.app.stdout, res)
}

// printCluster prints cluster_status for people.
func printCluster(w io.Writer, res api.ClusterStatus) error {
	fmt.Fprintf(w, "%s, %d/%d replicas running, state index %d\n", plural(res.Services, "service"), res.Running, res.Desired, res.Index)
	var states []string
	for s, n := range res.Instances {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	if len(states) > 0 {
		fmt.Fprintf(w, "instances: %s\n", strings.Join(slices.Sorted(slices.Values(states)), ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tSCHEDULING\tINSTANCES")
	for _, n := range res.Nodes {
		sched := "eligible"
		switch {
		case n.Draining:
			sched = "drained"
		case !n.Eligible:
			sched = "ineligible"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", n.ID, n.Status, sched, n.Instances)
	}
	return tw.Flush()
}

// nodeSchedCmd is gantry drain NODE and gantry eligible NODE true|false.
type nodeSchedCmd struct {
	app    *app
	fs     *flag.FlagSet
	name   string
	dryRun bool
}

var drainHelp = cmdHelp{
	usage: "drain NODE [--dry-run]",
	summary: `Drain NODE: place no new instances on it and stop its instances so they are
placed on other nodes (they stay pending while no node can take them).
Undo with gantry eligible NODE true.`,
}

var eligibleHelp = cmdHelp{
	usage:   "eligible NODE true|false [--dry-run]",
	summary: "Mark NODE eligible (true) or ineligible (false) for new instances; running instances stay.",
}

func newDrainCmd(a *app) *nodeSchedCmd    { return newNodeSchedCmd(a, "drain") }
func newEligibleCmd(a *app) *nodeSchedCmd { return newNodeSchedCmd(a, "eligible") }

func newNodeSchedCmd(a *app, name string) *nodeSchedCmd {
	c := &nodeSchedCmd{app: a, fs: newFlagSet(name), name: name}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan (instances to stop, where they would be placed) and its ID for gantry apply")
	a.g.register(c.fs)
	return c
}

// Run runs gantry drain or gantry eligible.
func (c *nodeSchedCmd) Run(ctx context.Context, args []string) error {
	var (
		tool string
		in   any
	)
	if c.name == "drain" {
		pos, err := c.app.parse(c.fs, drainHelp, args)
		if err != nil {
			return err
		}
		if err := exactArgs("drain", pos, "NODE"); err != nil {
			return err
		}
		tool, in = api.ToolDrainNode, api.DrainNodeInput{Node: pos[0], DryRun: c.dryRun}
	} else {
		pos, err := c.app.parse(c.fs, eligibleHelp, args)
		if err != nil {
			return err
		}
		if err := exactArgs("eligible", pos, "NODE", "true|false"); err != nil {
			return err
		}
		ok, err := strconv.ParseBool(pos[1])
		if err != nil {
			return usagef("eligible", "expected true or false after the node, got %q", pos[1])
		}
		tool, in = api.ToolSetNodeEligibility, api.NodeEligibilityInput{Node: pos[0], Eligible: ok, DryRun: c.dryRun}
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.NodeSchedulingResult
	if err := cl.call(ctx, tool, in, &res); err != nil {
		return err
	}
	if res.Plan != nil {
		printPlan(c.app.stdout, res.Plan)
		return nil
	}
	fmt.Fprintln(c.app.stdout, res.Message)
	return nil
}
