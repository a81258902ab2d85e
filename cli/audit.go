package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/untrusted"
)

// auditCmd shows and verifies the audit log.
type auditCmd struct {
	app       *app
	fs        *flag.FlagSet
	limit     *int
	tool      *string
	principal *string
	verify    *bool
	output    *outputFormat
}

var auditHelp = cmdHelp{
	usage: "audit [--limit N] [--tool TOOL] [--principal P] [--verify] [-o table|json]",
	summary: `Show the newest entries of the audit log of tool calls (needs an admin token):
time, principal, tool, decision, result, latency and redacted arguments.
With --verify, also walk the hash chain from its oldest kept entry and
fail (exit 1) if any entry was changed, removed or reordered.`,
}

func newAuditCmd(a *app) *auditCmd {
	c := &auditCmd{app: a, fs: newFlagSet("audit")}
	c.limit = c.fs.Int("limit", 50, "how many of the newest entries to show (1 to 1000)")
	c.tool = c.fs.String("tool", "", "only calls of this tool, e.g. deploy")
	c.principal = c.fs.String("principal", "", "only calls by this principal: admin, a token name, or name/id")
	c.verify = c.fs.Bool("verify", false, "verify the hash chain too")
	c.output = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry audit.
func (c *auditCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, auditHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("audit", pos); err != nil {
		return err
	}
	if *c.limit < 1 || *c.limit > 1000 {
		return usagef("audit", "--limit %d: expected a number from 1 to 1000", *c.limit)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var log api.AuditLog
	if err := cl.call(ctx, api.ToolAuditLog, api.AuditLogInput{Limit: *c.limit, Tool: *c.tool, Principal: *c.principal}, &log); err != nil {
		return err
	}
	var v *api.AuditVerification
	if *c.verify {
		v = new(api.AuditVerification)
		if err := cl.call(ctx, api.ToolVerifyAudit, struct{}{}, v); err != nil {
			return err
		}
	}
	if *c.output == "json" {
		if err := printJSON(c.app.stdout, struct {
			Entries      []api.AuditEntry       `json:"entries"`
			Verification *api.AuditVerification `json:"verification,omitempty"`
		}{log.Entries, v}); err != nil {
			return err
		}
	} else {
		tw := newTable(c.app.stdout, "SEQ", "TIME", "PRINCIPAL", "TOOL", "DECISION", "RESULT", "LATENCY", "ARGUMENTS")
		for _, e := range log.Entries {
			row(tw, strconv.FormatUint(e.Seq, 10), e.Time.Local().Format("2006-01-02 15:04:05"), e.Principal, e.Tool,
				untrusted.Escape(auditDecision(e)), orDash(e.Result), fmt.Sprintf("%.1fms", e.LatencyMS), untrusted.Escape(auditArgs(e.Arguments)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if v != nil {
			switch {
			case !v.OK:
				fmt.Fprintf(c.app.stdout, "audit chain BROKEN at entry %d: %s\n", v.BrokenAt, untrusted.Escape(v.Problem))
			default:
				fmt.Fprintf(c.app.stdout, "audit chain verified: %d entries (%d to %d) intact\n", v.Checked, v.FirstSeq, v.LastSeq)
			}
		}
	}
	if v != nil && !v.OK {
		return errors.New("the audit log's hash chain is broken: an entry was changed, removed or reordered after it was written")
	}
	return nil
}

// auditDecision renders an entry's decision for the table: with the rule
// that made it, else with the reason cut to 60 bytes (a policy's reason can
// be a paragraph; -o json has it whole).
func auditDecision(e api.AuditEntry) string {
	switch {
	case e.Rule != "":
		return e.Decision + " (" + e.Rule + ")"
	case e.Reason != "":
		r := e.Reason
		if len(r) > 60 {
			cut := 57
			for cut > 0 && !utf8.RuneStart(r[cut]) {
				cut--
			}
			r = r[:cut] + "..."
		}
		return e.Decision + " (" + r + ")"
	}
	return e.Decision
}

// auditArgs renders redacted arguments compactly for the table, cut to 80 bytes.
func auditArgs(m map[string]any) string {
	if len(m) == 0 {
		return "-"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "?"
	}
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}
