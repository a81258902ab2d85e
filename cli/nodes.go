package cli

import (
	"context"
	"flag"
	"strconv"

	"github.com/gantry-dev/gantry/api"
)

// nodesCmd lists the cluster's nodes.
type nodesCmd struct {
	app    *app
	fs     *flag.FlagSet
	output *outputFormat
}

var nodesHelp = cmdHelp{
	usage:   "nodes [-o table|json]",
	summary: "List the cluster's nodes with status, address, capacity, instance count and runtime.",
}

func newNodesCmd(a *app) *nodesCmd {
	c := &nodesCmd{app: a, fs: newFlagSet("nodes")}
	c.output = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry nodes.
func (c *nodesCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, nodesHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("nodes", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.NodeList
	if err := cl.call(ctx, api.ToolListNodes, struct{}{}, &list); err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(c.app.stdout, list)
	}
	tw := newTable(c.app.stdout, "NAME", "ID", "STATUS", "ADDR", "CPU", "MEMORY", "INSTANCES", "RUNTIME")
	for _, n := range list.Nodes {
		cpu := strconv.FormatFloat(float64(n.CPU)/1000, 'f', -1, 64)
		row(tw, n.Name, n.ID, n.Status, orDash(n.Addr), cpu, humanBytes(n.Memory), strconv.Itoa(n.Instances), orDash(n.Runtime))
	}
	return tw.Flush()
}
