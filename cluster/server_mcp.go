package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// mcpParts are what a server's MCP endpoint is built from.
type mcpParts struct {
	store     *state.Store
	backend   *Backend
	exec      mcp.Executor
	audit     *AuditWriter
	token     string
	secretKey *state.SecretKey
	operator  mcp.Operator
}

// mcpEndpoint is an MCP server with its listener and mux, ready to serve.
type mcpEndpoint struct {
	srv      *mcp.Server
	ln       net.Listener
	mux      *http.ServeMux
	endpoint string
}

// newMCPEndpoint builds the MCP endpoint of a cluster server from the same
// flags and helpers as gantry dev (auth, OAuth, policy, TLS); exec_instance
// commands run on the instances' workers (clusterExec).
func newMCPEndpoint(ctx context.Context, o *DevOptions, p mcpParts, log *slog.Logger) (*mcpEndpoint, error) {
	auth := NewAuth(p.store, p.token, p.audit)
	authn, oauth, err := withOAuth(ctx, o, auth, log)
	if err != nil {
		return nil, err
	}
	pol, err := o.Policy.compile()
	if err != nil {
		return nil, err
	}
	if pol != nil {
		log.Info("policy in force", "file", o.Policy.File, "mode", string(pol.Mode()), "rules", pol.RuleCount(), "confirm_destructive", o.Policy.ConfirmDestructive)
	}
	be := p.backend
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Ops: be, Token: p.token, Logger: log, Version: Version,
		Auth: authn, Audit: p.audit, Access: auth, Resources: be, Policy: pol, Oversight: be, ConfirmDestructive: o.Policy.ConfirmDestructive, Secrets: be,
		ApprovalKey: p.secretKey.Derive("mcp approval arguments"), Rollouts: be, Exec: p.exec, Operator: p.operator})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("listen on %s: %w", o.Listen, err), "is another gantry running? pick another address with --listen")
	}
	ln, scheme, err := listenerTLS(o, ln, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	mux.Handle("/mcp/", srv.Handler())
	mountOAuth(mux, oauth)
	return &mcpEndpoint{srv: srv, ln: ln, mux: mux, endpoint: scheme + "://" + ln.Addr().String() + "/mcp"}, nil
}
