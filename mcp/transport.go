package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Session defaults: how long a session may sit idle (no request from its
// client) before it is closed, and how many may be open at once.
const (
	DefaultSessionIdleTimeout      = 30 * time.Minute
	DefaultMaxSessions             = 1000
	DefaultMaxSessionsPerPrincipal = 100
)

// statelessVersion is the first protocol revision without sessions
// (SEP-2575): its requests carry everything in themselves.
const statelessVersion = "2026-07-28"

// maxPeekBytes bounds the body read to decide where a request goes; it is
// the SDK's own limit, so a body the router accepts is one the SDK reads.
const maxPeekBytes = sdk.DefaultMaxRequestBodyBytes

// router serves both protocol generations on one endpoint: requests of
// 2026-07-28 and later, and sessionless requests of older revisions, go to
// the stateless handler; initialize and everything carrying Mcp-Session-Id
// go to the stateful one, which keeps 2025-11-25 sessions (server-to-client
// requests such as elicitation, resource subscriptions, cancellation).
// The router binds each session to the principal that created it, caps
// how many are open (in all, and per principal: one token that keeps
// opening sessions must not lock every other client out until they expire)
// and closes them all when the http.Server shuts down.
type router struct {
	srv       *sdk.Server
	stateless http.Handler
	stateful  http.Handler
	log       *slog.Logger
	idle      time.Duration
	max       int
	maxPer    int // per principal

	hooked sync.Map // *http.Server -> true: shutdown hook registered

	mu       sync.Mutex
	calls    map[*context.CancelFunc]struct{} // tool calls in progress in sessions
	sessions map[string]*session              // by Mcp-Session-Id
	opening  int                              // initializes in flight, counted against max
	openBy   map[string]int                   // initializes in flight by principal
	closed   bool                             // the server is shutting down
}

type session struct {
	principal string
	ss        *sdk.ServerSession // nil until its initialize has returned
	// refs counts the session's requests in progress (a GET stream too);
	// idle closes the session once it has had none for router.idle.
	refs int
	idle *time.Timer
	// used is when a request of the session last started or ended.
	used time.Time
}

func newRouter(srv *sdk.Server, cfg Config, log *slog.Logger) *router {
	idle := cfg.SessionIdleTimeout
	if idle <= 0 {
		idle = DefaultSessionIdleTimeout
	}
	maxSessions := cfg.MaxSessions
	if maxSessions <= 0 {
		maxSessions = DefaultMaxSessions
	}
	maxPer := cfg.MaxSessionsPerPrincipal
	if maxPer <= 0 {
		maxPer = DefaultMaxSessionsPerPrincipal
	}
	sdkLog := slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "mcp-http")
	get := func(*http.Request) *sdk.Server { return srv }
	return &router{
		srv: srv,
		log: log,
		// Stateless: every POST carries everything the server needs. A
		// 2026-07-28 call is cancelled when its client drops the request.
		stateless: sdk.NewStreamableHTTPHandler(get, &sdk.StreamableHTTPOptions{
			Stateless:                    true,
			PropagateRequestCancellation: true,
			Logger:                       sdkLog,
		}),
		// The SDK refuses (403) a session used with another
		// TokenInfo.UserID; the router checks the owner first, to answer in
		// JSON and log it. The router expires idle sessions itself: the
		// SDK's SessionTimeout counts POSTs only, so it would close a
		// session whose client just listens on its GET stream.
		stateful: sdk.NewStreamableHTTPHandler(get, &sdk.StreamableHTTPOptions{
			Logger: sdkLog,
		}),
		idle:     idle,
		max:      maxSessions,
		maxPer:   maxPer,
		sessions: map[string]*session{},
		openBy:   map[string]int{},
	}
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.hookShutdown(r)
	if v := r.Header.Get("Mcp-Protocol-Version"); v >= statelessVersion {
		rt.stateless.ServeHTTP(w, r)
		return
	}
	if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
		if sess := rt.owns(w, r, sid); sess != nil {
			rt.busy(sess, 1)
			defer rt.busy(sess, -1)
			rt.stateful.ServeHTTP(w, r)
		}
		return
	}
	if r.Method != http.MethodPost {
		// GET and DELETE need a session; the SDK says so (400) and
		// answers other methods with 405.
		rt.stateful.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPeekBytes+1))
	_ = r.Body.Close()
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, jsonError("bad_request", "reading the request body: "+err.Error()))
		return
	}
	if len(body) > maxPeekBytes {
		writeJSONError(w, http.StatusRequestEntityTooLarge, jsonError("too_large",
			fmt.Sprintf("the request body is over %d bytes: send smaller messages", maxPeekBytes)))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !isInitialize(body) {
		// A sessionless call of an older revision (or server/discover):
		// served as before, in an ephemeral session.
		rt.stateless.ServeHTTP(w, r)
		return
	}
	rt.initialize(w, r)
}

