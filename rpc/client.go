package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Client retry bounds.
const (
	maxApplyAttempts = 8
	maxRedirects     = 3
	backoffStart     = 50 * time.Millisecond
	backoffMax       = time.Second
	// applyTimeout bounds one attempt of an apply whose ctx has no deadline.
	applyTimeout = 15 * time.Second
	// maxResponseBytes bounds what a client reads from a server.
	maxResponseBytes = 64 << 20
)

// Client calls the node RPC of a cluster's servers.
type Client struct {
	servers []string
	http    *http.Client
	tr      *http.Transport
	log     *slog.Logger

	mu     sync.Mutex
	leader string // the server that last applied a write
	good   string // the server that last answered
}

// NewClient returns a client of servers (RPC addresses, host:port) that
// presents the node's certificate from tlsConf (pki.ClientTLS).
func NewClient(servers []string, tlsConf *tls.Config, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := newTransport(tlsConf)
	return &Client{
		servers: slicesClone(servers),
		http:    &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		tr:      tr,
		log:     log.With("component", "rpc-client"),
	}
}

func newTransport(tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// Servers returns the addresses the client knows.
func (c *Client) Servers() []string { return slicesClone(c.servers) }

// Close closes idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// candidates orders the servers to try: the preferred one first (when
// known), then the others in their configured order.
func (c *Client) candidates(prefer string) []string {
	out := make([]string, 0, len(c.servers)+1)
	if prefer != "" {
		out = append(out, prefer)
	}
	for _, s := range c.servers {
		if s != prefer {
			out = append(out, s)
		}
	}
	return out
}

// Apply sends a raw command (state.EncodeCommand) to the leader. It follows
// a follower's redirect and tries the other servers while none answers
// (connection refused, no leader yet), backing off between rounds, within
// ctx. A write that reached a server but got no answer is not retried (it
// may have been applied): that fails with errdefs.ErrUnavailable.
//
// When every attempt failed before the write could be appended (no server
// reachable, no leader), the error wraps ErrNotLeader as well.
func (c *Client) Apply(ctx context.Context, cmd []byte) (ApplyResponse, error) {
	c.mu.Lock()
	leader := c.leader
	c.mu.Unlock()
	return c.applyFrom(ctx, leader, cmd)
}

// ApplyAt is Apply starting at the server at addr (an RPC address, say the
// leader's that state.Config.Forward is given, once mapped to its RPC port).
func (c *Client) ApplyAt(ctx context.Context, addr string, cmd []byte) (ApplyResponse, error) {
	return c.applyFrom(ctx, addr, cmd)
}

func (c *Client) applyFrom(ctx context.Context, first string, cmd []byte) (ApplyResponse, error) {
	cands := c.candidates(first)
	if len(cands) == 0 {
		return ApplyResponse{}, errdefs.WithHint(fmt.Errorf("apply: no servers configured: %w", errdefs.ErrInvalid), "pass the servers' --rpc-addr")
	}
	var lastErr error
	next, redirects, backoff := 0, 0, backoffStart
	target := cands[0]
	for attempt := 0; attempt < maxApplyAttempts; attempt++ {
		status, body, err := c.do(ctx, http.MethodPost, target, PathApply, cmd, applyTimeout)
		if err == nil && status == http.StatusOK {
			var resp ApplyResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				return ApplyResponse{}, fmt.Errorf("apply at %s: decode response: %w", target, err)
			}
			c.mu.Lock()
			c.leader, c.good = target, target
			c.mu.Unlock()
			return resp, nil
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return ApplyResponse{}, fmt.Errorf("apply: %w", ctx.Err())
		case err != nil && !unsent(err):
			return ApplyResponse{}, errdefs.WithHint(fmt.Errorf("apply at %s: %w (the write may have been applied): %w", target, err, errdefs.ErrUnavailable),
				"read the state to see whether it was, then retry if needed")
		case err != nil:
			c.log.Debug("server unreachable", "server", target, "err", err)
			lastErr = fmt.Errorf("%s: %w", target, err)
		default:
			eb, rerr := responseError(target, status, body)
			if status == http.StatusMisdirectedRequest && eb.Leader != "" && redirects < maxRedirects {
				c.log.Debug("following leader redirect", "from", target, "to", eb.Leader)
				target = eb.Leader
				redirects++
				continue
			}
			if eb.Error != CodeNotLeader {
				return ApplyResponse{}, fmt.Errorf("apply: %w", rerr)
			}
			lastErr = rerr // no leader known there: try another
		}
		next++
		target = cands[next%len(cands)]
		if err := sleep(ctx, backoff); err != nil {
			return ApplyResponse{}, fmt.Errorf("apply: %w", err)
		}
		backoff = min(2*backoff, backoffMax)
	}
	return ApplyResponse{}, errdefs.WithHint(fmt.Errorf("apply: no server took the write after %d attempts: last error: %w: %w: %w",
		maxApplyAttempts, lastErr, ErrNotLeader, errdefs.ErrUnavailable),
		fmt.Sprintf("check that the servers %v run, are reachable and have elected a leader", c.servers))
}

