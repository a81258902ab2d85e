package cluster

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

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
		if _, err := loadServerTLS(o, nil); err != nil {
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
// --tls-cert. The certificate is read again when its files change (checked
// at most every certCheckInterval, at a handshake), so a renewed
// certificate is served without a restart; a renewal that does not load
// keeps the old one and is logged.
func loadServerTLS(o *DevOptions, log *slog.Logger) (*tls.Config, error) {
	if o.TLSCert == "" {
		return nil, nil
	}
	r := &certReloader{certFile: o.TLSCert, keyFile: o.TLSKey, log: log}
	if err := r.load(); err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("--tls-cert %s / --tls-key %s: %w: %w", o.TLSCert, o.TLSKey, err, errdefs.ErrInvalid),
			"both must be PEM files: the certificate (leaf first, then intermediates) and its unencrypted private key")
	}
	return &tls.Config{
		GetCertificate: r.get,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
	}, nil
}

// certCheckInterval bounds how often the certificate files are looked at.
const certCheckInterval = 10 * time.Second

// certReloader serves a certificate and reloads it when its files change.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // sizes and mtimes of the two files when loaded
	checked time.Time
}

func fileStamp(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			b.WriteString("missing;")
			continue
		}
		fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return b.String()
}

// load reads the pair; the caller holds mu or owns r.
func (r *certReloader) load() error {
	stamp := fileStamp(r.certFile, r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= certCheckInterval {
		r.checked = time.Now()
		if stamp := fileStamp(r.certFile, r.keyFile); stamp != r.stamp {
			if err := r.load(); err != nil {
				r.stamp = stamp // do not retry the same broken files at every handshake
				if r.log != nil {
					r.log.Warn("the TLS certificate files changed but do not load; still serving the previous certificate",
						"cert", r.certFile, "key", r.keyFile, "err", err)
				}
			} else if r.log != nil {
				r.log.Info("TLS certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// listenerTLS wraps ln in TLS when configured and returns the endpoint's
// scheme.
func listenerTLS(o *DevOptions, ln net.Listener, log *slog.Logger) (net.Listener, string, error) {
	cfg, err := loadServerTLS(o, log)
	if err != nil || cfg == nil {
		return ln, "http", err
	}
	return tls.NewListener(ln, cfg), "https", nil
}
