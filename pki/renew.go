package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Files of a node's TLS directory, <data-dir>/tls/.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem" // servers only, 0600
	CertFile      = "node.pem"
	KeyFile       = "node-key.pem"
	GossipKeyFile = "gossip.key"
)

// NeedsRenewal reports whether cert has less than a third of its lifetime
// left at now (about four months for a one-year certificate), so a node
// renews well before expiry and survives being unable to reach a server
// for a while.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < life/3
}

// NodeCert is a node's certificate, key and cluster CA as stored in its TLS
// directory, with the identity the certificate carries.
type NodeCert struct {
	CertPEM, KeyPEM, CAPEM []byte

	Cert *x509.Certificate
	Role Role
	Name string
}

// TLSCertificate is the node's certificate as a tls.Certificate to present,
// with the CA after it (see KeyPair).
func (n *NodeCert) TLSCertificate() (tls.Certificate, error) {
	return KeyPair(n.CertPEM, n.KeyPEM, n.CAPEM)
}

// KeyPair makes the tls.Certificate a node presents: its certificate and
// key, followed by the CA certificate so that a peer of another cluster can
// say which CA it got (and a joining node can check the CA fingerprint).
// Leaf is set.
func KeyPair(certPEM, keyPEM, caPEM []byte) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate and key: %v: %w", err, errdefs.ErrInvalid)
	}
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster CA: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("node certificate: %v: %w", err, errdefs.ErrInvalid)
		}
	}
	if err := pair.Leaf.CheckSignatureFrom(ca); err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate %q was not signed by the cluster CA in %s (fingerprint %s): join again with a join token: %w",
			pair.Leaf.Subject.CommonName, CAFile, CAFingerprint(ca.Raw), errdefs.ErrInvalid)
	}
	pair.Certificate = append(pair.Certificate[:1:1], ca.Raw)
	return pair, nil
}

// Reloader holds a node's current certificate for its tls.Configs: they
// ask it for the certificate on every handshake (GetCertificate,
// GetClientCertificate), so Set rotates the certificate for new connections
// without restarting listeners. Safe for concurrent use.
type Reloader struct {
	cur atomic.Pointer[tls.Certificate]
}

// NewReloader returns a Reloader holding cert.
func NewReloader(cert tls.Certificate) *Reloader {
	r := &Reloader{}
	r.Set(cert)
	return r
}

// Set replaces the certificate; connections made from now on present it.
func (r *Reloader) Set(cert tls.Certificate) { r.cur.Store(&cert) }

// Certificate returns the current certificate.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load() }

// Reload reads dir's files (LoadNodeFiles) and sets their certificate.
func (r *Reloader) Reload(dir string) (*NodeCert, error) {
	n, err := LoadNodeFiles(dir)
	if err != nil {
		return nil, err
	}
	c, err := n.TLSCertificate()
	if err != nil {
		return nil, err
	}
	r.Set(c)
	return n, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// ServerTLS is the package's ServerTLS presenting r's current certificate.
func (r *Reloader) ServerTLS(caPEM []byte, allow ...Role) *tls.Config {
	return serverConfig(caPEM, r.cur.Load, false, allow)
}

// JoinServerTLS is the package's JoinServerTLS presenting r's current
// certificate.
func (r *Reloader) JoinServerTLS(caPEM []byte, allow ...Role) *tls.Config {
	return serverConfig(caPEM, r.cur.Load, true, allow)
}

// ClientTLS is the package's ClientTLS presenting r's current certificate.
func (r *Reloader) ClientTLS(caPEM []byte, want Role) *tls.Config {
	return clientConfig(caPEM, r.cur.Load, want)
}

// WriteNodeFiles writes a node's CA, certificate and key into dir (created
// 0700 if missing). Each file is written to a temporary file and renamed
// over the old one, so a crash leaves the old or the new file, never half
// of one; the key is 0600. The key is written first and the certificate
// last: a reader that sees the new certificate also finds its key.
func WriteNodeFiles(dir string, certPEM, keyPEM, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{KeyFile, keyPEM, 0o600},
		{CAFile, caPEM, 0o644},
		{CertFile, certPEM, 0o644},
	} {
		if err := WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// LoadNodeFiles reads the files WriteNodeFiles wrote and checks that they
// belong together: the key matches the certificate, the CA signed it, and
// it holds a Gantry identity. A missing directory or file is
// errdefs.ErrNotFound (the node has not joined yet).
func LoadNodeFiles(dir string) (*NodeCert, error) {
	var n NodeCert
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{CAFile, &n.CAPEM}, {CertFile, &n.CertPEM}, {KeyFile, &n.KeyPEM}} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.WithHint(fmt.Errorf("node TLS file %s: %w", filepath.Join(dir, f.name), errdefs.ErrNotFound),
				"the node has not joined a cluster: start it with a join token, or bootstrap a new cluster")
		}
		if err != nil {
			return nil, fmt.Errorf("read node TLS file: %w", err)
		}
		*f.dst = data
	}
	pair, err := n.TLSCertificate()
	if err != nil {
		return nil, fmt.Errorf("node TLS files in %s: %w", dir, err)
	}
	n.Cert = pair.Leaf
	if n.Role, n.Name, err = identity(n.Cert); err != nil {
		return nil, fmt.Errorf("node certificate %s: %w", filepath.Join(dir, CertFile), err)
	}
	return &n, nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed over path, with permissions perm.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // make the rename durable; best effort
		_ = d.Close()
	}
	return nil
}
