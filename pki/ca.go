// Package pki holds a Gantry cluster's mutual-TLS trust: the cluster CA
// created at bootstrap, the node certificates it issues, the tls.Configs
// every node-to-node connection (RPC, Raft) uses, certificate renewal, and
// the join tokens a new node presents to get its certificate.
//
// A node certificate names its node and its role twice: CN=<name> and the
// URI SAN spiffe://gantry/<role>/<name>. Connections are verified against
// the cluster CA only (never the system roots), and each endpoint says which
// roles may talk to it: a worker certificate cannot open the Raft port.
// Verification is done by this package rather than crypto/tls's defaults so
// that a refusal says why (another cluster's CA, an expired certificate, the
// wrong role) and how to fix it.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Role is what a node is in the cluster; a certificate carries exactly one.
type Role string

// Node roles.
const (
	RoleServer Role = "server"
	RoleWorker Role = "worker"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleServer || r == RoleWorker }

func checkRole(r Role) error {
	if !r.Valid() {
		return fmt.Errorf("role %q is unknown (use %q or %q): %w", r, RoleServer, RoleWorker, errdefs.ErrInvalid)
	}
	return nil
}

// Certificate lifetimes.
const (
	// CALifetime is how long a cluster CA is valid.
	CALifetime = 10 * 365 * 24 * time.Hour
	// DefaultNodeTTL is the lifetime of a node certificate unless the
	// operator asks for another.
	DefaultNodeTTL = 365 * 24 * time.Hour
	// MaxNodeTTL is the longest node certificate Issue signs.
	MaxNodeTTL = 5 * 365 * 24 * time.Hour
	// backdate covers small clock differences between nodes.
	backdate = time.Minute
)

// trustDomain is the SPIFFE trust domain of node identities, and the DNS
// suffix of role names ("server.gantry").
const trustDomain = "gantry"

// CA is a cluster certificate authority: its certificate, its key, and the
// certificate in PEM form as nodes receive it.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// NewCA creates a cluster CA: an ECDSA P-256 key and a self-signed
// certificate valid for ten years from now, allowed to sign node
// certificates only (MaxPathLen 0).
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("generate CA id: %w", err)
	}
	name := pkix.Name{CommonName: "Gantry cluster CA " + hex.EncodeToString(id[:])}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: encodePEM("CERTIFICATE", der)}, nil
}

// LoadCA reads a CA from its certificate and key in PEM form (as CertPEM
// and KeyPEM write them) and checks that they belong together.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: certificate %q is not a CA certificate (give the cluster's ca.pem): %w", cert.Subject.CommonName, errdefs.ErrInvalid)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: the key does not belong to certificate %q (give the ca-key.pem created with this ca.pem): %w", cert.Subject.CommonName, errdefs.ErrInvalid)
	}
	return &CA{Cert: cert, Key: key, PEM: encodePEM("CERTIFICATE", cert.Raw)}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.PEM) }

// KeyPEM returns the CA key in PKCS #8 PEM form. It is the cluster's most
// valuable secret: store it 0600 and hand it to servers only.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return encodePEM("PRIVATE KEY", der), nil
}

// Fingerprint is the CA's fingerprint as join tokens carry it.
func (ca *CA) Fingerprint() string { return CAFingerprint(ca.Cert.Raw) }

