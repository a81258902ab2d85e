// Command gantry is Gantry's single binary: the command-line client (package
// cli, an MCP client of the server) and the server-side commands registered
// below.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gantry-dev/gantry/cli"
	"github.com/gantry-dev/gantry/cluster"
)

func main() {
	// Server-side commands are registered here so that package cli stays a
	// pure MCP client.
	cli.Register("dev", "run a single-node cluster in this process", cluster.RunDev)
	cli.Register("server", "run a cluster server (Raft, node RPC, gossip, MCP endpoint)", cluster.RunServer)
	cli.Register("worker", "run a cluster worker: the node agent that runs instances", cluster.RunWorker)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
