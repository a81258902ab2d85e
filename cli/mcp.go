package cli

import (
	"context"
	"flag"

	gmcp "github.com/gantry-dev/gantry/mcp"
)

// mcpCmd bridges stdio to the MCP endpoint.
type mcpCmd struct {
	app *app
	fs  *flag.FlagSet
}

var mcpHelp = cmdHelp{
	usage: "mcp",
	summary: `Bridge an MCP client that speaks stdio (Claude Desktop, editors) to the gantry
server's HTTP endpoint, adding the bearer token. Configure the client to run:
  {"command": "gantry", "args": ["mcp"]}
with GANTRY_TOKEN (or a readable --token-file) and, for a remote server, GANTRY_ADDR
(and GANTRY_CA_FILE when a private CA signed its certificate).`,
}

func newMCPCmd(a *app) *mcpCmd {
	c := &mcpCmd{app: a, fs: newFlagSet("mcp")}
	a.g.register(c.fs)
	return c
}

// Run runs gantry mcp until stdin closes.
func (c *mcpCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, mcpHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("mcp", pos); err != nil {
		return err
	}
	if c.app.g.approval != "" {
		// The bridge relays the client's calls as they are: the client
		// puts approval_id in the arguments of the call it repeats.
		return usagef("mcp", "--approval: gantry mcp relays the client's calls unchanged; the client passes \"approval_id\" in the arguments of the call it repeats")
	}
	addr, err := c.app.endpoint()
	if err != nil {
		return err
	}
	token, err := c.app.token()
	if err != nil {
		return err
	}
	tlsConf, err := c.app.tlsConfig()
	if err != nil {
		return err
	}
	return gmcp.BridgeTLS(ctx, addr, token, tlsConf, c.app.stdin, c.app.stdout)
}
