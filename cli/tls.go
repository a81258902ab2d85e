package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// maxCAFile bounds --ca-file: a CA bundle is a few KiB; the system's whole
// bundle is about 200 KiB.
const maxCAFile = 1 << 20

// caFile is --ca-file, else GANTRY_CA_FILE.
func (a *app) caFile() string {
	if a.g.caFile != "" {
		return a.g.caFile
	}
	if v, ok := a.lookupEnv("GANTRY_CA_FILE"); ok {
		return strings.TrimSpace(v)
	}
	return ""
}

// tlsConfig returns the client's TLS configuration: the system's roots plus
// the CA certificates in --ca-file (or GANTRY_CA_FILE), so a server whose
// certificate a private CA signed can be trusted without trusting it
// machine-wide. Nil means the defaults.
func (a *app) tlsConfig() (*tls.Config, error) {
	path := a.caFile()
	if path == "" {
		return nil, nil
	}
	data, err := readBounded(path, maxCAFile)
	if err != nil {
		return nil, usagef("", "--ca-file: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, usagef("", "--ca-file %s holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// readBounded reads at most max bytes of path, opening it non-blocking
// (like --token-file) so a FIFO cannot hang the CLI.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a CA certificate file", path, max)
	}
	return data, nil
}

// certError returns the certificate verification failure in err, if any.
func certError(err error) error {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	switch {
	case errors.As(err, &verr):
		return verr.Err
	case errors.As(err, &uerr):
		return uerr
	case errors.As(err, &herr):
		return herr
	case errors.As(err, &cerr):
		return cerr
	}
	return nil
}

// explainCert tells the user what to do about a certificate the client does
// not trust.
func explainCert(addr string, err error) error {
	return fmt.Errorf("the gantry server at %s presented a certificate this client does not trust (%v): "+
		"if a private CA signed it, pass that CA's certificate with --ca-file FILE or GANTRY_CA_FILE; "+
		"check too that --addr names a host the certificate is for", addr, err)
}
