package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// --consistent asks a cluster server for linearizable reads with the header
// the server looks for; without it no header is sent.
func TestConsistentHeader(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Gantry-Consistency"))
	}))
	defer srv.Close()
	for _, consistent := range []bool{true, false} {
		rt := &authTransport{token: "t", consistent: consistent, base: &http.Transport{}}
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 2 || got[0] != "linearizable" || got[1] != "" {
		t.Fatalf("Gantry-Consistency headers sent = %q, want [linearizable, none]", got)
	}
	noEnv := func(string) (string, bool) { return "", false }
	a := newApp(io.Discard, io.Discard, nil, noEnv)
	fs := newFlagSet("ps")
	a.g.register(fs)
	if _, err := a.parse(fs, cmdHelp{usage: "ps"}, []string{"--consistent"}); err != nil || !a.g.consistent {
		t.Fatalf("--consistent: err %v, set %v", err, a.g.consistent)
	}
	env := func(k string) (string, bool) { return "1", k == "GANTRY_CONSISTENT" }
	if a := newApp(io.Discard, io.Discard, nil, env); !a.g.consistent {
		t.Fatal("GANTRY_CONSISTENT=1 did not turn on linearizable reads")
	}
	if a := newApp(io.Discard, io.Discard, nil, noEnv); a.g.consistent {
		t.Fatal("linearizable reads on without --consistent")
	}
}

// A server that cannot answer (a cluster server with no leader, asked for
// a --consistent read) says why in its 503's body; the CLI shows that
// reason instead of the MCP client's bare "Service Unavailable".
func TestUnavailableReason(t *testing.T) {
	const why = "linearizable read: no leader is known (retry, or send the request to another server)"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, why, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	env := func(k string) (string, bool) {
		switch k {
		case "GANTRY_ADDR":
			return srv.URL + "/mcp", true
		case "GANTRY_TOKEN":
			return "t0123456789", true
		}
		return "", false
	}
	a := newApp(io.Discard, io.Discard, nil, env)
	c, err := a.connect(context.Background())
	if err == nil {
		c.Close()
		t.Fatal("connect to a server answering 503 succeeded")
	}
	for _, want := range []string{"503 Service Unavailable", why} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q, want it to contain %q", err, want)
		}
	}
}
