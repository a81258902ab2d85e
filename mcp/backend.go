// Package mcp serves Gantry's whole API as Model Context Protocol tools over
// streamable HTTP, with bearer-token authentication, and bridges stdio to
// that endpoint for desktop MCP clients. Tool handlers validate their input
// and call the cluster in-process through the interfaces below.
package mcp

import (
	"context"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/spec"
)

// Services is what the service tools need from the cluster.
type Services interface {
	Deploy(ctx context.Context, svc *spec.Service) (*api.DeployResult, error)
	ListServices(ctx context.Context) ([]api.ServiceStatus, error)
	GetService(ctx context.Context, name string) (*api.ServiceStatus, error)
	Scale(ctx context.Context, name string, replicas int) (*api.ScaleResult, error)
	Remove(ctx context.Context, name string) (*api.RemoveResult, error)
	Logs(ctx context.Context, in api.LogsInput) (*api.LogsResult, error)
	Nodes(ctx context.Context) ([]api.Node, error)
}

// Images is what the image tools need from the node's image store.
type Images interface {
	ListImages(ctx context.Context) ([]api.Image, error)
	ImportImage(ctx context.Context, path string) ([]api.Image, error)
	// PullImage pulls ref; progress (may be nil) gets bytes done of total.
	PullImage(ctx context.Context, ref string, progress func(done, total int64)) (*api.Image, error)
}
