package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/gantry-dev/gantry/api"
)

// logsCmd prints the end of a service's logs.
type logsCmd struct {
	app      *app
	fs       *flag.FlagSet
	tail     int
	instance string
}

var logsHelp = cmdHelp{
	usage:   "logs NAME [--tail N] [--instance ID]",
	summary: "Print the last lines of the log of every instance of service NAME, or of one instance.\nWith several instances, each line is prefixed with its instance ID.",
}

func newLogsCmd(a *app) *logsCmd {
	c := &logsCmd{app: a, fs: newFlagSet("logs")}
	c.fs.IntVar(&c.tail, "tail", 100, "lines from the end of each instance's log (1 to 5000)")
	c.fs.StringVar(&c.instance, "instance", "", "show only this instance (an ID from gantry status NAME)")
	a.g.register(c.fs)
	return c
}

// Run runs gantry logs.
func (c *logsCmd) Run(ctx context.Context, args []string) error {
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
	if err := cl.call(ctx, api.ToolServiceLogs, api.LogsInput{Name: pos[0], Instance: c.instance, Tail: c.tail}, &res); err != nil {
		return err
	}
	prefix := len(res.Instances) > 1
	for _, b := range res.Instances {
		for _, l := range b.Lines {
			if prefix {
				fmt.Fprintf(c.app.stdout, "%s | %s\n", b.Instance, l)
			} else {
				fmt.Fprintln(c.app.stdout, l)
			}
		}
	}
	if len(res.Instances) == 0 {
		fmt.Fprintf(c.app.stderr, "service %s has no instances\n", pos[0])
	}
	if res.Truncated {
		fmt.Fprintln(c.app.stderr, "(output was cut to the server's size limit: use --tail or --instance to see less)")
	}
	return nil
}
