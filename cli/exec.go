package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/untrusted"
)

// exitTimedOut is gantry exec's exit code when the command timed out, as
// timeout(1) does.
const exitTimedOut = 124

// execCmd runs a command in an instance.
type execCmd struct {
	app     *app
	fs      *flag.FlagSet
	timeout time.Duration
	dryRun  bool
}

var execHelp = cmdHelp{
	usage: "exec [--timeout 10s] [--dry-run] INSTANCE -- COMMAND [ARG...]",
	summary: "Run COMMAND in the running instance INSTANCE (an ID from gantry status NAME), as the\n" +
		"container's own process runs (same user, environment and capabilities), and print its\n" +
		"stdout and stderr. There is no shell: each word after -- is one argument (use\n" +
		"sh -c '...' for a shell). gantry exec exits with the command's exit code, or 124 when\n" +
		"the command ran past --timeout and was killed. Output is at most 64 KiB per stream;\n" +
		"on a terminal, control characters are shown escaped.\n\n" +
		"The server refuses exec unless its policy allows it (gantry dev --policy FILE with a\n" +
		"rule such as: when: tool == \"exec_instance\" && args.command[0] in [\"cat\", \"ls\"],\n" +
		"effect: allow); the refusal says how.",
}

func newExecCmd(a *app) *execCmd {
	c := &execCmd{app: a, fs: newFlagSet("exec")}
	c.fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "kill the command after this long (at most 60s)")
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "run nothing: show where the command would run and what the policy decides")
	a.g.register(c.fs)
	return c
}

// Run runs gantry exec.
func (c *execCmd) Run(ctx context.Context, args []string) error {
	i := slices.Index(args, "--")
	var command []string
	if i >= 0 {
		args, command = args[:i], args[i+1:]
	}
	pos, err := c.app.parse(c.fs, execHelp, args)
	if err != nil {
		return err
	}
	if i < 0 {
		if len(pos) > 1 {
			return usagef("exec", "put -- between the instance and the command, e.g. gantry exec %s -- %s", pos[0], strings.Join(pos[1:], " "))
		}
		return usagef("exec", "missing command: gantry exec INSTANCE -- COMMAND [ARG...], e.g. gantry exec web-0-3f9a2c -- cat /etc/hostname")
	}
	if err := exactArgs("exec", pos, "INSTANCE"); err != nil {
		return err
	}
	if len(command) == 0 {
		return usagef("exec", "missing command after --: e.g. gantry exec %s -- cat /etc/hostname", pos[0])
	}
	if c.timeout <= 0 || c.timeout > 60*time.Second {
		return usagef("exec", "--timeout: expected a duration above 0 and at most 60s, got %s", c.timeout)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var res api.ExecResult
	in := api.ExecInput{Instance: pos[0], Command: command, Timeout: c.timeout.String(), DryRun: c.dryRun}
	if err := cl.call(ctx, api.ToolExecInstance, in, &res); err != nil {
		return err
	}
	if res.DryRun {
		fmt.Fprintf(c.app.stdout, "dry run: nothing was run. %q would run in instance %s of service %s", res.Command, res.Instance, res.Service)
		if res.Node != "" {
			fmt.Fprintf(c.app.stdout, " on node %s", res.Node)
		}
		fmt.Fprintln(c.app.stdout)
		if res.Policy != "" {
			fmt.Fprintf(c.app.stdout, "policy: %s\n", res.Policy)
		}
		return nil
	}
	writeOutput(c.app.stdout, res.Stdout)
	writeOutput(c.app.stderr, res.Stderr)
	if res.StdoutTruncated || res.StderrTruncated {
		fmt.Fprintln(c.app.stderr, "gantry exec: (output was cut to the server's limit of 64 KiB per stream)")
	}
	if res.TimedOut {
		return &commandExit{code: exitTimedOut, msg: fmt.Sprintf("%q timed out after %s and was killed (raise --timeout, at most 60s)", res.Command[0], c.timeout)}
	}
	if res.ExitCode != 0 {
		code := res.ExitCode
		if code < 0 || code > 255 {
			code = exitFailure
		}
		return &commandExit{code: code}
	}
	return nil
}

// writeOutput writes a command's output as it is, except on a terminal,
// where control characters are shown escaped (line breaks kept).
func writeOutput(w io.Writer, s string) {
	if s == "" {
		return
	}
	if !isTerminal(w) {
		_, _ = io.WriteString(w, s)
		return
	}
	lines := strings.SplitAfter(s, "\n")
	for _, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		_, _ = io.WriteString(w, untrusted.Escape(body))
		if nl {
			_, _ = io.WriteString(w, "\n")
		}
	}
}

// commandExit ends gantry with a command's exit code, printing msg (when
// set) to stderr.
type commandExit struct {
	code int
	msg  string
}

func (e *commandExit) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("the command exited with code %d", e.code)
}

// exitOf returns the exit code a command asked for and the message to
// print, if err is a *commandExit.
func exitOf(err error) (code int, msg string, ok bool) {
	ce, ok := err.(*commandExit)
	if !ok {
		return 0, "", false
	}
	return ce.code, ce.msg, true
}
