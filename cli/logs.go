package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/untrusted"
)

// logsCmd prints the end of a service's logs.
type logsCmd struct {
	app      *app
	fs       *flag.FlagSet
	tail     int
	instance string
	since    string
	grep     string
}

var logsHelp = cmdHelp{
	usage:   "logs NAME [--tail N] [--instance ID] [--since 10m|TIME] [--grep TEXT|/RE/]",
	summary: "Print the last lines of the log of every instance of service NAME, or of one instance.\nWith several instances, each line is prefixed with its instance ID.\nOn a terminal, control characters (escape sequences) are shown escaped.",
}

func newLogsCmd(a *app) *logsCmd {
	c := &logsCmd{app: a, fs: newFlagSet("logs")}
	c.fs.IntVar(&c.tail, "tail", 100, "lines from the end of each instance's log (1 to 5000)")
	c.fs.StringVar(&c.instance, "instance", "", "show only this instance (an ID from gantry status NAME)")
	c.fs.StringVar(&c.since, "since", "", "leave out logs last written before this: a duration such as 10m or an RFC 3339 time")
	c.fs.StringVar(&c.grep, "grep", "", "only lines containing `TEXT`, or matching /RE/ (an RE2 regular expression)")
	a.g.register(c.fs)
	return c
}

// Run runs gantry logs.
func (c *logsCmd) Run(ctx context.Context, args []string) error {
	// docker logs -f and kubectl logs -f follow; say so rather than
	// "flag provided but not defined".
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-f" || a == "--f" || a == "-follow" || a == "--follow" {
			return usagef("logs", "%s: gantry logs does not follow a log, it prints what is there; run it again with --since (e.g. --since 30s), or: watch -n 2 gantry logs NAME --tail 20", a)
		}
	}
	pos, err := c.app.parse(c.fs, logsHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("logs", pos, "NAME"); err != nil {
		return err
	}
	if c.tail < 1 || c.tail > 5000 {
		return usagef("logs", "--tail: expected a number of lines from 1 to 5000, got %d", c.tail)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.LogsResult
	if err := cl.call(ctx, api.ToolServiceLogs, api.LogsInput{Name: pos[0], Instance: c.instance, Tail: c.tail, Since: c.since, Grep: c.grep}, &res); err != nil {
		return err
	}
	prefix := len(res.Instances) > 1
	tty := isTerminal(c.app.stdout)
	for _, b := range res.Instances {
		for _, l := range b.Lines {
			if tty {
				l = untrusted.Escape(l)
			}
			if prefix {
				fmt.Fprintf(c.app.stdout, "%s | %s\n", b.Instance, l)
			} else {
				fmt.Fprintln(c.app.stdout, l)
			}
		}
	}
	if len(res.Instances) == 0 && c.since == "" {
		fmt.Fprintf(c.app.stderr, "service %s has no instances\n", pos[0])
	}
	if res.Note != "" {
		fmt.Fprintf(c.app.stderr, "(%s)\n", res.Note)
	}
	if res.Truncated {
		fmt.Fprintln(c.app.stderr, "(output was cut to the server's size limit: use --tail or --instance to see less)")
	}
	return nil
}
