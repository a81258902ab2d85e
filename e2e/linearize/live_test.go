package linearize

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/e2e/netns"
)

var gantryBin string // built by TestMain when the live test can run

func TestMain(m *testing.M) {
	code := 0
	if netns.Available() == nil {
		dir, err := os.MkdirTemp("", "gantry-linearize-bin")
		if err != nil {
			panic(err)
		}
		gantryBin = filepath.Join(dir, "gantry")
		cmd := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
		cmd.Dir, cmd.Env = "../..", append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e/linearize: build gantry: %v\n%s", err, out)
			os.Exit(1)
		}
		code = m.Run()
		os.RemoveAll(dir)
	} else {
		code = m.Run()
	}
	// A connect through a partition ends at its dial timeout, seconds after
	// the test that made it gave up: give such goroutines time to end.
	err := goleak.Find()
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); err = goleak.Find() {
		time.Sleep(200 * time.Millisecond)
	}
	if code == 0 && err != nil {
		fmt.Fprintf(os.Stderr, "e2e/linearize: goroutines left running: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// session is one client's MCP session to a gantry inside a bed node.
type session struct {
	s *mcp.ClientSession
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func (s session) call(ctx context.Context, tool string, args map[string]any, out any) error {
	res, err := s.s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return err
	}
	if res.IsError {
		var sb strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				sb.WriteString(tc.Text)
			}
		}
		return fmt.Errorf("%s: %s", tool, sb.String())
	}
	if out == nil {
		return nil
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// Several clients scale one service and read its desired replicas from a
// single-voter gantry dev for a few seconds: the history must be
// linearizable. gantry runs inside a bed node so that everything it makes
// (bridge, rules, mounts) goes with the node; the node is not eligible
// for instances, so the replicas stay pending and no container starts.
func TestLiveScaleAndGetAreLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts gantry dev")
	}
	bed := netns.NewT(t, 1)
	node := bed.Node(1)
	dataDir := t.TempDir()
	runDir := "/run/gantry-" + bed.Tag()
	t.Cleanup(func() {
		_ = os.RemoveAll(runDir)
		_ = os.Remove("/run/gantry-bridges/g" + bed.Tag() + ".lock")
	})
	logPath := filepath.Join(dataDir, "gantry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const addr = "127.0.0.1:7433" // the node's own loopback
	cmd := node.Exec(ctx, gantryBin, "dev", "--data-dir", dataDir, "--run-dir", runDir, "--listen", addr,
		"--bridge", "g"+bed.Tag(), "--subnet", "10.90.0.0/24", "--confirm-destructive=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	})
	gantryLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	tr := &http.Transport{DialContext: node.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gantry dev did not start: %v\n%s", err, gantryLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	connect := func() session {
		cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-linearize", Version: "1"}, nil)
		s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp",
			HTTPClient: &http.Client{Transport: bearer{strings.TrimSpace(string(tok)), tr}}}, nil)
		if err != nil {
			t.Fatalf("MCP: %v\n%s", err, gantryLog())
		}
		t.Cleanup(func() { s.Close() })
		return session{s}
	}

	admin := connect()
	var nodes api.NodeList
	if err := admin.call(ctx, "list_nodes", map[string]any{}, &nodes); err != nil || len(nodes.Nodes) != 1 {
		t.Fatalf("list_nodes: %+v, %v", nodes, err)
	}
	if err := admin.call(ctx, "set_node_eligibility", map[string]any{"node": nodes.Nodes[0].ID, "eligible": false}, nil); err != nil {
		t.Fatal(err)
	}

	const svc = "lin"
	rec := NewRecorder()
	if err := rec.Write(0, svc, 1, func() error {
		return admin.call(ctx, "deploy", map[string]any{"spec_yaml": "name: " + svc + "\nimage: 127.0.0.1:1/none:1\nreplicas: 1\n"}, nil)
	}); err != nil {
		t.Fatalf("deploy: %v\n%s", err, gantryLog())
	}

	const clients = 4
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var conflicts atomic.Int32
	errs := make(chan error, clients)
	for c := 1; c <= clients; c++ {
		s := connect()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			for time.Now().Before(stop) {
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if rng.IntN(2) == 0 {
					v := rng.IntN(8)
					_ = rec.Write(c, svc, v, func() error {
						err := s.call(opCtx, "scale_service", map[string]any{"name": svc, "replicas": v}, nil)
						if err != nil && strings.Contains(err.Error(), ": conflict") {
							// The conditional write met a newer modify index
							// and was refused: it changed nothing.
							conflicts.Add(1)
							return fmt.Errorf("%w: %w", ErrNotApplied, err)
						}
						return err
					})
				} else {
					_, err := rec.Read(c, svc, func() (int, error) {
						var st api.ServiceStatus
						if err := s.call(opCtx, "get_service", map[string]any{"name": svc}, &st); err != nil {
							return 0, err
						}
						return st.Desired, nil
					})
					if err != nil {
						errs <- err
						cancel()
						return
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("get_service: %v", err)
	}

	h := rec.History()
	writes, reads, unknown := Counts(h)
	if writes < 10 || reads < 10 {
		t.Fatalf("only %d writes and %d reads in 3 s: too few to check anything\n%s", writes, reads, gantryLog())
	}
	if unknown > 0 {
		t.Errorf("%d scale_service calls failed on a healthy single node", unknown)
	}
	t.Logf("%d scale_service calls refused as conflicts (not in the history)", conflicts.Load())
	if res := CheckT(t, rec, 20*time.Second); res != porcupine.Ok {
		t.Errorf("history check: %s, want Ok (one voter)", res)
	}
	// The check has teeth: the real history, plus a write of 100 after
	// everything and then a read that still sees the deploy's 1, is
	// illegal.
	now := rec.Since(time.Now())
	stale := append(h,
		porcupine.Operation{ClientId: 0, Input: Input{Kind: Write, Key: svc, Value: 100}, Output: Output{}, Call: now, Return: now + 1},
		porcupine.Operation{ClientId: 0, Input: Input{Kind: Read, Key: svc}, Output: Output{Value: 1}, Call: now + 2, Return: now + 3})
	if res, err := Check(stale, 20*time.Second, ""); err != nil || res != porcupine.Illegal {
		t.Errorf("the history plus a stale read: %s, %v; want Illegal", res, err)
	}
}
