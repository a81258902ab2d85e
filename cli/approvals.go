package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
)

var approvalsHelp = cmdHelp{
	usage: "approvals [--state pending|approved|rejected|used|expired|all] [-o table|json]",
	summary: `List tool calls that the server's policy held for a human's approval
(pending ones by default): ID, state, who asked, the tool and its arguments,
and the rule. Approve one with gantry approve ID, reject it with gantry reject ID.`,
}

type approvalsCmd struct{ app *app }

func newApprovalsCmd(a *app) *approvalsCmd { return &approvalsCmd{app: a} }

// Run runs gantry approvals.
func (c *approvalsCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("approvals")
	st := fs.String("state", "pending", "pending, approved, rejected, used, expired or all")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, approvalsHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("approvals", pos); err != nil {
		return err
	}
	switch *st {
	case api.ApprovalPending, api.ApprovalApproved, api.ApprovalRejected, api.ApprovalUsed, api.ApprovalExpired, "all":
	default:
		return usagef("approvals", "--state %q: expected pending, approved, rejected, used, expired or all", *st)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.ApprovalList
	if err := cl.call(ctx, api.ToolListApprovals, api.ListApprovalsInput{State: *st}, &list); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, list)
	}
	now := time.Now()
	tw := newTable(c.app.stdout, "ID", "STATE", "PRINCIPAL", "TOOL", "RULE", "AGE", "EXPIRES IN", "ARGUMENTS")
	for _, a := range list.Approvals {
		expires := "-"
		if a.State == api.ApprovalPending || a.State == api.ApprovalApproved {
			expires = a.ExpiresAt.Sub(now).Round(time.Second).String()
		}
		row(tw, a.ID, a.State, a.Principal, a.Tool, orDash(a.Rule), age(a.CreatedAt, now), expires, argsSummary(a.Arguments))
	}
	return tw.Flush()
}

// argsSummary prints arguments as k=v, short.
func argsSummary(args map[string]any) string {
	if len(args) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(args))
	for k, v := range args {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(parts)
	s := strings.Join(parts, " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// decideCmd is gantry approve and gantry reject.
type decideCmd struct {
	app     *app
	approve bool
}

func newDecideCmd(a *app, approve bool) *decideCmd { return &decideCmd{app: a, approve: approve} }

// Run runs gantry approve or gantry reject.
func (c *decideCmd) Run(ctx context.Context, args []string) error {
	name, tool, verb := "reject", api.ToolReject, "Reject"
	if c.approve {
		name, tool, verb = "approve", api.ToolApprove, "Approve"
	}
	fs := newFlagSet(name)
	reason := fs.String("reason", "", "why, for the audit log")
	dryRun := fs.Bool("dry-run", false, "decide nothing: show the held call that would be "+name+"d")
	output := c.app.outputFlag(fs)
	c.app.g.register(fs)
	pos, err := c.app.parse(fs, cmdHelp{usage: name + " ID [--reason TEXT] [--dry-run]",
		summary: verb + ` a tool call that the server's policy held (see gantry approvals); needs an admin
token other than the one that made the call.`}, args)
	if err != nil {
		return err
	}
	if err := exactArgs(name, pos, "ID"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var a api.Approval
	if err := cl.call(ctx, tool, api.DecideApprovalInput{ID: pos[0], Reason: *reason, DryRun: *dryRun}, &a); err != nil {
		return err
	}
	if *output == "json" {
		return printJSON(c.app.stdout, a)
	}
	if a.DryRun {
		args, _ := json.Marshal(a.Arguments)
		fmt.Fprintf(c.app.stdout, "dry run, nothing decided: would %s %s, the held %s call by %s (rule %s), expires %s\n  arguments: %s\n",
			name, a.ID, a.Tool, a.Principal, orDash(a.Rule), a.ExpiresAt.Local().Format(time.RFC3339), args)
		return nil
	}
	if c.approve {
		fmt.Fprintf(c.app.stdout, "approved %s: %s may now repeat the same %s call once, with approval_id %s (from the CLI: the same command with --approval %s), until %s\n",
			a.ID, a.Principal, a.Tool, a.ID, a.ID, a.ExpiresAt.Local().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(c.app.stdout, "rejected %s: the %s call by %s will not run\n", a.ID, a.Tool, a.Principal)
	return nil
}

func registerApprovalFlag(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.approval, "approval", g.approval, "run a call that policy held, once a human approved it: repeat the same command with the approval ID (see gantry approvals)")
}

// withApproval adds approval_id to a call's arguments. The server uses it
// only for a call that policy holds, and ignores it otherwise, so it can go
// with every call a command makes.
func withApproval(args any, id string) any {
	if id == "" {
		return args
	}
	m := map[string]any{}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil || json.Unmarshal(b, &m) != nil {
			return args // not an object: the server says what is wrong
		}
	}
	m[api.ApprovalIDArg] = id
	return m
}
