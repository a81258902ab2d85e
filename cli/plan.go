package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// printPlan writes a dry run's plan and how to apply it.
func printPlan(w io.Writer, p *api.Plan) {
	fmt.Fprintf(w, "plan %s (nothing changed yet)\n%s\n", p.ID, p.Summary)
	if len(p.Changes) > 0 {
		fmt.Fprintf(w, "changed fields: %s\n", strings.Join(p.Changes, ", "))
	}
	list := func(verb string, insts []api.PlannedInstance) {
		for _, in := range insts {
			id := in.ID
			if id == "" {
				id = "(new)"
			}
			if in.Service != "" {
				fmt.Fprintf(w, "  %-8s %s slot %d  %s", verb, in.Service, in.Slot, id)
			} else {
				fmt.Fprintf(w, "  %-8s slot %d  %s", verb, in.Slot, id)
			}
			if in.Node != "" {
				fmt.Fprintf(w, " on %s", in.Node)
			}
			if in.FromVersion != 0 && in.ToVersion != 0 {
				fmt.Fprintf(w, "  v%d -> v%d", in.FromVersion, in.ToVersion)
			}
			fmt.Fprintln(w)
		}
	}
	list("create", p.Create)
	list("replace", p.Replace)
	list("stop", p.Stop)
	if p.Action == api.ActionNone {
		return
	}
	what := "the service is"
	if p.Node != "" {
		what = "node " + p.Node + " and its instances are"
	}
	fmt.Fprintf(w, "apply it with: gantry apply %s (before %s, while %s unchanged)\n", p.ID, p.ExpiresAt.Local().Format("15:04:05"), what)
}

// applyCmd applies a plan.
type applyCmd struct {
	app *app
	fs  *flag.FlagSet
}

var applyHelp = cmdHelp{
	usage: "apply PLAN_ID",
	summary: `Apply a plan made by a dry run (--dry-run on gantry deploy, scale, rm, restart
or rollback). It is refused, with what changed, if the service
changed since the plan was made: then make a new plan.`,
}

func newApplyCmd(a *app) *applyCmd {
	c := &applyCmd{app: a, fs: newFlagSet("apply")}
	a.g.register(c.fs)
	return c
}

// Run runs gantry apply.
func (c *applyCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, applyHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("apply", pos, "PLAN_ID"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.ApplyPlanResult
	if err := cl.call(ctx, api.ToolApplyPlan, api.ApplyPlanInput{PlanID: pos[0]}, &res); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "applied %s: %s\n", res.PlanID, res.Message)
	if res.Action != api.ActionNone && res.Action != api.ActionRemove {
		fmt.Fprintf(c.app.stdout, "follow the rollout with: gantry status %s\n", res.Service)
	}
	return nil
}

// historyCmd lists a service's spec versions.
type historyCmd struct {
	app *app
	fs  *flag.FlagSet
	out *outputFormat
}

var historyHelp = cmdHelp{
	usage:   "history NAME [-o table|json]",
	summary: "List the spec versions of service NAME (the last 20) with what changed in each.",
}

