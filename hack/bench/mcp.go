package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/cluster"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// mcpOptions configure the tool-call latency measurement (-mcp).
type mcpOptions struct {
	services int
	calls    int
}

// runMCP measures MCP tool-call latency as a client sees it: the real
// server (authentication with an API token looked up in state, scope check,
// audit through the batching writer) over HTTP on loopback, backed by a real
// Raft state store on disk holding o.services services with one running
// instance each. No containers run: the records are written straight
// through the store, as a node agent would report them. It needs no root.
func runMCP(ctx context.Context, o mcpOptions, stdout, stderr io.Writer) (err error) {
	if o.services < 1 || o.calls < 100 {
		return fmt.Errorf("-services %d, -calls %d: want at least 1 service and 100 calls (for a p99): %w", o.services, o.calls, flag.ErrHelp)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "gantry-bench-mcp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st, err := state.Open(ctx, state.Config{DataDir: dir, NodeID: "bench", Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	fillStart := time.Now()
	if err := fillStore(ctx, st, o.services); err != nil {
		return err
	}
	fill := time.Since(fillStart)

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred later, so run first)
	defer cancel()
	aw := cluster.NewAuditWriter(st, log, 0)
	wg.Add(1)
	go func() { defer wg.Done(); _ = aw.Run(ctx) }()
	auth := cluster.NewAuth(st, "bench-bootstrap-token-not-used-0123456789abcdef", aw)
	tok, err := auth.CreateToken(mcp.WithPrincipal(ctx, mcp.Principal{Name: "bench"}), "bench", mcp.ScopeOperate)
	if err != nil {
		return err
	}
	be := &cluster.Backend{Store: st}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Ops: be, Resources: be,
		Auth: auth, Audit: aw, Access: auth, Logger: log, Version: "bench"})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	wg.Add(1)
	go func() { defer wg.Done(); _ = mcp.Serve(ctx, ln, mux) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := sdk.NewClient(&sdk.Implementation{Name: "gantry-bench", Version: "1"}, nil)
	cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: "http://" + ln.Addr().String() + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{token: tok.Token, next: tr}}}, nil)
	if err != nil {
		return err
	}
	defer cs.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	name := func() string { return fmt.Sprintf("svc-%04d", rng.IntN(o.services)) }
	type measurement struct {
		label string
		calls int
		call  func() (string, any)
	}
	ms := []measurement{
		{"`get_service` (read, one service)", o.calls, func() (string, any) { return api.ToolGetService, api.NameInput{Name: name()} }},
		{fmt.Sprintf("`list_services` (read, all %d)", o.services), max(o.calls/10, 100), func() (string, any) { return api.ToolListServices, struct{}{} }},
		{"`deploy` with `dry_run` (plan of an env change)", o.calls, func() (string, any) {
			n := name()
			return api.ToolDeploy, api.DeployInput{DryRun: true, Spec: map[string]any{"name": n, "image": "127.0.0.1:5000/bench/app:1",
				"replicas": 1, "env": map[string]any{"RELEASE": fmt.Sprint(rng.IntN(1 << 30))}}}
		}},
	}
	var rows []string
	for _, m := range ms {
		for range 50 { // warm-up: connections, caches, JIT-free but allocator-warm
			tool, args := m.call()
			if err := callOK(ctx, cs, tool, args); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, 0, m.calls)
		for range m.calls {
			tool, args := m.call()
			start := time.Now()
			if err := callOK(ctx, cs, tool, args); err != nil {
				return err
			}
			lat = append(lat, time.Since(start))
		}
		rows = append(rows, fmt.Sprintf("| %s | %d | %s | %s | %s | %s |", m.label, len(lat),
			us(percentile(lat, 50)), us(percentile(lat, 90)), us(percentile(lat, 99)), us(mean(lat))))
	}
	if err := aw.Flush(ctx); err != nil {
		return fmt.Errorf("flush audit: %w", err)
	}
	v := st.VerifyAudit()
	if !v.OK {
		return fmt.Errorf("audit chain broken after the bench: %s", v.Problem)
	}

	fmt.Fprintf(stdout, "### MCP tool-call latency, %d services\n\n", o.services)
	fmt.Fprintf(stdout, "One MCP client session over streamable HTTP on loopback, calls one at a time; an operate-scoped API token "+
		"(looked up in state on every request), scope check and audit on (%d calls audited, chain verified). "+
		"Store: Raft + go-memdb on disk, %d services with one running instance each, written in %s. GOMAXPROCS %d, load average %s.\n\n",
		v.Checked, o.services, fill.Round(time.Millisecond), runtime.GOMAXPROCS(0), loadAvg())
	fmt.Fprintln(stdout, "| tool call | calls | p50 | p90 | p99 | mean |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	fmt.Fprintln(stdout, strings.Join(rows, "\n"))
	return nil
}

// fillStore writes n services, each with one running instance on one node,
// 100 services per Raft entry.
func fillStore(ctx context.Context, st *state.Store, n int) error {
	now := time.Now().UTC()
	if _, err := st.Apply(ctx, state.PutNode{Node: state.Node{ID: "bench", Name: "bench", Addr: "127.0.0.1", Status: "ready",
		CPU: 64000, Memory: 256 << 30, JoinedAt: now, SeenAt: now}}); err != nil {
		return err
	}
	const batch = 100
	for i := 0; i < n; i += batch {
		var ops []state.Op
		for j := i; j < min(i+batch, n); j++ {
			name := fmt.Sprintf("svc-%04d", j)
			ops = append(ops, state.PutService{Service: state.Service{Name: name, Spec: spec.Service{Name: name,
				Image: "127.0.0.1:5000/bench/app:1", Replicas: 1, Command: []string{"/bin/sleep", "infinity"},
				Env: map[string]string{"RELEASE": "0"}, Labels: map[string]string{"team": fmt.Sprintf("t%d", j%10)}}}})
			ops = append(ops, state.PutInstance{Instance: state.Instance{ID: fmt.Sprintf("%s-0-%06x", name, j), Service: name, Slot: 0,
				SpecVersion: 1, Node: "bench", Desired: state.DesiredRun,
				InstanceStatus: state.InstanceStatus{State: state.StateRunning, Healthy: true, IP: fmt.Sprintf("10.%d.%d.%d", 100+j/65536, j/256%256, j%256),
					PID: 10000 + j, StartedAt: now}}})
		}
		if _, err := st.Apply(ctx, ops...); err != nil {
			return fmt.Errorf("fill the store: %w", err)
		}
	}
	return nil
}

func callOK(ctx context.Context, cs *sdk.ClientSession, tool string, args any) error {
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return fmt.Errorf("%s: %w", tool, err)
	}
	if res.IsError {
		var b strings.Builder
		for _, c := range res.Content {
			if t, ok := c.(*sdk.TextContent); ok {
				b.WriteString(t.Text)
			}
		}
		return fmt.Errorf("%s: tool error: %s", tool, b.String())
	}
	return nil
}

// percentile is the nearest-rank p-th percentile.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func mean(xs []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range xs {
		sum += x
	}
	return sum / time.Duration(max(len(xs), 1))
}

func us(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
