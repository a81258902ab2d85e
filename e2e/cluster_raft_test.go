package e2e

// Raft-level behaviour of a cluster of `gantry server` processes in network
// namespaces: linearizable writes and reads across a leader SIGKILL, a
// partitioned minority, and --bootstrap-expect.

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

// A follower server cut off from the others cannot commit (a write through
// it fails and is not applied), the majority goes on, and after heal the
// follower catches up and serves the majority's writes.
func TestClusterMinorityPartition(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bed := netns.NewT(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := startServers(t, ctx, bed)
	h, err := servers[0].health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var minority, majority *clusterNode
	for _, s := range servers {
		if s.name != h.leader {
			if minority == nil {
				minority = s
			}
		} else {
			majority = s
		}
	}
	cut := minority.mcpSession(ctx)
	lead := majority.mcpSession(ctx)
	if err := bed.Partition(ctx, minority.node); err != nil {
		t.Fatal(err)
	}
	spec := "name: %s\nimage: 127.0.0.1:1/none:1\nreplicas: 1\n"
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	err = clusterCall(wctx, cut, "deploy", map[string]any{"spec_yaml": fmt.Sprintf(spec, "minority")}, nil)
	wcancel()
	if err == nil {
		t.Fatalf("a write through the partitioned %s succeeded", minority.name)
	}
	t.Logf("write through the partitioned %s: %v", minority.name, err)
	if err := clusterCall(ctx, lead, "deploy", map[string]any{"spec_yaml": fmt.Sprintf(spec, "majority")}, nil); err != nil {
		t.Fatalf("write through the majority's leader %s: %v", majority.name, err)
	}
	if err := bed.Heal(ctx, minority.node); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	for {
		var st api.ServiceStatus
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		err := clusterCall(rctx, cut, "get_service", map[string]any{"name": "majority"}, &st)
		rcancel()
		if err == nil && st.Desired == 1 {
			break
		}
		if time.Since(healed) > 30*time.Second {
			t.Fatalf("%s did not catch up 30s after heal: %v\n%s", minority.name, err, minority.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("MEASURED %s caught up %v after heal", minority.name, time.Since(healed).Round(time.Millisecond))
	var list api.ServiceList
	if err := clusterCall(ctx, lead, "list_services", map[string]any{}, &list); err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Services {
		if s.Name == "minority" {
			t.Errorf("the write made through the partitioned %s was applied", minority.name)
		}
	}
}

// With --bootstrap-expect 3 the group does not form (no leader, joins
// still accepted against the first server's own token record) until the
// third server gossips; then all three are voters at once.
func TestClusterBootstrapExpect(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bed := netns.NewT(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := make([]*clusterNode, 3)
	for i := range servers {
		n := bed.Node(i + 1)
		c := &clusterNode{t: t, name: fmt.Sprintf("s%d", i+1), node: n, dataDir: t.TempDir()}
		servers[i] = c
		t.Cleanup(func() {
			c.kill9()
			_ = n.KillAll(context.Background())
		})
		c.args = []string{"server", "--bootstrap-expect", "3", "--data-dir", c.dataDir, "--name", c.name, "--advertise", n.IP.String(), "--log-level", "debug"}
	}
	servers[0].args = append(servers[0].args, "--bootstrap")
	servers[0].start(ctx)
	waitHealth(t, ctx, servers[0], 30*time.Second, func(h health) bool { return true })
	tok, err := os.ReadFile(filepath.Join(servers[0].dataDir, "server-join.token"))
	if err != nil {
		t.Fatal(err)
	}
	join := []string{"--join", net.JoinHostPort(servers[0].node.IP.String(), "7434"), "--token", strings.TrimSpace(string(tok))}
	servers[1].args = append(servers[1].args, join...)
	servers[1].start(ctx)
	waitHealth(t, ctx, servers[1], 30*time.Second, func(h health) bool { return true })
	time.Sleep(time.Second)
	for _, s := range servers[:2] {
		if h, err := s.health(ctx); err != nil || h.leader != "" || len(h.voters) != 0 {
			t.Errorf("%s with 2 of 3 expected servers: %+v, %v; want no group yet", s.name, h, err)
		}
	}
	servers[2].args = append(servers[2].args, join...)
	start := time.Now()
	servers[2].start(ctx)
	for _, s := range servers {
		waitHealth(t, ctx, s, 30*time.Second, func(h health) bool { return len(h.voters) == 3 && h.leader != "" })
	}
	t.Logf("MEASURED bootstrap-expect: 3 voters and a leader %v after the third server started", time.Since(start).Round(time.Millisecond))
	// The bootstrap tokens and the cluster admin token are recorded once
	// the group has formed: the admin token works on another server.
	var admin string
	for deadline := time.Now().Add(10 * time.Second); admin == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(servers[0].dataDir, "cluster-admin.token")); err == nil {
			admin = strings.TrimSpace(string(b))
		}
	}
	if admin == "" {
		t.Fatalf("no cluster-admin.token after the group formed\n%s", servers[0].log())
	}
	var nl api.NodeList
	if err := clusterCall(ctx, servers[2].mcpSessionAs(ctx, admin), "list_nodes", map[string]any{}, &nl); err != nil {
		t.Errorf("list_nodes on s3 with the cluster admin token: %v", err)
	}
}
