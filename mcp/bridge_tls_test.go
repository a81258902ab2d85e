package mcp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

// A stdio client reaches an https endpoint whose certificate a private CA
// signed when the bridge is given that CA (gantry mcp --ca-file), and gets
// an error naming the certificate problem when it is not.
func TestBridgeTLSTrustsGivenCA(t *testing.T) {
	cl := mcptest.New()
	srv, err := mcp.NewServer(mcp.Config{Services: cl, Images: cl, Token: testToken, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	ts := httptest.NewUnstartedServer(mux)
	// The handshake the untrusting bridge aborts is expected.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())

	ask := func(conf *tls.Config) string {
		t.Helper()
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- mcp.BridgeTLS(context.Background(), ts.URL+"/mcp", testToken, conf, inR, outW)
			outW.Close()
		}()
		go func() {
			_, _ = io.WriteString(inW, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tls","version":"1"}}}`+"\n")
		}()
		buf := make([]byte, 8192)
		n, err := outR.Read(buf)
		if err != nil {
			t.Fatalf("no reply from the bridge: %v", err)
		}
		inW.Close()
		go func() { _, _ = io.Copy(io.Discard, outR) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("BridgeTLS did not return after stdin closed")
		}
		return string(buf[:n])
	}

	if reply := ask(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}); !strings.Contains(reply, `"protocolVersion":"2025-11-25"`) {
		t.Errorf("with the CA: reply %s, want an initialize result", reply)
	}
	if reply := ask(nil); !strings.Contains(reply, `"error"`) || !strings.Contains(reply, "certificate") {
		t.Errorf("without the CA: reply %s, want an error naming the certificate problem", reply)
	}
	ts.Client().CloseIdleConnections()
}
