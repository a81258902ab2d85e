package mcp_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

// newRolloutEnv is newEnv with the rollout tools enabled.
func newRolloutEnv(t *testing.T) (*env, *mcp.Server) {
	t.Helper()
	e := &env{cluster: mcptest.New(), logs: &syncBuffer{}}
	srv, err := mcp.NewServer(mcp.Config{Services: e.cluster, Images: e.cluster, Rollouts: e.cluster, Token: testToken,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.http.Close)
	t.Cleanup(srv.CloseSessions)
	return e, srv
}

// progressLog collects progress notifications.
type progressLog struct {
	mu    sync.Mutex
	notes []*sdk.ProgressNotificationParams
	first chan struct{}
}

func newProgressLog() *progressLog { return &progressLog{first: make(chan struct{})} }

func (p *progressLog) handler(_ context.Context, req *sdk.ProgressNotificationClientRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, req.Params)
	if len(p.notes) == 1 {
		close(p.first)
	}
}

func (p *progressLog) all() []*sdk.ProgressNotificationParams {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sdk.ProgressNotificationParams(nil), p.notes...)
}

func waitDeploy(spec, timeout, token string) *sdk.CallToolParams {
	p := &sdk.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: spec, Wait: true, Timeout: timeout}}
	if token != "" {
		p.SetProgressToken(token)
	}
	return p
}

const slowYAML = "name: web\nimage: 127.0.0.1:5000/demo/slow:1\nreplicas: 3\n"

// A deploy with wait sends progress as instances become ready and returns
// when all are.
func TestDeployWaitsWithProgress(t *testing.T) {
	e, _ := newRolloutEnv(t)
	pl := newProgressLog()
	cs := e.connect(t, &sdk.ClientOptions{ProgressNotificationHandler: pl.handler})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		select {
		case <-pl.first:
		case <-ctx.Done():
			return
		}
		for e.cluster.Advance("web") {
			time.Sleep(30 * time.Millisecond)
		}
	}()
	res, err := cs.CallTool(ctx, waitDeploy(slowYAML, "10s", "dep-1"))
	if err != nil {
		t.Fatal(err)
	}
	out := decode[api.DeployResult](t, res)
	if r := out.Rollout; r == nil || r.Outcome != api.RolloutReady || r.Ready != 3 || r.Desired != 3 || r.Version != 1 || r.PreviousVersion != 0 {
		t.Fatalf("rollout = %+v", out.Rollout)
	}
	if !strings.Contains(text(res), "Rollout ready") {
		t.Errorf("text = %q", text(res))
	}
	waitFor(t, func() bool { n := pl.all(); return len(n) > 0 && n[len(n)-1].Progress == 3 })
	notes := pl.all()
	for i, n := range notes {
		if n.ProgressToken != "dep-1" || n.Total != 3 || (i > 0 && n.Progress <= notes[i-1].Progress) {
			t.Errorf("notification %d = %+v", i, n)
		}
		if _, ok := n.Meta[api.ProgressMetaKey]; !ok {
			t.Errorf("notification %d has no %s in _meta", i, api.ProgressMetaKey)
		}
	}
	if notes[0].Progress != 0 || !strings.HasPrefix(notes[0].Message, "web: 0/3 instances of version 1 ready; web-0-") {
		t.Errorf("first notification = %+v", notes[0])
	}
	if last := notes[len(notes)-1]; last.Message != "web: 3/3 instances of version 1 ready" {
		t.Errorf("last message = %q", last.Message)
	}
}

