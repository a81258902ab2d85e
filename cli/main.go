// Package cli implements the gantry command line: subcommands that are MCP
// clients of a Gantry server's endpoint and import no server internals (a
// test enforces that). Server-side commands such as `gantry dev` live in
// other packages and are added from package main with Register.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// RunFunc runs a subcommand registered from outside this package.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

var (
	registryMu sync.Mutex
	registered []command
)

var commandName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Register adds a subcommand, typically a server-side one such as `dev`,
// from package main. Call it before Main. run gets the arguments after the
// subcommand name; a returned error is printed and exits 1 (2 if it wraps
// ErrUsage). Register panics on an invalid or duplicate name, which is a
// programming error.
func Register(name, summary string, run RunFunc) {
	if !commandName.MatchString(name) || run == nil {
		panic(fmt.Sprintf("cli.Register: invalid command %q", name))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, c := range append(builtins(), registered...) {
		if c.name == name {
			panic(fmt.Sprintf("cli.Register: command %q already exists", name))
		}
	}
	registered = append(registered, command{name: name, summary: summary, run: func(ctx context.Context, a *app, args []string) error {
		return run(ctx, args, a.stdout, a.stderr)
	}})
}

// builtins are the client commands, in the order help lists them.
func builtins() []command {
	return []command{
		{"deploy", "create or update a service from a spec file and wait until it runs", func(ctx context.Context, a *app, args []string) error { return newDeployCmd(a).Run(ctx, args) }},
		{"ps", "list the instances of every service", func(ctx context.Context, a *app, args []string) error { return newPSCmd(a).Run(ctx, args) }},
		{"status", "show one service: replicas, instances and recent events", func(ctx context.Context, a *app, args []string) error { return newStatusCmd(a).Run(ctx, args) }},
		{"logs", "print the end of a service's logs", func(ctx context.Context, a *app, args []string) error { return newLogsCmd(a).Run(ctx, args) }},
		{"scale", "set the number of replicas of a service", func(ctx context.Context, a *app, args []string) error { return newScaleCmd(a).Run(ctx, args) }},
		{"rm", "remove a service and stop its instances", func(ctx context.Context, a *app, args []string) error { return newRmCmd(a).Run(ctx, args) }},
		{"nodes", "list the cluster's nodes", func(ctx context.Context, a *app, args []string) error { return newNodesCmd(a).Run(ctx, args) }},
		{"image", "import, list and pull images (image import|ls|pull)", func(ctx context.Context, a *app, args []string) error { return newImageCmd(a).Run(ctx, args) }},
		{"apply", "apply a plan made by a dry run", func(ctx context.Context, a *app, args []string) error { return newApplyCmd(a).Run(ctx, args) }},
		{"history", "list the spec versions of a service", func(ctx context.Context, a *app, args []string) error { return newHistoryCmd(a).Run(ctx, args) }},
		{"rollback", "deploy an earlier spec version of a service again", func(ctx context.Context, a *app, args []string) error { return newRollbackCmd(a).Run(ctx, args) }},
		{"restart", "restart a service's instances one at a time", func(ctx context.Context, a *app, args []string) error { return newRestartCmd(a).Run(ctx, args) }},
		{"cancel", "cancel a service's rollout in progress, going back to its previous spec", func(ctx context.Context, a *app, args []string) error { return newCancelCmd(a).Run(ctx, args) }},
		{"token", "create, list and revoke API tokens (token create|ls|revoke)", func(ctx context.Context, a *app, args []string) error { return newTokenCmd(a).Run(ctx, args) }},
		{"secret", "set, list and delete secrets (secret set|ls|rm)", func(ctx context.Context, a *app, args []string) error { return newSecretCmd(a).Run(ctx, args) }},
		{"audit", "show and verify the audit log of tool calls", func(ctx context.Context, a *app, args []string) error { return newAuditCmd(a).Run(ctx, args) }},
		{"approvals", "list tool calls held by policy for approval", func(ctx context.Context, a *app, args []string) error { return newApprovalsCmd(a).Run(ctx, args) }},
		{"approve", "approve a held tool call", func(ctx context.Context, a *app, args []string) error { return newDecideCmd(a, true).Run(ctx, args) }},
		{"reject", "reject a held tool call", func(ctx context.Context, a *app, args []string) error { return newDecideCmd(a, false).Run(ctx, args) }},
		{"events", "list the cluster's events, or a service's", func(ctx context.Context, a *app, args []string) error { return newEventsCmd(a).Run(ctx, args) }},
		{"explain", "explain why a service's instances are not running", func(ctx context.Context, a *app, args []string) error { return newExplainCmd(a).Run(ctx, args) }},
		{"exec", "run a command in a running instance (if the server's policy allows it)", func(ctx context.Context, a *app, args []string) error { return newExecCmd(a).Run(ctx, args) }},
		{"cluster", "show nodes, services and instances at a glance", func(ctx context.Context, a *app, args []string) error { return newClusterCmd(a).Run(ctx, args) }},
		{"drain", "move a node's instances elsewhere and place nothing new on it", func(ctx context.Context, a *app, args []string) error { return newDrainCmd(a).Run(ctx, args) }},
		{"eligible", "mark a node eligible or not for new instances", func(ctx context.Context, a *app, args []string) error { return newEligibleCmd(a).Run(ctx, args) }},
		{"operator", "operate the servers' Raft group (operator raft peers|remove-peer|transfer-leader)", func(ctx context.Context, a *app, args []string) error { return newOperatorCmd(a).Run(ctx, args) }},
		{"snapshot", "save or restore the whole cluster state (snapshot save|restore)", func(ctx context.Context, a *app, args []string) error { return newSnapshotCmd(a).Run(ctx, args) }},
		{"mcp", "bridge stdio to the MCP endpoint, for desktop MCP clients", func(ctx context.Context, a *app, args []string) error { return newMCPCmd(a).Run(ctx, args) }},
		{"version", "print the client and server versions", func(ctx context.Context, a *app, args []string) error { return newVersionCmd(a).Run(ctx, args) }},
		{"help", "show help for gantry or one command", func(ctx context.Context, a *app, args []string) error { return newHelpCmd(a).Run(ctx, args) }},
	}
}

// commands returns the built-in and registered commands.
func commands() []command {
	registryMu.Lock()
	defer registryMu.Unlock()
	return append(builtins(), registered...)
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// ErrUsage marks errors in how a command was called (exit code 2).
var ErrUsage = errors.New("usage error")

// usageError is a mistake in the command line: which flag or argument and
// what was expected.
type usageError struct {
	cmd string
	msg string
}

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Is(target error) bool {
	return target == ErrUsage
}

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// errHelp means help was printed on request: exit 0.
var errHelp = errors.New("help requested")

// Main runs gantry with args (without the program name) and returns the
// exit code: 0 success, 1 failure, 2 usage error. Errors are printed to
// stderr here, in one place.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := newApp(stdout, stderr, os.Stdin, os.LookupEnv)
	name, err := a.run(ctx, args)
	return exitCode(name, err, stderr)
}

func exitCode(name string, err error, stderr io.Writer) int {
	prefix := "gantry"
	if name != "" {
		prefix += " " + name
	}
	if code, msg, ok := exitOf(err); ok { // gantry exec: the command's own exit code
		if msg != "" {
			fmt.Fprintf(stderr, "%s: %s\n", prefix, msg)
		}
		return code
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		if name != "" {
			fmt.Fprintf(stderr, "Run 'gantry help %s' for usage.\n", name)
		} else {
			fmt.Fprintln(stderr, "Run 'gantry help' for usage.")
		}
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: interrupted\n", prefix)
		return exitFailure
	default:
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return exitFailure
	}
}

// run parses the global flags and dispatches to a subcommand; it returns
// the subcommand's name for error messages.
func (a *app) run(ctx context.Context, args []string) (string, error) {
	fs := newFlagSet("gantry")
	a.g.register(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, errHelpFlag):
		a.printUsage(a.stdout)
		return "", errHelp
	case err != nil:
		return "", usagef("", "%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		a.printUsage(a.stderr)
		return "", usagef("", "missing command")
	}
	name := rest[0]
	cmd, ok := lookup(name)
	if !ok {
		msg := fmt.Sprintf("unknown command %q", name)
		if s := suggestCommand(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return "", usagef("", "%s", msg)
	}
	return name, cmd.run(ctx, a, rest[1:])
}

func (a *app) printUsage(w io.Writer) {
	fmt.Fprint(w, `gantry runs containerized services. Every command below is a client of the
gantry server's MCP endpoint; start a single-node server with: gantry dev

Usage: gantry [--addr URL] [--token-file FILE] <command> [arguments]

Commands:
`)
	cmds := commands()
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.name))
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, `
Global flags (also accepted after the command):
  --addr URL         the server's MCP endpoint (env GANTRY_ADDR, default %s)
  --token-file FILE  file holding the bearer token (default %s);
                     GANTRY_TOKEN, when set, is used instead of the default file
  --ca-file FILE     CA certificate (PEM) that signed an https server's certificate
                     (env GANTRY_CA_FILE)
  --consistent       on a cluster, linearizable reads through the Raft leader
                     (env GANTRY_CONSISTENT=1)

Run 'gantry help <command>' for a command's flags.
`, defaultAddr, defaultTokenFile)
}

// suggestCommand returns a command name close to name, if any.
func suggestCommand(name string) string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, name) || strings.HasPrefix(name, n) || levenshtein(n, name) <= 2 {
			return n
		}
	}
	return ""
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
