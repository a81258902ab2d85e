// Command mcpauthproxy is a loopback-only reverse proxy for tests: it adds
// "Authorization: Bearer TOKEN" to every request it forwards to a gantry MCP
// endpoint, so that clients which cannot send headers (the official MCP
// conformance suite) can reach an authenticated server. Everything else
// passes through untouched, including the Host and Origin headers, so the
// server's DNS-rebinding check still sees what the client sent.
//
// Usage:
//
//	GANTRY_TOKEN=... mcpauthproxy --listen 127.0.0.1:0 --target http://127.0.0.1:7433 [--addr-file F]
//
// It prints the address it listens on (and writes it to --addr-file) and
// serves until SIGINT or SIGTERM. It refuses non-loopback listen addresses
// and targets: it holds a credential and must never expose it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv("GANTRY_TOKEN"), os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpauthproxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, token string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mcpauthproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	target := fs.String("target", "", "base URL of the gantry server, e.g. http://127.0.0.1:7433")
	addrFile := fs.String("addr-file", "", "write the listen address (host:port) to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return errors.New("GANTRY_TOKEN is empty: set it to the server's bearer token")
	}
	h, err := newProxy(*target, token)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !loopback(host) {
		return fmt.Errorf("--listen %q: must be a loopback host:port such as 127.0.0.1:0", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintln(stdout, ln.Addr().String())
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
			ln.Close()
			return fmt.Errorf("write --addr-file: %w", err)
		}
	}
	return serve(ctx, ln, h)
}

// newProxy returns a handler that forwards to target with the bearer token.
func newProxy(target, token string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" || !loopback(u.Hostname()) {
		return nil, fmt.Errorf("--target %q: must be an http URL on a loopback host, e.g. http://127.0.0.1:7433", target)
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Not SetURL: it would replace the Host header, which the
			// server's Origin check compares against.
			pr.Out.URL.Scheme = u.Scheme
			pr.Out.URL.Host = u.Host
			pr.Out.Header.Set("Authorization", "Bearer "+token)
		},
		// Server-sent events must reach the client as they are written.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "mcpauthproxy: "+err.Error(), http.StatusBadGateway)
		},
	}, nil
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.NewTextHandler(os.Stderr, nil), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