// A failing instance ends the wait with its exit reason; a rollout that
// does not finish in time ends it as timed out.
func TestDeployWaitFailsAndTimesOut(t *testing.T) {
	e, _ := newRolloutEnv(t)
	cs := e.connect(t, nil)
	out := decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{
		SpecYAML: "name: crash\nimage: 127.0.0.1:5000/demo/crash:1\nreplicas: 1\n", Wait: true}))
	r := out.Rollout
	if r == nil || r.Outcome != api.RolloutFailed || r.Instance == "" || r.ExitCode == nil || *r.ExitCode != 1 || r.Reason != "Error" ||
		!strings.Contains(r.Message, "is backoff: exit code 1 (Error)") {
		t.Fatalf("rollout = %+v", r)
	}
	start := time.Now()
	out = decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: slowYAML, Wait: true, Timeout: "300ms"}))
	if r := out.Rollout; r == nil || r.Outcome != api.RolloutTimedOut || !strings.Contains(r.Message, "timed out after 300ms waiting for web: web: 0/3") {
		t.Fatalf("rollout = %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 300ms timeout took %s", d)
	}
	for _, tc := range []struct {
		in   api.DeployInput
		want string
	}{
		{api.DeployInput{SpecYAML: webYAML, Wait: true, Timeout: "soon"}, "invalid timeout"},
		{api.DeployInput{SpecYAML: webYAML, Wait: true, Timeout: "2h"}, "at most 1h"},
		{api.DeployInput{SpecYAML: webYAML, Timeout: "1m"}, "without wait"},
		{api.DeployInput{SpecYAML: webYAML, Wait: true, DryRun: true}, "wait and dry_run"},
	} {
		wantToolError(t, call(t, cs, api.ToolDeploy, tc.in), tc.want)
	}
}

// Cancelling a waiting deploy reverts it: over stateless HTTP (the request
// goes away) and over sessions (notifications/cancelled), on HTTP and in
// memory.
func TestCancelledWaitReverts(t *testing.T) {
	for _, transport := range []string{"http", "http-2025-11-25", "in-memory"} {
		t.Run(transport, func(t *testing.T) {
			e, srv := newRolloutEnv(t)
			pl := newProgressLog()
			opts := &sdk.ClientOptions{ProgressNotificationHandler: pl.handler}
			connect := func(opts *sdk.ClientOptions) *sdk.ClientSession {
				switch transport {
				case "http":
					return e.connect(t, opts)
				case "http-2025-11-25":
					base := &http.Transport{}
					t.Cleanup(base.CloseIdleConnections)
					cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, opts).Connect(context.Background(), &sdk.StreamableClientTransport{
						Endpoint: e.http.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{testToken, base}},
					}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { cs.Close() })
					return cs
				}
				ct, st := sdk.NewInMemoryTransports()
				ss, err := srv.MCPServer().Connect(context.Background(), st, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ss.Close() })
				cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, opts).Connect(context.Background(), ct, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cs.Close() })
				return cs
			}
			cs := connect(opts)
			decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: webYAML}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				<-pl.first
				cancel()
			}()
			v2 := strings.Replace(webYAML, "web:1", "slow:2", 1)
			_, err := cs.CallTool(ctx, waitDeploy(v2, "", "c-1"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled call: err = %v", err)
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if st, err := e.cluster.GetService(context.Background(), "web"); err == nil && st.Version == 3 && st.Image == "127.0.0.1:5000/demo/web:1" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the cancelled deploy was not reverted (protocol %s); calls %v; log:\n%s", cs.InitializeResult().ProtocolVersion, e.cluster.Calls(), e.logs.String())
				}
			}
			if !strings.Contains(strings.Join(e.cluster.Calls(), " "), "RevertRollout") {
				t.Errorf("calls = %v", e.cluster.Calls())
			}
			// A first deploy cancelled removes the service.
			pl2 := newProgressLog()
			cs2 := connect(&sdk.ClientOptions{ProgressNotificationHandler: pl2.handler})
			ctx2, cancel2 := context.WithCancel(context.Background())
			defer cancel2()
			go func() {
				<-pl2.first
				cancel2()
			}()
			_, err = cs2.CallTool(ctx2, waitDeploy(strings.Replace(slowYAML, "name: web", "name: fresh", 1), "", "c-2"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled first deploy: err = %v", err)
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := e.cluster.GetService(context.Background(), "fresh"); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the cancelled first deploy was not removed; calls %v; log:\n%s", e.cluster.Calls(), e.logs.String())
				}
			}
		})
	}
}

