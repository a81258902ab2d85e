package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Defaults of the global flags.
const (
	defaultAddr      = "http://127.0.0.1:7433/mcp"
	defaultTokenFile = "/var/lib/gantry/admin.token"
)

// app is what every subcommand shares: its streams and the global options.
type app struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	lookupEnv      func(string) (string, bool)
	g              globals
}

func newApp(stdout, stderr io.Writer, stdin io.Reader, lookupEnv func(string) (string, bool)) *app {
	a := &app{stdout: stdout, stderr: stderr, stdin: stdin, lookupEnv: lookupEnv}
	a.g.addr = defaultAddr
	if v, ok := lookupEnv("GANTRY_ADDR"); ok && v != "" {
		a.g.addr = v
	}
	a.g.tokenFile = defaultTokenFile
	if v, ok := lookupEnv("GANTRY_CONSISTENT"); ok && v == "1" {
		a.g.consistent = true
	}
	return a
}

// globals are the options every client command accepts.
type globals struct {
	addr         string
	tokenFile    string
	tokenFileSet bool
	caFile       string // --ca-file (tls.go)
	approval     string // --approval (approvals.go)
	consistent   bool   // --consistent: linearizable reads on a cluster
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "the server's MCP endpoint URL (env GANTRY_ADDR)")
	registerApprovalFlag(fs, g)
	fs.BoolVar(&g.consistent, "consistent", g.consistent, "on a cluster, read through the Raft leader so the answer reflects every write acknowledged before the call (env GANTRY_CONSISTENT=1); without it a server answers from its own copy, which a follower may have a moment behind")
	fs.StringVar(&g.caFile, "ca-file", "", "PEM file of the CA that signed an https server's certificate, trusted besides the system's (env GANTRY_CA_FILE)")
	fs.Func("token-file", "file holding the bearer token (default "+defaultTokenFile+"; GANTRY_TOKEN is used instead when set)", func(v string) error {
		if v == "" {
			return errors.New("expected a file name")
		}
		g.tokenFile, g.tokenFileSet = v, true
		return nil
	})
}

// errHelpFlag is what a flag set returns for -h or --help.
var errHelpFlag = flag.ErrHelp

// newFlagSet returns a flag set that reports errors instead of printing them.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// cmdHelp describes a subcommand for its -h output.
type cmdHelp struct {
	usage   string // after "gantry ", e.g. "ps [-o table|json]"
	summary string // one or more sentences
}

// parse parses args for a subcommand, allowing flags before and after
// positional arguments ("gantry logs web --tail 5"); everything after "--"
// is positional. -h prints the help to stdout and returns errHelp; a bad
// flag returns a usage error naming it.
func (a *app) parse(fs *flag.FlagSet, h cmdHelp, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(a.stdout, fs, h)
				return nil, errHelp
			}
			return nil, usagef(fs.Name(), "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printHelp(w io.Writer, fs *flag.FlagSet, h cmdHelp) {
	fmt.Fprintf(w, "Usage: gantry %s\n\n%s\n", h.usage, h.summary)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}

// outputFormat is the -o flag: table or json.
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }

func (o *outputFormat) Set(v string) error {
	switch v {
	case "table", "json":
		*o = outputFormat(v)
		return nil
	}
	return fmt.Errorf("expected table or json, got %q", v)
}

func (a *app) outputFlag(fs *flag.FlagSet) *outputFormat {
	o := outputFormat("table")
	fs.Var(&o, "o", "output format: table or json")
	return &o
}

// exactArgs checks the number of positional arguments.
func exactArgs(cmd string, pos []string, names ...string) error {
	if len(pos) == len(names) {
		return nil
	}
	if len(names) == 0 {
		return usagef(cmd, "unexpected argument %q: %s takes no arguments", pos[0], cmd)
	}
	want := strings.Join(names, " ")
	if len(pos) < len(names) {
		return usagef(cmd, "missing %s: expected %s", strings.Join(names[len(pos):], " "), want)
	}
	return usagef(cmd, "unexpected argument %q: expected only %s", pos[len(names)], want)
}