func newHistoryCmd(a *app) *historyCmd {
	c := &historyCmd{app: a, fs: newFlagSet("history")}
	c.out = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry history.
func (c *historyCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, historyHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("history", pos, "NAME"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var h api.History
	if err := cl.call(ctx, api.ToolServiceHistory, api.NameInput{Name: pos[0]}, &h); err != nil {
		return err
	}
	if *c.out == "json" {
		return printJSON(c.app.stdout, h)
	}
	tw := tabwriter.NewWriter(c.app.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIME\tCAUSE\tIMAGE\tCHANGES")
	for _, v := range h.Versions {
		mark := ""
		if v.Version == h.Current {
			mark = " (current)"
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%s\t%s\t%s\n", v.Version, mark, v.Time.Local().Format("2006-01-02 15:04:05"),
			v.Cause, v.Image, strings.Join(v.Changes, ","))
	}
	return tw.Flush()
}

// changeCmd is gantry restart and gantry rollback: a change that can be
// planned with --dry-run.
type changeCmd struct {
	app     *app
	fs      *flag.FlagSet
	name    string
	dryRun  bool
	wait    bool
	timeout time.Duration
}

var restartHelp = cmdHelp{
	usage: "restart NAME [--dry-run] [--wait [--timeout 5m]]",
	summary: `Restart the instances of service NAME without changing its spec: they are
replaced one at a time, each once the others are ready.`,
}

var rollbackHelp = cmdHelp{
	usage: "rollback NAME VERSION [--dry-run] [--wait [--timeout 5m]]",
	summary: `Deploy spec VERSION of service NAME again, as a new version (see gantry
history); the replica count stays as it is.`,
}

func newRestartCmd(a *app) *changeCmd  { return newChangeCmd(a, "restart") }
func newRollbackCmd(a *app) *changeCmd { return newChangeCmd(a, "rollback") }

func newChangeCmd(a *app, name string) *changeCmd {
	c := &changeCmd{app: a, fs: newFlagSet(name), name: name}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan and its ID for gantry apply")
	c.fs.BoolVar(&c.wait, "wait", false, "wait until every instance runs the new version and is ready, printing progress")
	c.fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "with --wait: how long to wait (at most 1h)")
	a.g.register(c.fs)
	return c
}

// Run runs gantry restart or gantry rollback.
func (c *changeCmd) Run(ctx context.Context, args []string) error {
	var (
		tool string
		in   any
	)
	if c.name == "restart" {
		pos, err := c.app.parse(c.fs, restartHelp, args)
		if err != nil {
			return err
		}
		if err := exactArgs("restart", pos, "NAME"); err != nil {
			return err
		}
		tool, in = api.ToolRestartService, api.RestartInput{Name: pos[0], DryRun: c.dryRun, Wait: c.waits(), Timeout: c.waitTimeout()}
	} else {
		pos, err := c.app.parse(c.fs, rollbackHelp, args)
		if err != nil {
			return err
		}
		if err := exactArgs("rollback", pos, "NAME", "VERSION"); err != nil {
			return err
		}
		v, err := strconv.Atoi(pos[1])
		if err != nil || v < 1 {
			return usagef("rollback", "VERSION: expected a version number such as 1 (see gantry history %s), got %q", pos[0], pos[1])
		}
		tool, in = api.ToolRollbackService, api.RollbackInput{Name: pos[0], Version: v, DryRun: c.dryRun, Wait: c.waits(), Timeout: c.waitTimeout()}
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.ChangeResult
	var mu sync.Mutex
	done := false
	err = cl.callWithProgress(ctx, tool, in, &res, func(n *progressParams) {
		mu.Lock()
		defer mu.Unlock()
		if n.Message != "" && !done {
			fmt.Fprintln(c.app.stdout, n.Message)
		}
	})
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		return err
	}
	if res.Plan != nil {
		printPlan(c.app.stdout, res.Plan)
		return nil
	}
	r := res.Rollout
	if !c.waits() || r == nil {
		fmt.Fprintf(c.app.stdout, "%s (now version %d)\nfollow the rollout with: gantry status %s\n", res.Message, res.Version, res.Service)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "%s (now version %d)\n", res.Message, res.Version)
	switch r.Outcome {
	case api.RolloutReady:
		fmt.Fprintf(c.app.stdout, "service %s: %d/%d instances running at version %d (%s)\n", res.Service, r.Ready, r.Desired, r.Version, r.Elapsed)
		return nil
	case api.RolloutFailed:
		return fmt.Errorf("%s\nsee its output with: gantry logs %s --instance %s", r.Message, res.Service, r.Instance)
	case api.RolloutTimedOut:
		return fmt.Errorf("%s; check with: gantry status %s", r.Message, res.Service)
	default:
		return fmt.Errorf("rollout of %s version %d stopped: %s", res.Service, r.Version, r.Message)
	}
}

// waits reports whether the call waits for its rollout (never a dry run).
func (c *changeCmd) waits() bool { return c.wait && !c.dryRun }

// waitTimeout is the timeout sent with a waiting call ("" otherwise).
func (c *changeCmd) waitTimeout() string {
	if !c.waits() {
		return ""
	}
	return c.timeout.String()
}

// plan runs a dry-run deploy of the file's text and prints the plan.
func (c *deployCmd) plan(ctx context.Context, cl *client, data []byte) error {
	var res api.DeployResult
	if err := cl.call(ctx, api.ToolDeploy, api.DeployInput{SpecYAML: string(data), DryRun: true}, &res); err != nil {
		return err
	}
	if res.Plan == nil {
		return fmt.Errorf("the server returned no plan for the dry run (is it older than this gantry?); nothing was deployed")
	}
	printPlan(c.app.stdout, res.Plan)
	return nil
}
