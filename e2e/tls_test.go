package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// testPKI is a private CA and a server certificate it signed for 127.0.0.1,
// written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry e2e test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem"),
		pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	for path, b := range map[string]*pem.Block{p.caFile: {Type: "CERTIFICATE", Bytes: caDER}, p.certFile: {Type: "CERTIFICATE", Bytes: der},
		p.keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// gantry dev serves MCP over HTTPS with --tls-cert/--tls-key; the CLI
// trusts the private CA through --ca-file or GANTRY_CA_FILE, and without it
// is refused with an error that names the certificate problem. A plain
// http:// client gets no MCP answer.
func TestTLSEndpoint(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	pki := newTestPKI(t, t.TempDir())
	trusting := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}
	t.Cleanup(trusting.CloseIdleConnections)
	d := startDevFlags(t, "https", &http.Client{Transport: trusting, Timeout: 5 * time.Second}, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile)

	// The Go SDK client, trusting the CA: a real MCP session over HTTPS.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-tls", Version: "1"}, nil)
	var err error
	d.session, err = cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "https://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{d.token, trusting}}}, nil)
	if err != nil {
		t.Fatalf("MCP over TLS: %v\n%s", err, d.log())
	}
	var nodes api.NodeList
	d.call("list_nodes", map[string]any{}, &nodes)
	if len(nodes.Nodes) != 1 {
		t.Errorf("list_nodes over TLS: %+v", nodes)
	}

	cli := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(gantryBin, args...)
		cmd.Env = append(os.Environ(), append([]string{"GANTRY_ADDR=https://" + d.addr + "/mcp", "GANTRY_TOKEN=" + d.token}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli(nil, "nodes", "--ca-file", pki.caFile); err != nil || !strings.Contains(out, "ready") {
		t.Errorf("gantry nodes --ca-file: %v\n%s", err, out)
	}
	if out, err := cli([]string{"GANTRY_CA_FILE=" + pki.caFile}, "ps"); err != nil {
		t.Errorf("gantry ps with GANTRY_CA_FILE: %v\n%s", err, out)
	}
	out, err := cli(nil, "nodes")
	if err == nil || !strings.Contains(out, "certificate") || !strings.Contains(out, "--ca-file") {
		t.Errorf("gantry nodes without the CA: err=%v, want a certificate error that names --ca-file:\n%s", err, out)
	}
	// Plain HTTP to the TLS port never reaches the MCP handler.
	if resp, err := http.Post("http://"+d.addr+"/mcp", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain http to the TLS port: status %d, want 400", resp.StatusCode)
		}
	}
}

// startDevFlags starts gantry dev with extra flags, waits until
// scheme://addr/healthz answers through hc, and reads the admin token. The
// caller connects d.session.
func startDevFlags(t *testing.T, scheme string, hc *http.Client, extra ...string) *dev {
	t.Helper()
	d := newDev(t, extra...)
	d.scheme, d.hc = scheme, hc
	t.Cleanup(d.shutdown)
	d.launch()
	return d
}
