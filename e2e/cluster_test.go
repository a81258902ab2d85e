package e2e

// A real cluster on one machine: `gantry server` and `gantry worker`
// processes, each in its own network namespace of an e2e/netns bed, talking
// mutual TLS and gossip over the bed's bridge.

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/e2e/netns"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// clusterNode is one gantry server or worker process in a bed node.
type clusterNode struct {
	t       *testing.T
	name    string
	node    *netns.Node
	dataDir string
	runDir  string
	args    []string
	cmd     *exec.Cmd
	waited  chan error
}

// start launches the node's process with its args.
func (c *clusterNode) start(ctx context.Context) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dataDir, "gantry.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	c.cmd = c.node.Exec(ctx, append([]string{gantryBin}, c.args...)...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	c.waited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(c.cmd, c.waited)
}

// kill9 ends the process with SIGKILL and waits for it.
func (c *clusterNode) kill9() {
	if c.cmd == nil || c.waited == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.waited
	c.waited = nil
}

func (c *clusterNode) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dataDir, "gantry.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// health is a server's /healthz, parsed: role, leader and voters.
type health struct {
	role, leader string
	voters       []string
}

func (c *clusterNode) health(ctx context.Context) (health, error) {
	hc := &http.Client{Transport: c.node.HTTPTransport(nil), Timeout: time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:7433/healthz", nil)
	if err != nil {
		return health{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return health{}, err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	var h health
	for _, l := range strings.Split(b.String(), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "role":
			h.role = v
		case "leader":
			h.leader = v
		case "peer":
			if f := strings.Fields(v); len(f) == 3 && f[2] == "voter" {
				h.voters = append(h.voters, f[0])
			}
		}
	}
	return h, nil
}

func (c *clusterNode) token() string {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "admin.token"))
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mcpSession connects to the server's MCP endpoint from inside its node.
func (c *clusterNode) mcpSession(ctx context.Context) *mcp.ClientSession {
	c.t.Helper()
	return c.mcpSessionAs(ctx, c.token())
}

// mcpSessionAs connects with the given bearer token.
func (c *clusterNode) mcpSessionAs(ctx context.Context, token string) *mcp.ClientSession {
	c.t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-cluster", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: "http://127.0.0.1:7433/mcp",
		HTTPClient: &http.Client{Transport: bearer{token, c.node.HTTPTransport(nil)}}}
	s, err := client.Connect(ctx, tr, nil)
	if err != nil {
		c.t.Fatalf("connect MCP of %s: %v\n%s", c.name, err, c.log())
	}
	c.t.Cleanup(func() { s.Close() })
	return s
}

func clusterCall(ctx context.Context, s *mcp.ClientSession, tool string, args map[string]any, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
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
		return &toolError{sb.String()}
	}
	if out != nil {
		raw, err := json.Marshal(res.StructuredContent)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, out)
	}
	return nil
}

