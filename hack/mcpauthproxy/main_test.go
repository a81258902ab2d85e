package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The proxy adds the bearer token and passes Host and Origin through, so
// the server's DNS-rebinding and Origin checks see what the client sent.
func TestProxyAddsTokenKeepsHostAndOrigin(t *testing.T) {
	var gotAuth, gotHost, gotOrigin, gotPath string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotHost, gotOrigin, gotPath = r.Header.Get("Authorization"), r.Host, r.Header.Get("Origin"), r.URL.Path
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	h, err := newProxy(backend.URL, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	defer front.Close()

	req, _ := http.NewRequest("POST", front.URL+"/mcp", strings.NewReader("{}"))
	req.Host = "evil.example:80"
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Authorization", "Bearer client-supplied")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	if gotAuth != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the proxy's token replacing the client's", gotAuth)
	}
	if gotHost != "evil.example:80" || gotOrigin != "http://evil.example" || gotPath != "/mcp" {
		t.Errorf("host %q origin %q path %q: want them passed through", gotHost, gotOrigin, gotPath)
	}
}

func TestProxyRefusesNonLoopback(t *testing.T) {
	if _, err := newProxy("http://example.com:7433", "t"); err == nil {
		t.Error("a non-loopback target was accepted")
	}
	if _, err := newProxy("https://127.0.0.1:7433", "t"); err == nil {
		t.Error("an https target was accepted (the proxy only speaks plain http to loopback)")
	}
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0", "--target", "http://127.0.0.1:1"}, "t", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback --listen: err = %v, want a loopback error", err)
	}
	err = run(context.Background(), []string{"--target", "http://127.0.0.1:1"}, " ", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "GANTRY_TOKEN") {
		t.Errorf("empty token: err = %v, want a GANTRY_TOKEN error", err)
	}
}
