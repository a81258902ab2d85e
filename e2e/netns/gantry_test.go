package netns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/gantry-dev/gantry/api"
)

var gantryBin string // built by TestMain when beds can be made here

func TestMain(m *testing.M) {
	code := 0
	if Available() == nil && os.Getenv(helperEnv) == "" {
		dir, err := os.MkdirTemp("", "gantry-netns-bin")
		if err != nil {
			panic(err)
		}
		gantryBin = filepath.Join(dir, "gantry")
		cmd := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
		cmd.Dir, cmd.Env = "../..", append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e/netns: build gantry: %v\n%s", err, out)
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
		fmt.Fprintf(os.Stderr, "e2e/netns: goroutines left running: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// nodeCert writes a private CA and a server certificate for ip, and
// returns the files and a pool trusting the CA.
func nodeCert(t *testing.T, ip netip.Addr) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry netns test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{ip.AsSlice()},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	for path, blk := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return certFile, keyFile, pool
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

func healthz(tr http.RoundTripper, url string, timeout time.Duration) error {
	c := &http.Client{Transport: tr, Timeout: timeout}
	resp, err := c.Get(url + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: status %d", resp.StatusCode)
	}
	return nil
}

func listNodes(ctx context.Context, tr http.RoundTripper, url, token string) (api.NodeList, error) {
	cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-netns-test", Version: "1"}, nil)
	s, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url + "/mcp", HTTPClient: &http.Client{Transport: bearer{token, tr}}}, nil)
	if err != nil {
		return api.NodeList{}, err
	}
	defer s.Close()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "list_nodes", Arguments: map[string]any{}})
	if err != nil {
		return api.NodeList{}, err
	}
	if res.IsError {
		return api.NodeList{}, fmt.Errorf("list_nodes: %+v", res.Content)
	}
	var nl api.NodeList
	raw, err := jsonRoundTrip(res.StructuredContent, &nl)
	if err != nil {
		return nl, fmt.Errorf("list_nodes: %w: %s", err, raw)
	}
	return nl, nil
}

// gantry dev runs as node 1 of a bed, serving MCP over TLS on the node's
// address: the host and node 2 reach /healthz and MCP; when node 1 is
// partitioned node 2 cannot reach it (each attempt failing within a
// second) and after Heal it can again; SIGKILL ends it, and Close leaves
// nothing behind.
func TestGantryDevInANode(t *testing.T) {
	t.Parallel()
	b := NewT(t, 2)
	n1, n2 := b.Node(1), b.Node(2)
	certFile, keyFile, pool := nodeCert(t, n1.IP)
	dataDir := t.TempDir()
	runDir := "/run/gantry-" + b.Tag()
	t.Cleanup(func() {
		_ = os.RemoveAll(runDir)
		_ = os.Remove("/run/gantry-bridges/g" + b.Tag() + ".lock")
	})
	logPath := filepath.Join(dataDir, "gantry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := net.JoinHostPort(n1.IP.String(), "7433")
	// The container bridge and subnet live inside node 1's namespace, but
	// gantry dev locks its bridge name in /run/gantry-bridges, which nodes
	// share with the host: the name is the bed's.
	cmd := n1.Exec(ctx, gantryBin, "dev", "--data-dir", dataDir, "--run-dir", runDir, "--listen", addr,
		"--tls-cert", certFile, "--tls-key", keyFile, "--bridge", "g"+b.Tag(), "--subnet", "10.90.0.0/24",
		"--node-name", "node1", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	gantryLog := func() string { bs, _ := os.ReadFile(logPath); return string(bs) }

	url := "https://" + addr
	tlsConf := &tls.Config{RootCAs: pool}
	fromHost := &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: DialTimeout}).DialContext}
	fromNode2 := n2.HTTPTransport(tlsConf)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := healthz(fromHost, url, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gantry dev in %s did not answer: %v\n%s", n1, err, gantryLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))

	if err := healthz(fromNode2, url, 2*time.Second); err != nil {
		t.Errorf("node 2 -> gantry in node 1: %v", err)
	}
	for who, tr := range map[string]http.RoundTripper{"host": fromHost, "node 2": fromNode2} {
		nl, err := listNodes(ctx, tr, url, token)
		if err != nil || len(nl.Nodes) != 1 || nl.Nodes[0].Name != "node1" {
			t.Errorf("list_nodes from %s over MCP: %+v, %v", who, nl, err)
		}
	}

	if err := b.Partition(ctx, n1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := healthz(fromNode2, url, time.Second); err == nil {
		t.Error("node 2 reached gantry in a partitioned node 1")
	}
	if err := healthz(fromHost, url, time.Second); err == nil {
		t.Error("the host reached gantry in a partitioned node 1")
	}
	if d := time.Since(start); d > 5*time.Second { // each gives up after a second; slack for a loaded machine
		t.Errorf("the two refused probes took %v, want about a second each", d)
	}

	if err := b.Heal(ctx, n1); err != nil {
		t.Fatal(err)
	}
	healed := time.Now().Add(5 * time.Second)
	for {
		err := healthz(fromNode2, url, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(healed) {
			t.Fatalf("node 2 cannot reach gantry in node 1 after Heal: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if nl, err := listNodes(ctx, fromNode2, url, token); err != nil || len(nl.Nodes) != 1 {
		t.Errorf("list_nodes from node 2 after Heal: %+v, %v", nl, err)
	}

	// SIGKILL, as a machine losing power.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		waited <- err // for the cleanup
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("gantry dev ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gantry dev survived SIGKILL")
	}
	if err := healthz(fromNode2, url, time.Second); err == nil {
		t.Error("gantry answered after SIGKILL")
	}
	if err := n1.KillAll(ctx); err != nil {
		t.Error(err)
	}
	if pids, err := n1.Pids(ctx); err != nil || len(pids) != 0 {
		t.Errorf("processes left in node 1 after SIGKILL: %v, %v", pids, err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	assertGone(t, b.Tag())
	if strings.Contains(mountsOf(t), runDir) {
		t.Errorf("gantry's mounts under %s leaked into the host's mount namespace", runDir)
	}
}

func mountsOf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonRoundTrip decodes a tool's structured content into out.
func jsonRoundTrip(in, out any) ([]byte, error) {
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return raw, json.Unmarshal(raw, out)
}