// Issue signs a node certificate for the public key in csrDER, a PKCS #10
// request whose signature must verify (proof that the requester holds the
// key). Everything else in the request is ignored: the CA decides the
// identity. The certificate has CN=name, the URI SAN
// spiffe://gantry/<role>/<name>, the DNS SANs "<role>.gantry" and name, the
// given IP SANs, and is valid for both server and client authentication
// from now-1m to now+ttl (but not past the CA's own expiry). ttl must be
// positive and at most MaxNodeTTL; DefaultNodeTTL is the usual choice.
func (ca *CA) Issue(csrDER []byte, role Role, name string, ips []net.IP, ttl time.Duration, now time.Time) (certPEM []byte, err error) {
	if err := checkRole(role); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	switch {
	case ttl <= 0:
		return nil, fmt.Errorf("issue certificate for %q: lifetime %v must be positive (the default is %v): %w", name, ttl, DefaultNodeTTL, errdefs.ErrInvalid)
	case ttl > MaxNodeTTL:
		return nil, fmt.Errorf("issue certificate for %q: lifetime %v is longer than the maximum %v (certificates that never expire defeat rotation): %w", name, ttl, MaxNodeTTL, errdefs.ErrInvalid)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %q: parse certificate request: %v: %w", name, err, errdefs.ErrInvalid)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("issue certificate for %q: the certificate request's signature does not verify (it was altered, or not made with its key; make a new one with NewKeyAndCSR): %v: %w", name, err, errdefs.ErrInvalid)
	}
	if err := checkNodeKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("issue certificate for %q: %w", name, err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("issue certificate for %q: the cluster CA expired at %s: %w", name, ca.Cert.NotAfter.UTC().Format(time.RFC3339), errdefs.ErrInvalid)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	validIPs := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if ip != nil && !ip.IsUnspecified() {
			validIPs = append(validIPs, ip)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{identityURI(role, name)},
		DNSNames:     dnsNames(role, name),
		IPAddresses:  validIPs,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", name, err)
	}
	return encodePEM("CERTIFICATE", der), nil
}

// Reissue signs a renewed certificate for the key in csrDER with the
// identity (role, name) and IP SANs of current, the certificate the node
// authenticated with; see Issue for the rest. A node renews through it
// when NeedsRenewal says so, before its certificate expires.
func (ca *CA) Reissue(csrDER []byte, current *x509.Certificate, ttl time.Duration, now time.Time) (certPEM []byte, err error) {
	if err := current.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("renew certificate %q: it was not issued by this cluster's CA: %w", current.Subject.CommonName, errdefs.ErrPermission)
	}
	if err := CheckValidity(current, now); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	role, name, err := identity(current)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	return ca.Issue(csrDER, role, name, current.IPAddresses, ttl, now)
}

func dnsNames(role Role, name string) []string {
	out := []string{string(role) + "." + trustDomain}
	if name != out[0] {
		out = append(out, name)
	}
	return out
}

// identityURI is a node's SPIFFE ID.
func identityURI(role Role, name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/" + string(role) + "/" + name}
}

// NewKeyAndCSR makes a node's ECDSA P-256 key and a certificate request for
// it, signed with it, to send to a CA (Issue).
func NewKeyAndCSR(name string) (keyPEM, csrDER []byte, err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode node key: %w", err)
	}
	return encodePEM("PRIVATE KEY", der), csrDER, nil
}

// ValidName checks that name can name a node: a DNS label (1 to 63
// characters: lowercase letters, digits and '-', not at either end), so it
// can stand in a certificate's DNS SAN and its SPIFFE path.
func ValidName(name string) error {
	fix := "; choose another with --name, e.g. the host name in lowercase"
	switch {
	case name == "":
		return fmt.Errorf("node name is empty%s: %w", fix, errdefs.ErrInvalid)
	case len(name) > 63:
		return fmt.Errorf("node name %q is %d characters, more than 63%s: %w", name, len(name), fix, errdefs.ErrInvalid)
	case name[0] == '-' || name[len(name)-1] == '-':
		return fmt.Errorf("node name %q starts or ends with '-'%s: %w", name, fix, errdefs.ErrInvalid)
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return fmt.Errorf("node name %q has %q: only lowercase letters, digits and '-' are allowed%s: %w", name, c, fix, errdefs.ErrInvalid)
		}
	}
	return nil
}

// CAFingerprint is the first 32 hex characters (128 bits) of the SHA-256 of
// a CA certificate's DER bytes: what a join token carries so that a joining
// node can check it talks to the right cluster before it sends anything.
func CAFingerprint(caDER []byte) string {
	sum := sha256.Sum256(caDER)
	return hex.EncodeToString(sum[:])[:fingerprintLen]
}

const fingerprintLen = 32

func checkNodeKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("the certificate request's key is %T, but nodes use ECDSA P-256 keys (make the request with NewKeyAndCSR): %w", pub, errdefs.ErrInvalid)
}

func samePublicKey(a, b any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM CERTIFICATE block found: %w", errdefs.ErrInvalid)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %v: %w", err, errdefs.ErrInvalid)
	}
	return cert, nil
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("no PEM block found: %w", errdefs.ErrInvalid)
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY: %w", b.Type, errdefs.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %v: %w", err, errdefs.ErrInvalid)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign: %w", key, errdefs.ErrInvalid)
	}
	return s, nil
}

// errNoRole is returned for certificates without a Gantry identity.
var errNoRole = errors.New("certificate has no Gantry node identity (spiffe://gantry/<role>/<name> URI SAN)")