// isInitialize reports whether body is an initialize request, alone or in
// a batch. Bodies that do not parse are left to the SDK to reject.
func isInitialize(body []byte) bool {
	type msg struct {
		Method string `json:"method"`
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []msg
		if json.Unmarshal(body, &batch) != nil {
			return false
		}
		for _, m := range batch {
			if m.Method == "initialize" {
				return true
			}
		}
		return false
	}
	var m msg
	return json.Unmarshal(body, &m) == nil && m.Method == "initialize"
}

// owns returns the session if it exists and belongs to the caller; if
// not, it answers and returns nil.
func (rt *router) owns(w http.ResponseWriter, r *http.Request, sid string) *session {
	p, _ := PrincipalFromContext(r.Context())
	rt.mu.Lock()
	sess := rt.sessions[sid]
	rt.mu.Unlock()
	switch {
	case sess == nil:
		writeJSONError(w, http.StatusNotFound, jsonError("session_not_found", fmt.Sprintf(
			"MCP session %q does not exist: it was closed, idle for more than %s, or the server restarted; send initialize again (without Mcp-Session-Id) to start a new one",
			truncateID(sid), rt.idle)))
		return nil
	case sess.principal != p.Name:
		rt.log.Warn("refused a request for another principal's MCP session",
			"principal", p.Name, "owner", sess.principal, "session", truncateID(sid), "method", r.Method)
		writeJSONError(w, http.StatusForbidden, jsonError("forbidden",
			"this MCP session was started with another token: a session is bound to the principal that initialized it; send initialize with your own token to start one"))
		return nil
	}
	return sess
}

// busy counts a request of the session starting (+1) or ending (-1); the
// idle timer runs only while none is in progress.
func (rt *router) busy(sess *session, delta int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	sess.refs += delta
	sess.used = time.Now()
	if sess.idle == nil {
		return
	}
	if sess.refs > 0 {
		sess.idle.Stop()
	} else {
		sess.idle.Reset(rt.idle)
	}
}

// initialize serves an initialize request in a new stateful session,
// within the cap on open sessions.
func (rt *router) initialize(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFromContext(r.Context())
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		writeJSONError(w, http.StatusServiceUnavailable, jsonError("unavailable", "the server is shutting down; reconnect once it is back"))
		return
	}
	if len(rt.sessions)+rt.opening >= rt.max {
		n := len(rt.sessions)
		rt.mu.Unlock()
		rt.log.Warn("refused a new MCP session: too many open", "principal", p.Name, "open", n, "max", rt.max)
		w.Header().Set("Retry-After", strconv.Itoa(60))
		writeJSONError(w, http.StatusServiceUnavailable, jsonError("too_many_sessions", fmt.Sprintf(
			"the server already has %d open MCP sessions (its limit): close sessions you no longer use (HTTP DELETE with their Mcp-Session-Id) or wait for idle ones to expire (after %s), then retry; clients of protocol %s need no session",
			rt.max, rt.idle, statelessVersion)))
		return
	}
	// At its own limit, the principal's least recently used idle session
	// makes room: its client, if any, gets 404 on its next request and
	// starts a new one. Other principals' sessions are never touched.
	var evict *session
	if rt.openBy[p.Name]+rt.countLocked(p.Name) >= rt.maxPer {
		var sid string
		if sid, evict = rt.lruIdleLocked(p.Name); evict == nil {
			rt.mu.Unlock()
			rt.log.Warn("refused a new MCP session: the principal has too many open", "principal", p.Name, "max_per_principal", rt.maxPer)
			w.Header().Set("Retry-After", strconv.Itoa(60))
			writeJSONError(w, http.StatusServiceUnavailable, jsonError("too_many_sessions", fmt.Sprintf(
				"principal %q already has %d MCP sessions open or opening, each with a request in progress (the limit per principal): close sessions you no longer use (HTTP DELETE with their Mcp-Session-Id), then retry; clients of protocol %s need no session",
				p.Name, rt.maxPer, statelessVersion)))
			return
		}
		delete(rt.sessions, sid)
		evict.idle.Stop()
		rt.log.Info("closing the least recently used idle MCP session of a principal at its session limit", "principal", p.Name, "session", truncateID(sid), "max_per_principal", rt.maxPer)
	}
	rt.opening++
	rt.openBy[p.Name]++
	rt.mu.Unlock()
	if evict != nil {
		_ = evict.ss.Close()
	}

	cw := &captureWriter{ResponseWriter: w, onHeader: func(sid string) {
		// Registered before the response leaves, so the client's next
		// request (notifications/initialized) finds it.
		rt.mu.Lock()
		rt.sessions[sid] = &session{principal: p.Name, used: time.Now()}
		rt.mu.Unlock()
	}}
	rt.stateful.ServeHTTP(cw, r)

	rt.mu.Lock()
	rt.opening--
	if rt.openBy[p.Name]--; rt.openBy[p.Name] <= 0 {
		delete(rt.openBy, p.Name)
	}
	rt.mu.Unlock()
	if cw.sid == "" {
		return
	}
	var ss *sdk.ServerSession
	for s := range rt.srv.Sessions() {
		if s.ID() == cw.sid {
			ss = s
			break
		}
	}
	rt.mu.Lock()
	closed := rt.closed
	if ss == nil || closed {
		delete(rt.sessions, cw.sid)
	} else {
		sess := rt.sessions[cw.sid]
		sess.ss, sess.used = ss, time.Now()
		sess.idle = time.AfterFunc(rt.idle, func() {
			rt.log.Info("closing an idle MCP session", "principal", p.Name, "session", truncateID(cw.sid), "idle", rt.idle)
			_ = ss.Close()
		})
		if sess.refs > 0 {
			sess.idle.Stop() // a request already runs; its end restarts it
		}
	}
	rt.mu.Unlock()
	if ss == nil {
		return // the SDK closed it: initialize failed
	}
	if closed {
		_ = ss.Close()
		return
	}
	rt.log.Debug("MCP session opened", "principal", p.Name, "session", truncateID(cw.sid))
	// The session owns this goroutine: it ends when the session closes
	// (DELETE, idle timeout, shutdown).
	go func() {
		_ = ss.Wait()
		rt.mu.Lock()
		if sess := rt.sessions[cw.sid]; sess != nil && sess.idle != nil {
			sess.idle.Stop()
		}
		delete(rt.sessions, cw.sid)
		rt.mu.Unlock()
		rt.log.Debug("MCP session closed", "principal", p.Name, "session", truncateID(cw.sid))
	}()
}