// cancel_deploy reverts a rollout in progress and refuses when there is
// none.
func TestCancelDeployTool(t *testing.T) {
	e, _ := newRolloutEnv(t)
	cs := e.connect(t, nil)
	decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: webYAML}))
	wantToolError(t, call(t, cs, api.ToolCancelDeploy, api.CancelDeployInput{Name: "web"}),
		`no rollout of service "web" is in progress: all 2 instances run version 1 and are ready`, "rollback_service")
	wantToolError(t, call(t, cs, api.ToolCancelDeploy, api.CancelDeployInput{Name: "nope"}), "not found")
	wantToolError(t, call(t, cs, api.ToolCancelDeploy, api.CancelDeployInput{Name: "-x"}), "flag")

	decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: strings.Replace(webYAML, "web:1", "slow:2", 1)}))
	wantToolError(t, call(t, cs, api.ToolCancelDeploy, api.CancelDeployInput{Name: "web", Version: 1}), "at version 2, not 1")
	res := call(t, cs, api.ToolCancelDeploy, api.CancelDeployInput{Name: "web", Version: 2})
	out := decode[api.CancelDeployResult](t, res)
	if out.Action != api.ActionRollback || out.Cancelled != 2 || out.RestoredVersion != 1 || out.Version != 3 ||
		!strings.Contains(out.Message, "deploy of version 2 cancelled") {
		t.Fatalf("cancel_deploy = %+v", out)
	}
	var tool *sdk.Tool
	for tl, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if tl.Name == api.ToolCancelDeploy {
			tool = tl
		}
	}
	if tool == nil || len(tool.Description) > 600 || tool.Annotations == nil || tool.Annotations.DestructiveHint == nil || !*tool.Annotations.DestructiveHint || tool.Annotations.ReadOnlyHint {
		t.Fatalf("cancel_deploy tool = %+v", tool)
	}
}

// A server shutting down ends every call, a waiting deploy's too; nobody
// cancelled that deploy, so it is kept, not reverted (a restart to change
// the policy used to revert every deploy being waited for). The shutdown
// drops the stateless request, and cancels the calls of sessions (whose
// Close would otherwise wait for them).
func TestShutdownDoesNotRevertAWaitingDeploy(t *testing.T) {
	for _, transport := range []string{"http", "http-2025-11-25"} {
		t.Run(transport, func(t *testing.T) {
			e, srv := newRolloutEnv(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- mcp.Serve(ctx, ln, srv.Handler()) }()
			t.Cleanup(stop)
			var version string
			if transport == "http-2025-11-25" {
				version = "2025-11-25"
			}
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			pl := newProgressLog()
			cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, &sdk.ClientOptions{ProgressNotificationHandler: pl.handler}).Connect(context.Background(),
				&sdk.StreamableClientTransport{Endpoint: "http://" + ln.Addr().String() + "/mcp", HTTPClient: &http.Client{Transport: bearer{testToken, base}}},
				&sdk.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			decode[api.DeployResult](t, call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: webYAML}))
			done := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(context.Background(), waitDeploy(strings.Replace(webYAML, "web:1", "slow:2", 1), "", "s-1"))
				done <- err
			}()
			<-pl.first
			stop() // gantry dev stopping: Serve shuts the server down
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("the waiting call did not end within 15s of the shutdown")
			}
			if err := <-served; err != nil {
				t.Errorf("Serve = %v", err)
			}
			// The handler sees the dropped request and logs what it did.
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.logs.String(), "the deploy is kept"); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) || strings.Contains(strings.Join(e.cluster.Calls(), " "), "RevertRollout") {
					t.Fatalf("the waiting call did not stop without reverting; calls %v; log:\n%s", e.cluster.Calls(), e.logs.String())
				}
			}
			st, err := e.cluster.GetService(context.Background(), "web")
			if err != nil || st.Version != 2 || strings.Contains(strings.Join(e.cluster.Calls(), " "), "RevertRollout") {
				t.Fatalf("after the shutdown: %+v, %v; calls %v", st, err, e.cluster.Calls())
			}
		})
	}
}
