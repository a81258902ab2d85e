package cluster

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

func TestParseServerFlags(t *testing.T) {
	o, err := ParseServerFlags([]string{"--data-dir", "rel", "--name", "s1", "--advertise", "10.0.0.5", "--join", "10.0.0.1", "--token", "x",
		"--insecure-registry", "10.0.0.1:5000"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.MCP.Insecure) != 1 || o.MCP.Insecure[0] != "10.0.0.1:5000" {
		t.Errorf("--insecure-registry: %v", o.MCP.Insecure)
	}
	if !filepath.IsAbs(o.Node.DataDir) || o.MCP.DataDir != o.Node.DataDir || o.MCP.NodeName != "s1" {
		t.Errorf("data dir and name: %+v", o.Node)
	}
	if len(o.Node.Join) != 1 || o.Node.Join[0] != "10.0.0.1:7434" {
		t.Errorf("--join without a port gets the RPC port: %v", o.Node.Join)
	}
	if got := advertised(o.Node.RPCAddr, o.Node.Advertise); got != "10.0.0.5:7434" {
		t.Errorf("advertised RPC address %q", got)
	}
	if got := advertised(o.RaftAddr, o.Node.Advertise); got != "10.0.0.5:7435" {
		t.Errorf("advertised Raft address %q", got)
	}
	if got := advertised("10.0.0.9:1234", "10.0.0.5"); got != "10.0.0.9:1234" {
		t.Errorf("a bind address with a host is advertised as is: %q", got)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "Bad_Name", "--advertise", "10.0.0.5"}, "--name"},
		{[]string{"--name", "s1", "--advertise", "0.0.0.0"}, "--advertise"},
		{[]string{"--name", "s1", "--advertise", "10.0.0.5", "--bootstrap", "--join", "10.0.0.1"}, "exclude each other"},
		{[]string{"--name", "s1", "--advertise", "10.0.0.5", "--listen", "10.0.0.5:7433"}, "requires TLS"},
		{[]string{"--name", "s1", "--advertise", "10.0.0.5", "extra"}, "unexpected argument"},
		{[]string{"--name", "s1", "--advertise", "10.0.0.5", "--bootstrap-expect", "9"}, "0 (off) to 7"},
	} {
		_, err := ParseServerFlags(c.args, &bytes.Buffer{})
		if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an invalid-argument error with %q", c.args, err, c.want)
		}
	}
}