// Watch asks the servers, the one that last answered first, for what node
// must run: it blocks up to wait until the state index passes index (and,
// when hash is not empty, the content differs from hash). It tries each
// server once; the caller backs off and retries on errdefs.ErrUnavailable.
func (c *Client) Watch(ctx context.Context, node string, index uint64, wait time.Duration, hash string) (*WatchResponse, error) {
	q := url.Values{"node": {node}, "index": {strconv.FormatUint(index, 10)}, "wait": {wait.String()}}
	if hash != "" {
		q.Set("hash", hash)
	}
	var resp WatchResponse
	if err := c.read(ctx, PathWatch+"?"+q.Encode(), wait+wait/16+10*time.Second, &resp); err != nil {
		return nil, fmt.Errorf("watch node %s: %w", node, err)
	}
	return &resp, nil
}

// Status returns the status of the first server that answers.
func (c *Client) Status(ctx context.Context) (*StatusResponse, error) {
	var resp StatusResponse
	if err := c.read(ctx, PathStatus, 10*time.Second, &resp); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return &resp, nil
}

// read GETs path from each server in turn until one answers.
func (c *Client) read(ctx context.Context, path string, timeout time.Duration, out any) error {
	c.mu.Lock()
	cands := c.candidates(c.good)
	c.mu.Unlock()
	var errs []error
	for i, target := range cands {
		if i > 0 {
			if err := sleep(ctx, backoffStart); err != nil {
				return err
			}
		}
		status, body, err := c.do(ctx, http.MethodGet, target, path, nil, timeout)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", target, err))
			continue
		case status != http.StatusOK:
			_, rerr := responseError(target, status, body)
			if status >= 500 {
				errs = append(errs, rerr)
				continue
			}
			return rerr
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("%s: decode response: %w", target, err)
		}
		c.mu.Lock()
		c.good = target
		c.mu.Unlock()
		return nil
	}
	return errdefs.WithHint(fmt.Errorf("no server answered: %w: %w", errors.Join(errs...), errdefs.ErrUnavailable),
		fmt.Sprintf("check that the servers %v run and are reachable", c.servers))
}

// do sends one request. Only a transport failure is an error; any HTTP
// answer is returned with its status.
func (c *Client) do(ctx context.Context, method, target, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	return doRequest(ctx, c.http, method, target, path, body, timeout)
}

func doRequest(ctx context.Context, hc *http.Client, method, target, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	if _, ok := ctx.Deadline(); !ok && timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, serverURL(target)+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, tlsHint(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, data, nil
}

func serverURL(addr string) string {
	if strings.HasPrefix(addr, "https://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "https://" + addr
}

// unsent reports whether a transport error happened before the request
// could reach the server (so that retrying elsewhere cannot apply it twice).
func unsent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	// A refused handshake sent nothing either: pki's checks fail with
	// errdefs.ErrPermission, crypto/tls's own with these types.
	var cv *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	return errors.Is(err, errdefs.ErrPermission) || errors.As(err, &cv) || errors.As(err, &hostErr)
}

// tlsHint adds a hint to certificate errors.
func tlsHint(err error) error {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return errdefs.WithHint(err, "the server's certificate is not from this cluster's CA: check --servers and <data-dir>/tls/ca.pem")
	}
	return err
}

// responseError turns an error response into an error of the matching
// errdefs category, with the server's hint.
func responseError(target string, status int, body []byte) (ErrorBody, error) {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Message == "" {
		eb.Message = strings.TrimSpace(string(body))
		if len(eb.Message) > 200 {
			eb.Message = eb.Message[:200]
		}
	}
	cat := errdefs.ErrUnavailable
	switch {
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		cat = errdefs.ErrInvalid
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		cat = errdefs.ErrPermission
	case status == http.StatusNotFound:
		cat = errdefs.ErrNotFound
	case status == http.StatusConflict:
		cat = errdefs.ErrConflict
	}
	msg := strings.TrimSuffix(eb.Message, ": "+cat.Error()) // the category is added back below
	err := fmt.Errorf("%s: %s (HTTP %d): %w", target, msg, status, cat)
	return eb, errdefs.WithHint(err, eb.Hint)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Join asks the server at addr to admit this node. tlsConf presents no
// certificate (the node has none yet) and trusts the server only when its
// chain holds the CA the join token pins: pki.JoinClientTLS(fingerprint).
func Join(ctx context.Context, addr string, req JoinRequest, tlsConf *tls.Config) (*JoinResponse, error) {
	if tlsConf == nil {
		return nil, fmt.Errorf("join: no TLS config given: %w", errdefs.ErrInvalid)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	tr := newTransport(tlsConf)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	status, data, err := doRequest(ctx, hc, http.MethodPost, addr, PathJoin, body, 30*time.Second)
	if errors.Is(err, errdefs.ErrPermission) {
		return nil, errdefs.WithHint(fmt.Errorf("join via %s: the server's certificate is not from the CA the token names: %w", addr, err),
			"the token is for another cluster, or something else answers at this address; get a token from this cluster's servers")
	}
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("join via %s: %w: %w", addr, err, errdefs.ErrUnavailable),
			"check the address (a server's --rpc-addr) and that it runs")
	}
	if status != http.StatusOK {
		_, rerr := responseError(addr, status, data)
		return nil, fmt.Errorf("join: %w", rerr)
	}
	var resp JoinResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("join via %s: decode response: %w", addr, err)
	}
	return &resp, nil
}
