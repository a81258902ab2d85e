package cluster

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"

	"github.com/gantry-dev/gantry/errdefs"
)

// registerTLSFlags adds the flags that make gantry dev serve HTTPS.
func registerTLSFlags(fs *flag.FlagSet, o *DevOptions) {
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve the MCP endpoint over HTTPS; needs --tls-key. Required to --listen on a non-loopback address")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
}

// checkListen enforces the rule that only loopback addresses may be served
// without TLS: a bearer token sent in clear over a network is a token given
// away. The certificate and key are loaded here too, so a bad file is a
// flag error and not a start-up failure after Raft has opened.
func checkListen(o *DevOptions) error {
	h, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port: %w", o.Listen, errdefs.ErrInvalid)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errdefs.WithHint(fmt.Errorf("--tls-cert and --tls-key go together; only one was given: %w", errdefs.ErrInvalid),
			"pass both the certificate and its private key")
	}
	if o.TLSCert != "" {
		if _, err := loadServerTLS(o); err != nil {
			return err
		}
		return nil
	}
	if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errdefs.WithHint(fmt.Errorf("--listen %q: a non-loopback address requires TLS, so that bearer tokens never cross the network in clear: %w", o.Listen, errdefs.ErrInvalid),
			"pass --tls-cert FILE --tls-key FILE (clients then use an https:// address and, for a private CA, --ca-file), or listen on 127.0.0.1 and reach it through an SSH tunnel")
	}
	return nil
}

// loadServerTLS returns the server's TLS configuration, or nil without
// --tls-cert.
func loadServerTLS(o *DevOptions) (*tls.Config, error) {
	if o.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("--tls-cert %s / --tls-key %s: %w: %w", o.TLSCert, o.TLSKey, err, errdefs.ErrInvalid),
			"both must be PEM files: the certificate (leaf first, then intermediates) and its unencrypted private key")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// listenerTLS wraps ln in TLS when configured and returns the endpoint's
// scheme.
func listenerTLS(o *DevOptions, ln net.Listener) (net.Listener, string, error) {
	cfg, err := loadServerTLS(o)
	if err != nil || cfg == nil {
		return ln, "http", err
	}
	return tls.NewListener(ln, cfg), "https", nil
}