// hookShutdown makes the http.Server serving r close every session when it
// shuts down: open GET streams would otherwise hold Shutdown until its
// deadline.
func (rt *router) hookShutdown(r *http.Request) {
	hs, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return
	}
	if _, loaded := rt.hooked.LoadOrStore(hs, true); !loaded {
		hs.RegisterOnShutdown(rt.closeAll)
	}
}

// closeAll closes every session and refuses new ones. A session's Close
// waits for its requests in progress, so the tool calls running in
// sessions are cancelled first (a waiting deploy stops waiting; it is not
// reverted, as the server is shutting down), and the sessions close side
// by side, so that one busy session does not keep the others open.
func (rt *router) closeAll() {
	rt.mu.Lock()
	rt.closed = true
	var open []*sdk.ServerSession
	for _, s := range rt.sessions {
		if s.ss != nil {
			open = append(open, s.ss)
		}
	}
	for c := range rt.calls {
		(*c)()
	}
	rt.mu.Unlock()
	var wg sync.WaitGroup
	for _, ss := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = ss.Close()
		}()
	}
	wg.Wait()
}

// trackCall gives a tool call running in the stateful session sid a
// context that closeAll cancels; done forgets it. Other calls (stateless
// requests, whose HTTP request the shutdown ends) keep ctx.
func (rt *router) trackCall(ctx context.Context, sid string) (context.Context, func()) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if _, ok := rt.sessions[sid]; !ok || sid == "" {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	if rt.closed {
		cancel()
		return ctx, cancel
	}
	if rt.calls == nil {
		rt.calls = map[*context.CancelFunc]struct{}{}
	}
	key := &cancel
	rt.calls[key] = struct{}{}
	return ctx, func() {
		rt.mu.Lock()
		delete(rt.calls, key)
		rt.mu.Unlock()
		cancel()
	}
}

// countLocked counts principal's open sessions; rt.mu is held.
func (rt *router) countLocked(principal string) int {
	n := 0
	for _, s := range rt.sessions {
		if s.principal == principal {
			n++
		}
	}
	return n
}

// lruIdleLocked returns principal's least recently used session that has
// no request in progress (nil when every one is busy or still opening);
// rt.mu is held.
func (rt *router) lruIdleLocked(principal string) (string, *session) {
	var (
		id   string
		best *session
	)
	for sid, s := range rt.sessions {
		if s.principal != principal || s.ss == nil || s.idle == nil || s.refs > 0 {
			continue
		}
		if best == nil || s.used.Before(best.used) {
			id, best = sid, s
		}
	}
	return id, best
}

// closing reports whether the server is shutting down (closeAll ran).
func (rt *router) closing() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.closed
}

// openSessions counts the sessions open now.
func (rt *router) openSessions() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.sessions)
}

// truncateID shortens a session ID for logs and messages: enough to tell
// sessions apart, not enough to use one.
func truncateID(sid string) string {
	if len(sid) > 8 {
		return sid[:8] + "…"
	}
	return sid
}

// captureWriter notes the Mcp-Session-Id the SDK assigns, as the header
// is written.
type captureWriter struct {
	http.ResponseWriter
	onHeader func(sid string)
	wrote    bool
	sid      string
}

func (c *captureWriter) WriteHeader(code int) {
	if !c.wrote {
		c.wrote = true
		if sid := c.Header().Get("Mcp-Session-Id"); sid != "" && code < 300 {
			c.sid = sid
			c.onHeader(sid)
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
