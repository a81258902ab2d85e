// Package health runs an instance's health check (http, tcp or exec) once,
// and tracks consecutive results against the spec's failure threshold.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Execer runs a command inside an instance and returns its exit code.
type Execer interface {
	Exec(ctx context.Context, id string, argv []string, timeout time.Duration) (code int, output []byte, err error)
}

// Target is the instance a check probes.
type Target struct {
	ID    string
	IP    string         // the instance's own IP (the worker probes it directly)
	Ports map[string]int // container port by name
	Exec  Execer
}

// client is shared by HTTP checks; checks never reuse connections so a
// wedged server cannot hide behind a kept-alive socket.
var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a 3xx is a healthy answer; don't follow it
	},
}

// Probe runs the check once, bounded by the check's timeout. A nil error
// means healthy.
func Probe(ctx context.Context, h *spec.Health, t Target) error {
	if h == nil {
		return nil
	}
	timeout := h.Timeout.D()
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.HTTP != nil:
		port, err := resolvePort(h.HTTP.Port, t.Ports)
		if err != nil {
			return err
		}
		path := h.HTTP.Path
		if path == "" {
			path = "/"
		}
		u := "http://" + net.JoinHostPort(t.IP, strconv.Itoa(port)) + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("http check: %w", err)
		}
		req.Header.Set("User-Agent", "gantry-health/1")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("http check GET %s: %w", path, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("http check GET %s: status %d", path, resp.StatusCode)
		}
		return nil
	case h.TCP != nil:
		port, err := resolvePort(h.TCP.Port, t.Ports)
		if err != nil {
			return err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.IP, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("tcp check: %w", err)
		}
		c.Close()
		return nil
	case h.Exec != nil:
		if t.Exec == nil {
			return errors.New("exec check: no exec support for this instance")
		}
		code, out, err := t.Exec.Exec(ctx, t.ID, h.Exec.Command, timeout)
		if err != nil {
			return fmt.Errorf("exec check: %w", err)
		}
		if code != 0 {
			if len(out) > 200 {
				out = out[:200]
			}
			return fmt.Errorf("exec check: exit code %d: %q", code, out)
		}
		return nil
	}
	return errors.New("health check has no http, tcp or exec probe")
}

func resolvePort(p string, ports map[string]int) (int, error) {
	if n, ok := ports[p]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("health check port %q is neither a declared port name nor a port number", p)
	}
	return n, nil
}

// Tracker counts consecutive results. It is not safe for concurrent use.
type Tracker struct {
	Failures int // threshold; <=0 means 3

	consecutive int
	healthy     bool
	seen        bool
}

// Record adds one probe result and reports the transition, if any:
// became is "healthy" when the first success arrives after failures or at
// start, "unhealthy" when failures reach the threshold, "" otherwise.
func (t *Tracker) Record(err error) (became string) {
	threshold := t.Failures
	if threshold <= 0 {
		threshold = 3
	}
	if err == nil {
		t.consecutive = 0
		if !t.healthy || !t.seen {
			t.healthy, t.seen = true, true
			return "healthy"
		}
		return ""
	}
	t.consecutive++
	if t.consecutive >= threshold && (t.healthy || !t.seen) {
		t.healthy, t.seen = false, true
		return "unhealthy"
	}
	return ""
}

// Healthy reports the current verdict.
func (t *Tracker) Healthy() bool { return t.healthy }
