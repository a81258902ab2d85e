package cli_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/gantry-dev/gantry/cli"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"gantry": func() { os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

const scriptToken = "script-token-0123456789"

type clusterKey struct{}

// TestScripts runs the real gantry CLI (as a subprocess) against the real
// MCP handler over HTTP, backed by the in-memory test double of the cluster.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			c := mcptest.New()
			srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Rollouts: c, Token: scriptToken, Logger: slog.New(slog.DiscardHandler), Version: "script"})
			if err != nil {
				return err
			}
			mux := http.NewServeMux()
			mux.Handle("/mcp", srv.Handler())
			ts := httptest.NewServer(mux)
			env.Defer(ts.Close)
			env.Values[clusterKey{}] = c
			env.Setenv("GANTRY_ADDR", ts.URL+"/mcp")
			env.Setenv("GANTRY_TOKEN", scriptToken)
			// An address where nothing listens.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			env.Setenv("UNREACHABLE_ADDR", "http://"+ln.Addr().String()+"/mcp")
			return ln.Close()
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// setlogs INSTANCE LINE... sets the log lines of an instance.
			"setlogs": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 1 {
					ts.Fatalf("usage: setlogs INSTANCE LINE...")
				}
				ts.Value(clusterKey{}).(*mcptest.Cluster).SetLogs(args[0], args[1:])
			},
			// calls METHOD... checks the methods the cluster saw, in order.
			"calls": func(ts *testscript.TestScript, neg bool, args []string) {
				got := strings.Join(ts.Value(clusterKey{}).(*mcptest.Cluster).Calls(), " ")
				if (got == strings.Join(args, " ")) == neg {
					ts.Fatalf("cluster calls: %q", got)
				}
			},
			// jsonhas FILE KEY... checks that a JSON object file has the keys
			// (a.b for nested objects, a.0.b through the first array element).
			"jsonhas": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: jsonhas FILE KEY...")
				}
				var v any
				ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &v))
				for _, key := range args[1:] {
					cur := v
					for _, part := range strings.Split(key, ".") {
						switch x := cur.(type) {
						case map[string]any:
							cur = x[part]
						case []any:
							if len(x) == 0 {
								cur = nil
							} else {
								cur = x[0]
							}
						default:
							cur = nil
						}
					}
					if (cur != nil) == neg {
						ts.Fatalf("key %s: %v", key, cur)
					}
				}
			},
		},
	})
}

// forbidden are the server internals the CLI must never import.
var forbidden = []string{"state", "runtime", "image", "network", "worker", "controller", "cluster", "scheduler", "health"}

// serverDeps returns the server packages among pkg's transitive imports.
func serverDeps(t *testing.T, pkg string) []string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		t.Skipf("the go tool is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pkg, err, out)
	}
	const module = "github.com/gantry-dev/gantry/"
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list returned only %v", deps)
	}
	var bad []string
	for _, dep := range deps {
		rel, ok := strings.CutPrefix(dep, module)
		if !ok {
			continue
		}
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				bad = append(bad, dep)
			}
		}
	}
	return bad
}

// TestCLIImportsNoServerInternals keeps the CLI a pure MCP client: none of
// its dependencies (transitively) may be a server package.
func TestCLIImportsNoServerInternals(t *testing.T) {
	if bad := serverDeps(t, "github.com/gantry-dev/gantry/cli"); len(bad) > 0 {
		t.Errorf("package cli depends on server internals: %v", bad)
	}
	// The check itself works: a server package is caught.
	if bad := serverDeps(t, "github.com/gantry-dev/gantry/state"); len(bad) == 0 {
		t.Error("serverDeps does not detect package state")
	}
}