func TestParseWorkerFlags(t *testing.T) {
	o, err := ParseWorkerFlags([]string{"--name", "w1", "--advertise", "10.0.0.7", "--cpu", "1500m", "--memory", "2Gi",
		"--zone", "eu-1a", "--label", "disk=ssd", "--run-dir", "run"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.CPU != 1500 || o.Memory != 2<<30 {
		t.Errorf("cpu %d memory %d", o.CPU, o.Memory)
	}
	if o.Labels["disk"] != "ssd" || o.Labels["zone"] != "eu-1a" || o.Zone != "eu-1a" {
		t.Errorf("labels %v zone %q", o.Labels, o.Zone)
	}
	if !filepath.IsAbs(o.RunDir) {
		t.Errorf("run dir %q is not absolute", o.RunDir)
	}
	for _, args := range [][]string{
		{"--name", "w1", "--advertise", "10.0.0.7", "--label", "novalue"},
		{"--name", "w1", "--advertise", "10.0.0.7", "--port-range", "5-3"},
		{"--name", "w1", "--advertise", "10.0.0.7", "--cpu", "lots"},
	} {
		if _, err := ParseWorkerFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// A node that has not joined is told how to; a token of the other role is
// refused before anything is sent.
func TestJoinClusterRefusesBeforeDialing(t *testing.T) {
	dir := t.TempDir()
	o := &NodeOptions{DataDir: dir, Name: "w1", Advertise: "127.0.0.1"}
	_, err := joinCluster(t.Context(), o, pki.RoleWorker, "", "", "", nil)
	if err == nil || !strings.Contains(err.Error(), "has not joined") {
		t.Errorf("no token: %v", err)
	}
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := pki.NewJoinToken(pki.RoleServer, ca.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	o.Token, o.Join = tok, []string{"127.0.0.1:1"}
	_, err = joinCluster(t.Context(), o, pki.RoleWorker, "", "", "", nil)
	if err == nil || !strings.Contains(err.Error(), "is a server token") {
		t.Errorf("server token for a worker: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("refused joins wrote %d files", len(ents))
	}
}

// A server signs itself a new certificate when its own is old or expired,
// and presents it at once; a young one is kept.
func TestRenewServerCert(t *testing.T) {
	for _, age := range []time.Duration{2 * time.Hour, 5 * time.Hour} { // 3h certificate: old, then expired
		dir := t.TempDir()
		start := time.Now().Add(-age)
		ca, err := pki.NewCA(start)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, csr, err := pki.NewKeyAndCSR("s1")
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := ca.Issue(csr, pki.RoleServer, "s1", nil, 3*time.Hour, start)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteNodeFiles(tlsDir(dir), certPEM, keyPEM, ca.CertPEM()); err != nil {
			t.Fatal(err)
		}
		key, _ := membership.GenerateKey()
		if err := writeGossipKey(tlsDir(dir), key); err != nil {
			t.Fatal(err)
		}
		id, err := loadIdentity(dir, pki.RoleServer, "s1")
		if err != nil {
			t.Fatalf("age %v: %v", age, err)
		}
		old := id.cert.Cert
		log := slog.New(slog.DiscardHandler)
		if err := renewServerCert(dir, id, ca, time.Now(), log); err != nil {
			t.Fatal(err)
		}
		if id.cert.Cert.SerialNumber.Cmp(old.SerialNumber) == 0 || !id.cert.Cert.NotAfter.After(time.Now().Add(300*24*time.Hour)) {
			t.Errorf("age %v: not renewed: %v", age, id.cert.Cert.NotAfter)
		}
		if got := id.reloader.Certificate().Leaf; got == nil || got.SerialNumber.Cmp(id.cert.Cert.SerialNumber) != 0 {
			t.Errorf("age %v: the reloader does not present the new certificate", age)
		}
		onDisk, err := pki.LoadNodeFiles(tlsDir(dir))
		if err != nil || onDisk.Cert.SerialNumber.Cmp(id.cert.Cert.SerialNumber) != 0 {
			t.Errorf("age %v: the new certificate is not on disk: %v", age, err)
		}
		// A young certificate is kept.
		serial := id.cert.Cert.SerialNumber
		if err := renewServerCert(dir, id, ca, time.Now(), log); err != nil || id.cert.Cert.SerialNumber.Cmp(serial) != 0 {
			t.Errorf("age %v: a fresh certificate was renewed again: %v", age, err)
		}
	}
}

// issueTLS makes a node certificate of role for name from ca.
func issueTLS(t *testing.T, ca *pki.CA, role pki.Role, name string) tls.Certificate {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, role, name, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.KeyPair(certPEM, keyPEM, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A worker serves the end of an instance's log to servers over mutual TLS,
// and to nobody else.
func TestWorkerLogsEndpoint(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath := func(id string) string { return filepath.Join(dir, id, "container.log") }
	if err := os.MkdirAll(filepath.Dir(logPath("web-0-abc")), 0o700); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", maxLogFetch) + "last line\n"
	if err := os.WriteFile(logPath("web-0-abc"), []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(workerLogsHandler(logPath))
	srv.TLS = pki.ServerTLS(ca.CertPEM(), issueTLS(t, ca, pki.RoleWorker, "w1"), pki.RoleServer)
	srv.StartTLS()
	defer srv.Close()
	get := func(role pki.Role, id string) (int, string, error) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(ca.CertPEM(), issueTLS(t, ca, role, "n1"), pki.RoleWorker)}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(srv.URL + workerLogsPath + id)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	code, body, err := get(pki.RoleServer, "web-0-abc")
	if err != nil || code != http.StatusOK || len(body) != maxLogFetch || !strings.HasSuffix(body, "last line\n") {
		t.Errorf("server reading a log: %d, %d bytes, %v; want the last %d bytes", code, len(body), err, maxLogFetch)
	}
	if code, _, _ := get(pki.RoleServer, "nope-0-abc"); code != http.StatusNotFound {
		t.Errorf("missing log: %d, want 404", code)
	}
	if code, _, _ := get(pki.RoleServer, "..%2f..%2fetc"); code != http.StatusBadRequest {
		t.Errorf("bad instance id: %d, want 400", code)
	}
	if _, _, err := get(pki.RoleWorker, "web-0-abc"); err == nil {
		t.Error("a worker certificate read another worker's logs")
	}
}

// A worker may open a secret only when a service that references it has
// an instance on the worker's node.
func TestSecretsAllowedByPlacement(t *testing.T) {
	st, err := state.Open(t.Context(), state.Config{DataDir: t.TempDir(), NodeID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sp := spec.Service{Name: "db", Image: "busybox:1", Replicas: 1, Secrets: map[string]string{"PW": "db-pass"}}
	if _, err := st.Apply(t.Context(), state.PutSecret{Name: "db-pass", Sealed: make([]byte, 40)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(t.Context(), state.PutService{Service: state.Service{Name: "db", Spec: sp, Version: 1}},
		state.PutInstance{Instance: state.Instance{ID: "db-0-abc", Service: "db", Node: "w1", Desired: state.DesiredRun, SpecVersion: 1}}); err != nil {
		t.Fatal(err)
	}
	s := &serverNode{st: st}
	if n, ok := s.secretsAllowed("w1", []string{"db-pass"}); !ok {
		t.Errorf("w1 runs db: refused %q", n)
	}
	if _, ok := s.secretsAllowed("w2", []string{"db-pass"}); ok {
		t.Error("w2 runs nothing that uses db-pass, and got it")
	}
	if n, ok := s.secretsAllowed("w1", []string{"db-pass", "other"}); ok || n != "other" {
		t.Errorf("w1 asked for a secret db does not use: %q, %v", n, ok)
	}
}

// A worker with an old certificate gets a new one with the same identity
// from a server, over the certificate it renews, and presents it at once.
func TestWorkerRenewsThroughServer(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA(now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, csr, err := pki.NewKeyAndCSR("w1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, pki.RoleWorker, "w1", []net.IP{net.ParseIP("10.0.0.7")}, 90*time.Minute, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteNodeFiles(tlsDir(dir), certPEM, keyPEM, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	key, _ := membership.GenerateKey()
	if err := writeGossipKey(tlsDir(dir), key); err != nil {
		t.Fatal(err)
	}
	id, err := loadIdentity(dir, pki.RoleWorker, "w1")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	s := &serverNode{ca: ca, log: log}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.renewHandler))
	srv.TLS = pki.JoinServerTLS(ca.CertPEM(), issueTLS(t, ca, pki.RoleServer, "s1"))
	srv.StartTLS()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	old := id.cert.Cert
	if err := renewWorkerCert(t.Context(), dir, id, []string{addr}, now, log); err != nil {
		t.Fatal(err)
	}
	got := id.cert
	if got.Cert.SerialNumber.Cmp(old.SerialNumber) == 0 || got.Role != pki.RoleWorker || got.Name != "w1" ||
		!got.Cert.NotAfter.After(now.Add(300*24*time.Hour)) || len(got.Cert.IPAddresses) != 1 {
		t.Errorf("renewed certificate: role %s name %s not after %v ips %v", got.Role, got.Name, got.Cert.NotAfter, got.Cert.IPAddresses)
	}
	if l := id.reloader.Certificate().Leaf; l == nil || l.SerialNumber.Cmp(got.Cert.SerialNumber) != 0 {
		t.Error("the reloader does not present the renewed certificate")
	}
	if err := renewWorkerCert(t.Context(), dir, id, []string{addr}, now, log); err != nil || id.cert.Cert.SerialNumber.Cmp(got.Cert.SerialNumber) != 0 {
		t.Errorf("a fresh certificate was renewed again: %v", err)
	}
}

// A worker whose certificate expired (off for too long) is told so at
// start, with the way out.
func TestWorkerExpiredCertificateRefused(t *testing.T) {
	start := time.Now().Add(-3 * time.Hour)
	ca, err := pki.NewCA(start)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, csr, err := pki.NewKeyAndCSR("w1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, pki.RoleWorker, "w1", nil, time.Hour, start)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteNodeFiles(tlsDir(dir), certPEM, keyPEM, ca.CertPEM()); err != nil {
		t.Fatal(err)
	}
	_, err = loadIdentity(dir, pki.RoleWorker, "w1")
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "join token") {
		t.Errorf("expired worker certificate: %v", err)
	}
	if _, err := loadIdentity(dir, pki.RoleServer, "w1"); err == nil || !strings.Contains(err.Error(), "not server") {
		t.Errorf("a worker's certificate loaded as a server's: %v", err)
	}
}
