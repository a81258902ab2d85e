package cli

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"time"
)

// versionCmd prints versions.
type versionCmd struct {
	app *app
	fs  *flag.FlagSet
}

var versionHelp = cmdHelp{
	usage:   "version",
	summary: "Print the version of this gantry binary and, when reachable, of the server.",
}

func newVersionCmd(a *app) *versionCmd {
	c := &versionCmd{app: a, fs: newFlagSet("version")}
	a.g.register(c.fs)
	return c
}

// Run runs gantry version. An unreachable server is reported, not an error.
func (c *versionCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, versionHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("version", pos); err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "client: gantry %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := c.app.connect(ctx)
	if err != nil {
		fmt.Fprintf(c.app.stdout, "server: unknown (%v)\n", err)
		return nil
	}
	defer cl.Close()
	info := cl.session.InitializeResult()
	if info == nil || info.ServerInfo == nil {
		fmt.Fprintf(c.app.stdout, "server: unknown version at %s\n", cl.addr)
		return nil
	}
	fmt.Fprintf(c.app.stdout, "server: %s %s at %s\n", info.ServerInfo.Name, info.ServerInfo.Version, cl.addr)
	return nil
}