// waitService polls get_service until cond holds.
func waitService(t *testing.T, ctx context.Context, s *mcp.ClientSession, name string, timeout time.Duration, what string,
	cond func(api.ServiceStatus) bool, logs func() string) api.ServiceStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var st api.ServiceStatus
	for {
		err := clusterCall(ctx, s, "get_service", map[string]any{"name": name}, &st)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(st, "", "  ")
			t.Fatalf("timed out after %v waiting for %s: %s (last error %v)\n--- service:\n%s\n--- logs:\n%s", timeout, name, what, err, js, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runningOn counts the running instances per node.
func runningOn(s api.ServiceStatus) map[string]int {
	m := map[string]int{}
	for _, in := range s.Instances {
		if in.State == "running" {
			m[in.Node]++
		}
	}
	return m
}

// A cluster of 3 servers and 2 workers, each in its own network namespace:
// the first server bootstraps, the others join with its server token and
// become voters; a service deployed through a server's MCP endpoint runs
// on the workers; SIGKILL of the leader gives a new leader within seconds
// and the service is still readable and scalable through another server;
// a worker killed with its containers has its instances run elsewhere.
func TestClusterServersWorkersFailover(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	bed := netns.NewT(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Images come from a registry on the host, at the bridge address the
	// nodes reach.
	ln, err := net.Listen("tcp", net.JoinHostPort(bed.HostIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	regSrv := &http.Server{Handler: registry.New(registry.Logger(log.New(discard{}, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go regSrv.Serve(ln)
	t.Cleanup(func() { regSrv.Close() })
	reg := ln.Addr().String()
	ref := reg + "/e2e/cluster:1"
	imagetest.PushImage(t, imagetest.Busybox(t, nil), ref)

	nodes := make([]*clusterNode, 5)
	for i := range nodes {
		n := bed.Node(i + 1)
		name := fmt.Sprintf("s%d", i+1)
		if i >= 3 {
			name = fmt.Sprintf("w%d", i-2)
		}
		c := &clusterNode{t: t, name: name, node: n, dataDir: t.TempDir(), runDir: "/run/gantry-" + bed.Tag() + "-" + name}
		nodes[i] = c
		t.Cleanup(func() {
			c.kill9()
			_ = n.KillAll(context.Background())
			_ = syscall.Unmount(filepath.Join(c.runDir, "netns"), syscall.MNT_DETACH)
			_ = os.RemoveAll(c.runDir)
			_ = os.Remove("/run/gantry-bridges/g" + bed.Tag() + name + ".lock")
		})
	}
	common := func(c *clusterNode) []string {
		return []string{"--data-dir", c.dataDir, "--name", c.name, "--advertise", c.node.IP.String(), "--log-level", "debug"}
	}
	servers, workers := nodes[:3], nodes[3:]
	first := servers[0]
	joinAddr := net.JoinHostPort(first.node.IP.String(), "7434")

	// Servers allow exec_instance to their admin token.
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(execPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	// The first server bootstraps the cluster and writes the join tokens.
	first.args = append([]string{"server", "--bootstrap", "--policy", policyFile}, common(first)...)
	start := time.Now()
	first.start(ctx)
	waitHealth(t, ctx, first, 30*time.Second, func(h health) bool { return h.role == "leader" })
	t.Logf("first server leads %v after start", time.Since(start).Round(time.Millisecond))
	readTok := func(f string) string {
		b, err := os.ReadFile(filepath.Join(first.dataDir, f))
		if err != nil {
			t.Fatalf("join token %s: %v", f, err)
		}
		return strings.TrimSpace(string(b))
	}
	serverTok, workerTok := readTok("server-join.token"), readTok("worker-join.token")
	if !strings.HasPrefix(serverTok, "gtyj.server.") || !strings.HasPrefix(workerTok, "gtyj.worker.") {
		t.Fatalf("join tokens: %q, %q", serverTok, workerTok)
	}
	for _, f := range []string{"server-join.token", "worker-join.token", "cluster-admin.token", "tls/ca-key.pem", "tls/node-key.pem", "tls/gossip.key", "secrets.key"} {
		if fi, err := os.Stat(filepath.Join(first.dataDir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}

	// A worker token does not make a server.
	bad := &clusterNode{t: t, name: "s9", node: servers[1].node, dataDir: t.TempDir()}
	bad.args = append([]string{"server", "--join", joinAddr, "--token", workerTok}, common(bad)...)
	bad.start(ctx)
	select {
	case <-bad.waited:
		bad.waited = nil
		if !strings.Contains(bad.log(), "worker token") {
			t.Errorf("server joining with a worker token: want a clear refusal, got:\n%s", bad.log())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("a server joining with a worker token kept running:\n%s", bad.log())
		bad.kill9()
	}

	// A token with a wrong secret, or made for another cluster's CA, is
	// refused at once with a clear error (from the node that will be w2:
	// joins are rate-limited per address).
	parts := strings.Split(serverTok, ".")
	if len(parts) != 5 {
		t.Fatalf("server token has %d parts: %q", len(parts), serverTok)
	}
	forge := func(i int, c string) string {
		p := append([]string(nil), parts...)
		p[i] = strings.Repeat(c, len(p[i]))
		return strings.Join(p, ".")
	}
	for _, c := range []struct{ what, tok, want string }{
		{"wrong secret", forge(3, "a"), "the secret is wrong"},
		{"another cluster's CA", forge(4, "0"), "not from the CA the token names"},
	} {
		bad := &clusterNode{t: t, name: "s8", node: workers[1].node, dataDir: t.TempDir()}
		bad.args = append([]string{"server", "--join", joinAddr, "--token", c.tok}, common(bad)...)
		bad.start(ctx)
		select {
		case <-bad.waited:
			bad.waited = nil
			if !strings.Contains(bad.log(), c.want) {
				t.Errorf("join with a %s: want %q, got:\n%s", c.what, c.want, bad.log())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("a server joining with a %s kept running:\n%s", c.what, bad.log())
			bad.kill9()
		}
		if _, err := os.Stat(filepath.Join(bad.dataDir, "tls", "node.pem")); err == nil {
			t.Errorf("join with a %s: a certificate was written", c.what)
		}
	}

	// Two more servers join; the group has three voters.
	start = time.Now()
	for _, s := range servers[1:] {
		s.args = append([]string{"server", "--join", joinAddr, "--token", serverTok, "--policy", policyFile}, common(s)...)
		s.start(ctx)
	}
	for _, s := range servers {
		waitHealth(t, ctx, s, 30*time.Second, func(h health) bool { return len(h.voters) == 3 && h.leader != "" })
	}
	t.Logf("MEASURED join: two servers joined and are voters %v after start", time.Since(start).Round(time.Millisecond))
	checkRaftOperator(t, ctx, servers)

	// Two workers join.
	start = time.Now()
	for _, w := range workers {
		w.args = append([]string{"worker", "--join", joinAddr, "--token", workerTok, "--insecure-registry", reg,
			"--bridge", "g" + bed.Tag() + w.name, "--subnet", "10.77.0.0/24", "--run-dir", w.runDir, "--port-range", "41000-42999"}, common(w)...)
		w.start(ctx)
	}
	s2 := servers[1].mcpSession(ctx)
	allLogs := func() string {
		var b strings.Builder
		for _, c := range nodes {
			fmt.Fprintf(&b, "=== %s\n%s\n", c.name, c.log())
		}
		return b.String()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nl api.NodeList
		err := clusterCall(ctx, s2, "list_nodes", map[string]any{}, &nl)
		ready := 0
		for _, n := range nl.Nodes {
			if n.Status == "ready" {
				ready++
			}
		}
		if err == nil && ready == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers did not register: %+v, %v\n%s", nl, err, allLogs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("MEASURED join: two workers registered %v after start", time.Since(start).Round(time.Millisecond))

	// A service deployed through a server (a follower or the leader) runs
	// on the workers.
	spec := fmt.Sprintf("name: sleeper\nimage: %s\ncommand: [\"/bin/sh\", \"-c\", \"echo started on $(hostname); exec sleep 3600\"]\n"+
		"replicas: 2\nresources: {cpu: 100m, memory: 16Mi}\n", ref)
	var dr api.DeployResult
	if err := clusterCall(ctx, s2, "deploy", map[string]any{"spec_yaml": spec}, &dr); err != nil {
		t.Fatalf("deploy through s2: %v\n%s", err, allLogs())
	}
	if !dr.Created {
		t.Fatalf("deploy: %+v", dr)
	}
	start = time.Now()
	st := waitService(t, ctx, s2, "sleeper", 60*time.Second, "2 running", func(s api.ServiceStatus) bool { return s.Running == 2 }, allLogs)
	t.Logf("2 instances running %v after deploy: %v", time.Since(start).Round(time.Millisecond), runningOn(st))

	// Their logs, on the workers, read through a server.
	var lr api.LogsResult
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		lr = api.LogsResult{}
		err := clusterCall(ctx, s2, "service_logs", map[string]any{"name": "sleeper"}, &lr)
		n := 0
		for _, b := range lr.Instances {
			if len(b.Lines) == 1 && strings.Contains(b.Lines[0], "started on "+b.Instance) {
				n++
			}
		}
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service_logs through s2: %+v, %v\n%s", lr, err, allLogs())
		}
	}

	// A command runs in an instance on a worker, through a server.
	var er api.ExecResult
	if err := clusterCall(ctx, servers[1].mcpSession(ctx), api.ToolExecInstance,
		map[string]any{"instance": st.Instances[0].ID, "command": []string{"hostname"}}, &er); err != nil {
		t.Fatalf("exec_instance through s2: %v\n%s", err, allLogs())
	}
	if er.ExitCode != 0 || !strings.Contains(er.Stdout, st.Instances[0].ID) || er.Node != st.Instances[0].Node {
		t.Errorf("exec_instance hostname in %s: %+v", st.Instances[0].ID, er)
	}

	// SIGKILL the leader: another server leads within seconds.
	h, err := servers[0].health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var leader *clusterNode
	var others []*clusterNode
	for _, s := range servers {
		if s.name == h.leader {
			leader = s
		} else {
			others = append(others, s)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not one of the servers", h.leader)
	}
	leader.kill9()
	killed := time.Now()
	var newLeader string
	for newLeader == "" {
		for _, s := range others {
			if h, err := s.health(ctx); err == nil && h.leader != "" && h.leader != leader.name {
				newLeader = h.leader
			}
		}
		if time.Since(killed) > 20*time.Second {
			t.Fatalf("no new leader 20s after SIGKILL of %s\n%s", leader.name, allLogs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	failover := time.Since(killed)
	t.Logf("MEASURED leader failover: %s killed, %s leads after %v", leader.name, newLeader, failover.Round(time.Millisecond))
	if failover > 10*time.Second {
		t.Errorf("failover took %v, want a few seconds", failover)
	}

	// Still readable and scalable through another server.
	via := others[0]
	if via.name == newLeader {
		via = others[1] // through a follower: the write is forwarded
	}
	// The cluster admin token made at bootstrap works on every server.
	sv := via.mcpSessionAs(ctx, readTok("cluster-admin.token"))
	if err := clusterCall(ctx, sv, "get_service", map[string]any{"name": "sleeper"}, &st); err != nil || st.Desired != 2 {
		t.Fatalf("get_service through %s after failover: %+v, %v", via.name, st, err)
	}
	if err := clusterCall(ctx, sv, "scale_service", map[string]any{"name": "sleeper", "replicas": 3}, nil); err != nil {
		t.Fatalf("scale through %s after failover: %v\n%s", via.name, err, allLogs())
	}
	st = waitService(t, ctx, sv, "sleeper", 60*time.Second, "3 running", func(s api.ServiceStatus) bool { return s.Running == 3 }, allLogs)
	t.Logf("scaled to 3 through %s: %v", via.name, runningOn(st))

	// A worker dies with its containers: its instances run on the other.
	on := runningOn(st)
	victim, survivor := workers[0], workers[1]
	if on[victim.name] == 0 {
		victim, survivor = survivor, victim
	}
	if err := victim.node.KillAll(ctx); err != nil {
		t.Fatal(err)
	}
	victim.waited, victim.cmd = nil, nil
	killed = time.Now()
	st = waitService(t, ctx, sv, "sleeper", 60*time.Second, "3 running on "+survivor.name, func(s api.ServiceStatus) bool {
		return runningOn(s)[survivor.name] == 3
	}, allLogs)
	t.Logf("MEASURED worker loss: %s killed, its instances running on %s after %v", victim.name, survivor.name, time.Since(killed).Round(time.Millisecond))
	var nl api.NodeList
	if err := clusterCall(ctx, sv, "list_nodes", map[string]any{}, &nl); err != nil {
		t.Fatal(err)
	}
	for _, n := range nl.Nodes {
		if n.Name == victim.name && n.Status != "down" {
			t.Errorf("node %s is %s after its worker died, want down", n.Name, n.Status)
		}
	}

	// The killed leader comes back without a token: it reuses its
	// certificate and is a voter again.
	leader.args = withoutToken(leader.args)
	start = time.Now()
	leader.start(ctx)
	waitHealth(t, ctx, leader, 30*time.Second, func(h health) bool { return len(h.voters) == 3 && h.leader != "" && h.leader != leader.name })
	t.Logf("%s restarted and follows %v after start", leader.name, time.Since(start).Round(time.Millisecond))

	// The dead worker comes back (no token): it is ready again and no
	// replica runs twice.
	victim.args = withoutToken(victim.args)
	start = time.Now()
	victim.start(ctx)
	deadline = time.Now().Add(30 * time.Second)
	for {
		var nl api.NodeList
		err := clusterCall(ctx, sv, "list_nodes", map[string]any{}, &nl)
		up := false
		for _, n := range nl.Nodes {
			up = up || (n.Name == victim.name && n.Status == "ready")
		}
		if err == nil && up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not ready after its restart: %+v, %v\n%s", victim.name, nl, err, allLogs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s ready again %v after its restart", victim.name, time.Since(start).Round(time.Millisecond))
	st = waitService(t, ctx, sv, "sleeper", 30*time.Second, "3 instances, all running", func(s api.ServiceStatus) bool {
		return len(s.Instances) == 3 && s.Running == 3
	}, allLogs)
	checkSlots(t, st)

	// The survivor is cut off from every server: it keeps its containers
	// (static stability) while the servers run its replicas on the other
	// worker; on heal it stops its own, so none runs twice.
	if n := len(runcRunning(survivor.runDir)); n != 3 {
		t.Fatalf("%s runs %d containers, want 3", survivor.name, n)
	}
	if err := bed.Partition(ctx, survivor.node); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	st = waitService(t, ctx, sv, "sleeper", 60*time.Second, "3 running on "+victim.name, func(s api.ServiceStatus) bool {
		return runningOn(s)[victim.name] == 3
	}, allLogs)
	t.Logf("MEASURED partitioned worker: %s cut off, its replicas running on %s after %v", survivor.name, victim.name, time.Since(cut).Round(time.Millisecond))
	if n := len(runcRunning(survivor.runDir)); n != 3 {
		t.Errorf("%s, cut off from the servers, runs %d containers, want its 3 kept", survivor.name, n)
	}
	if err := bed.Heal(ctx, survivor.node); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	st = waitService(t, ctx, sv, "sleeper", 60*time.Second, "only the 3 replicas on "+victim.name, func(s api.ServiceStatus) bool {
		return len(s.Instances) == 3 && runningOn(s)[victim.name] == 3
	}, allLogs)
	checkSlots(t, st)
	for len(runcRunning(survivor.runDir)) > 0 && time.Since(healed) < 30*time.Second {
		time.Sleep(200 * time.Millisecond)
	}
	if ids := runcRunning(survivor.runDir); len(ids) > 0 {
		t.Errorf("%s still runs %v after heal: duplicates of replicas placed on %s", survivor.name, ids, victim.name)
	}
	t.Logf("%s stopped its replaced containers %v after heal", survivor.name, time.Since(healed).Round(time.Millisecond))

	// Memory of a server and of a worker (3 instances on it).
	for _, c := range []*clusterNode{via, victim} {
		if rss := vmRSS(c.cmd.Process.Pid); rss != "" {
			t.Logf("MEASURED memory: %s VmRSS %s", c.name, rss)
		}
	}

	// A server stopped with SIGTERM hands its leadership over first.
	h, err = via.health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.name != h.leader {
			continue
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		stopped := time.Now()
		var next string
		for next == "" && time.Since(stopped) < 20*time.Second {
			for _, o := range servers {
				if o != s {
					if h, err := o.health(ctx); err == nil && h.leader != "" && h.leader != s.name {
						next = h.leader
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if next == "" {
			t.Fatalf("no new leader after SIGTERM of the leader %s\n%s", s.name, allLogs())
		}
		t.Logf("MEASURED leadership handover: %s stopped with SIGTERM, %s leads after %v", s.name, next, time.Since(stopped).Round(time.Millisecond))
		select {
		case <-s.waited:
			s.waited = nil
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s of SIGTERM", s.name)
		}
		s.args = withoutToken(s.args)
		s.start(ctx)
		waitHealth(t, ctx, s, 30*time.Second, func(h health) bool { return len(h.voters) == 3 && h.leader != "" })
	}
	if err := clusterCall(ctx, sv, "get_service", map[string]any{"name": "sleeper"}, &st); err != nil || st.Desired != 3 {
		t.Errorf("after the rolling restart: %+v, %v", st, err)
	}

	// A service with a secret runs on a worker, which opens the secret
	// through a server; its logs, read through a server, are scrubbed.
	const pw = "s3cr3t-cluster-pw"
	if err := clusterCall(ctx, sv, "set_secret", map[string]any{"name": "db-pass", "value": pw}, nil); err != nil {
		t.Fatalf("set_secret: %v", err)
	}
	vault := fmt.Sprintf("name: vault\nimage: %s\ncommand: [\"/bin/sh\", \"-c\", \"echo pw=$DBPASS; exec sleep 3600\"]\n"+
		"secrets: {DBPASS: db-pass}\nresources: {cpu: 100m, memory: 16Mi}\n", ref)
	if err := clusterCall(ctx, sv, "deploy", map[string]any{"spec_yaml": vault}, nil); err != nil {
		t.Fatalf("deploy vault: %v", err)
	}
	waitService(t, ctx, sv, "vault", 30*time.Second, "1 running", func(s api.ServiceStatus) bool { return s.Running == 1 }, allLogs)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var lr api.LogsResult
		err := clusterCall(ctx, sv, "service_logs", map[string]any{"name": "vault"}, &lr)
		text := fmt.Sprint(lr.Instances)
		if strings.Contains(text, pw) {
			t.Fatalf("service_logs shows the secret's value: %s", text)
		}
		if err == nil && strings.Contains(text, "pw=") {
			t.Logf("vault's log through a server: %s", text)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service_logs of vault: %s, %v\n%s", text, err, allLogs())
		}
	}
	_ = clusterCall(ctx, sv, "remove_service", map[string]any{"name": "vault"}, nil)

	// Remove the service so the workers stop their containers before the
	// bed goes.
	_ = clusterCall(ctx, sv, "remove_service", map[string]any{"name": "sleeper"}, nil)
	waitGone := time.Now().Add(30 * time.Second)
	for time.Now().Before(waitGone) {
		if err := clusterCall(ctx, sv, "get_service", map[string]any{"name": "sleeper"}, &st); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitHealth(t *testing.T, ctx context.Context, c *clusterNode, timeout time.Duration, cond func(health) bool) health {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, err := c.health(ctx)
		if err == nil && cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: health %+v, %v after %v\n%s", c.name, h, err, timeout, c.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vmRSS is a process's resident memory as /proc says it ("" if gone).
func vmRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// withoutToken drops --token and its value: a restart needs none.
func withoutToken(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--token" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// checkSlots fails when two live instances share a replica slot.
func checkSlots(t *testing.T, s api.ServiceStatus) {
	t.Helper()
	seen := map[int]string{}
	for _, in := range s.Instances {
		if in.State == "lost" || in.State == "stopped" {
			continue
		}
		if other, dup := seen[in.Slot]; dup {
			t.Errorf("slot %d has two instances: %s and %s", in.Slot, other, in.ID)
		}
		seen[in.Slot] = in.ID
	}
}

// runcRunning lists the running containers in a worker's runc root.
func runcRunning(runDir string) []string {
	out, err := exec.Command("runc", "--root", filepath.Join(runDir, "runc"), "list", "-f", "json").Output()
	if err != nil {
		return nil
	}
	var cs []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(out, &cs)
	var ids []string
	for _, c := range cs {
		if c.Status == "running" {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
