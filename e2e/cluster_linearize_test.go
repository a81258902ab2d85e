package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/e2e/linearize"
	"github.com/gantry-dev/gantry/e2e/netns"
)

// startServers starts a 3-server cluster in the first three nodes of bed:
// the first bootstraps, the others join with its server token.
func startServers(t *testing.T, ctx context.Context, bed *netns.Bed) []*clusterNode {
	t.Helper()
	servers := make([]*clusterNode, 3)
	for i := range servers {
		n := bed.Node(i + 1)
		c := &clusterNode{t: t, name: fmt.Sprintf("s%d", i+1), node: n, dataDir: t.TempDir()}
		servers[i] = c
		t.Cleanup(func() {
			c.kill9()
			_ = n.KillAll(context.Background())
		})
		c.args = []string{"server", "--data-dir", c.dataDir, "--name", c.name, "--advertise", n.IP.String(), "--log-level", "debug"}
	}
	servers[0].args = append(servers[0].args, "--bootstrap")
	servers[0].start(ctx)
	waitHealth(t, ctx, servers[0], 30*time.Second, func(h health) bool { return h.role == "leader" })
	tok, err := os.ReadFile(filepath.Join(servers[0].dataDir, "server-join.token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers[1:] {
		s.args = append(s.args, "--join", net.JoinHostPort(servers[0].node.IP.String(), "7434"), "--token", strings.TrimSpace(string(tok)))
		s.start(ctx)
	}
	for _, s := range servers {
		waitHealth(t, ctx, s, 30*time.Second, func(h health) bool { return len(h.voters) == 3 && h.leader != "" })
	}
	return servers
}

// linearizable adds the header that makes a server's reads linearizable.
type linearizable struct{ next http.RoundTripper }

func (l linearizable) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Gantry-Consistency", "linearizable")
	return l.next.RoundTrip(r)
}

// Clients spread over three servers scale one service and read it back
// (linearizable reads) while the leader is killed with SIGKILL: the
// history must be linearizable, so no acknowledged write is lost and no
// read goes back in time across the failover.
func TestClusterLeaderKillUnderWritesIsLinearizable(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bed := netns.NewT(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := startServers(t, ctx, bed)
	var dead atomic.Pointer[clusterNode]
	connect := func(s *clusterNode) (*mcp.ClientSession, error) {
		cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-linearize", Version: "1"}, nil)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cl.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: "http://127.0.0.1:7433/mcp",
			HTTPClient: &http.Client{Transport: linearizable{bearer{s.token(), s.node.HTTPTransport(nil)}}}}, nil)
	}
	first, err := connect(servers[1])
	if err != nil {
		t.Fatal(err)
	}
	const svc = "lin"
	rec := linearize.NewRecorder()
	if err := rec.Write(0, svc, 1, func() error {
		return clusterCall(ctx, first, "deploy", map[string]any{"spec_yaml": "name: " + svc + "\nimage: 127.0.0.1:1/none:1\nreplicas: 1\n"}, nil)
	}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	first.Close()

	const clients = 6
	begin := time.Now()
	stop := begin.Add(6 * time.Second)
	var wg sync.WaitGroup
	var conflicts, reconnects atomic.Int32
	for c := 1; c <= clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			var s *mcp.ClientSession
			defer func() {
				if s != nil {
					s.Close()
				}
			}()
			at := servers[c%3]
			for time.Now().Before(stop) {
				if s == nil {
					if at == dead.Load() {
						at = servers[(indexOf(servers, at)+1)%3]
					}
					var err error
					if s, err = connect(at); err != nil {
						s = nil
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				if rng.IntN(2) == 0 {
					v := rng.IntN(8)
					err = rec.Write(c, svc, v, func() error {
						err := clusterCall(opCtx, s, "scale_service", map[string]any{"name": svc, "replicas": v}, nil)
						if err != nil && strings.Contains(err.Error(), ": conflict") {
							conflicts.Add(1)
							return fmt.Errorf("%w: %w", linearize.ErrNotApplied, err)
						}
						return err
					})
				} else {
					_, err = rec.Read(c, svc, func() (int, error) {
						var st api.ServiceStatus
						if err := clusterCall(opCtx, s, "get_service", map[string]any{"name": svc}, &st); err != nil {
							return 0, err
						}
						return st.Desired, nil
					})
				}
				cancel()
				if err != nil && !strings.Contains(err.Error(), ": conflict") {
					s.Close()
					s = nil
					reconnects.Add(1)
				}
			}
		}()
	}

	time.Sleep(2 * time.Second)
	h, err := servers[0].health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.name == h.leader {
			rec.Note("kill", "SIGKILL "+s.name)
			dead.Store(s)
			s.kill9()
		}
	}
	if dead.Load() == nil {
		t.Fatalf("leader %q is not a server", h.leader)
	}
	killed := time.Now()
	wg.Wait()
	t.Logf("SIGKILL of %s at %v into the run; %d reconnects", dead.Load().name, killed.Sub(begin).Round(time.Millisecond), reconnects.Load())

	hist := rec.History()
	writes, reads, unknown := linearize.Counts(hist)
	t.Logf("%d writes (%d of unknown outcome), %d reads, %d conflicts (not in the history)", writes, unknown, reads, conflicts.Load())
	if writes < 10 || reads < 10 {
		t.Fatalf("only %d writes and %d reads: too few to check anything", writes, reads)
	}
	var after int
	for _, op := range hist {
		if op.Call > rec.Since(killed) {
			after++
		}
	}
	if after < 5 {
		t.Errorf("only %d operations after the kill: the cluster did not go on", after)
	}
	if res := linearize.CheckT(t, rec, 30*time.Second); res != porcupine.Ok {
		t.Errorf("history check: %s, want Ok", res)
	}
}

func indexOf(ss []*clusterNode, s *clusterNode) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return 0
}
