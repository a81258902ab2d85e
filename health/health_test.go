package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func TestProbeHTTP(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	ip, port := hostPort(t, srv.Listener.Addr().String())
	h := &spec.Health{HTTP: &spec.HTTPCheck{Port: "http", Path: "/healthz"}, Timeout: spec.Duration(time.Second)}
	tgt := Target{IP: ip, Ports: map[string]int{"http": port}}
	if err := Probe(context.Background(), h, tgt); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := Probe(context.Background(), h, tgt); err == nil {
		t.Fatal("503 should be unhealthy")
	}
	status = http.StatusFound
	if err := Probe(context.Background(), h, tgt); err != nil {
		t.Fatalf("302 should be healthy: %v", err)
	}
	h.HTTP.Port = "nope"
	if err := Probe(context.Background(), h, tgt); err == nil {
		t.Fatal("unknown port name should fail")
	}
}

func TestProbeTCPAndTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ip, port := hostPort(t, ln.Addr().String())
	h := &spec.Health{TCP: &spec.TCPCheck{Port: strconv.Itoa(port)}, Timeout: spec.Duration(500 * time.Millisecond)}
	if err := Probe(context.Background(), h, Target{IP: ip}); err != nil {
		t.Fatalf("listening port: %v", err)
	}
	ln.Close()
	if err := Probe(context.Background(), h, Target{IP: ip}); err == nil {
		t.Fatal("closed port should be unhealthy")
	}

	// A server that never answers is cut off by the timeout.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer hang.Close()
	ip, port = hostPort(t, hang.Listener.Addr().String())
	hh := &spec.Health{HTTP: &spec.HTTPCheck{Port: strconv.Itoa(port)}, Timeout: spec.Duration(200 * time.Millisecond)}
	start := time.Now()
	if err := Probe(context.Background(), hh, Target{IP: ip}); err == nil {
		t.Fatal("hanging server should be unhealthy")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout not honoured: took %v", d)
	}
}

type fakeExec struct{ code int }

func (f fakeExec) Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (int, []byte, error) {
	if len(argv) == 0 {
		return 0, nil, errors.New("empty")
	}
	return f.code, []byte("out"), nil
}

func TestProbeExec(t *testing.T) {
	h := &spec.Health{Exec: &spec.ExecCheck{Command: []string{"true"}}}
	if err := Probe(context.Background(), h, Target{Exec: fakeExec{0}}); err != nil {
		t.Fatal(err)
	}
	if err := Probe(context.Background(), h, Target{Exec: fakeExec{1}}); err == nil {
		t.Fatal("exit 1 should be unhealthy")
	}
	if err := Probe(context.Background(), h, Target{}); err == nil {
		t.Fatal("no execer should fail")
	}
}

func TestTracker(t *testing.T) {
	tr := Tracker{Failures: 3}
	fail := errors.New("x")
	// Failures before the first success: unhealthy only at the threshold.
	if got := tr.Record(fail); got != "" {
		t.Fatalf("1st failure: %q", got)
	}
	tr.Record(fail)
	if got := tr.Record(fail); got != "unhealthy" {
		t.Fatalf("3rd failure: %q", got)
	}
	if got := tr.Record(nil); got != "healthy" || !tr.Healthy() {
		t.Fatalf("success: %q", got)
	}
	if got := tr.Record(nil); got != "" {
		t.Fatalf("second success: %q", got)
	}
	tr.Record(fail)
	tr.Record(fail)
	if tr.Healthy() != true {
		t.Fatal("below threshold should stay healthy")
	}
	if got := tr.Record(fail); got != "unhealthy" || tr.Healthy() {
		t.Fatalf("threshold: %q", got)
	}
	if got := tr.Record(fail); got != "" {
		t.Fatalf("already unhealthy: %q", got)
	}
}
