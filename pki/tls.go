package pki

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// The configs below verify peers themselves, in VerifyConnection, instead
// of leaving it to crypto/tls (ClientAuth RequireAndVerifyClientCert, or
// the client's default verification): the checks are the same (chain to the
// cluster CA only, validity period, key usage) plus the peer's role, but a
// refusal says what is wrong and how to fix it instead of "x509: certificate
// signed by unknown authority". VerifyConnection, unlike
// VerifyPeerCertificate, also runs on resumed sessions, so a resumed
// connection is checked against the current time and role rules too.

// ServerTLS is the config of a listener that only nodes of the cluster may
// connect to: TLS 1.3, a client certificate required and verified against
// the CA in caPEM, and the client's role one of allow (any role when allow
// is empty). The listener presents cert, which should hold the CA
// certificate after the node's (KeyPair does that) so that clients can
// name a foreign CA. To rotate cert without a new listener, use a Reloader.
func ServerTLS(caPEM []byte, cert tls.Certificate, allow ...Role) *tls.Config {
	return serverConfig(caPEM, staticCert(&cert), false, allow)
}

// JoinServerTLS is ServerTLS for the node RPC listener, which also serves
// the join endpoint: a client without a certificate is let through (its
// handler checks the join token, and every other handler must call
// PeerRole), but a certificate that is presented must verify.
func JoinServerTLS(caPEM []byte, cert tls.Certificate, allow ...Role) *tls.Config {
	return serverConfig(caPEM, staticCert(&cert), true, allow)
}

// ClientTLS is the config of a connection to a node of role want: TLS 1.3,
// the server must chain to the CA in caPEM and hold role want; the client
// presents cert. ServerName is "<want>.gantry", which every certificate of
// that role holds, so one config reaches any server.
func ClientTLS(caPEM []byte, cert tls.Certificate, want Role) *tls.Config {
	return clientConfig(caPEM, staticCert(&cert), want)
}

// JoinClientTLS is the config a node without a certificate uses to call a
// server's join endpoint: it presents no certificate and accepts the server
// only when the server's chain holds a CA whose fingerprint is fp (from the
// join token) and that CA signed the server's certificate. So the node
// checks that it talks to the right cluster before it sends its token.
func JoinClientTLS(fp string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         string(RoleServer) + "." + trustDomain,
		InsecureSkipVerify: true, // verified in VerifyConnection, against fp
		VerifyConnection: func(cs tls.ConnectionState) error {
			ca, err := VerifyCAFingerprint(cs.PeerCertificates, fp)
			if err != nil {
				return err
			}
			v := verifier{ca: ca, usage: x509.ExtKeyUsageServerAuth, allow: []Role{RoleServer}, side: "server"}
			v.roots = x509.NewCertPool()
			v.roots.AddCert(ca)
			_, _, err = v.verify(cs.PeerCertificates, time.Now())
			return err
		},
	}
}

// PeerRole returns the role and name of the peer of a connection made with
// one of this package's configs, which verified the peer's certificate. It
// fails when the peer presented none (a join client) or its certificate
// holds no Gantry identity.
func PeerRole(cs *tls.ConnectionState) (Role, string, error) {
	if cs == nil {
		return "", "", fmt.Errorf("connection is not TLS: use https with a node certificate: %w", errdefs.ErrPermission)
	}
	if len(cs.PeerCertificates) == 0 {
		return "", "", fmt.Errorf("peer presented no certificate: this endpoint needs a node certificate (join the cluster first): %w", errdefs.ErrPermission)
	}
	return identity(cs.PeerCertificates[0])
}

// VerifyCAFingerprint finds, among certs (a peer's chain), the CA
// certificate whose fingerprint is fp and returns it. It fails when there
// is none, naming the fingerprints it saw, which means the peer belongs to
// another cluster or the join token is for another cluster.
func VerifyCAFingerprint(certs []*x509.Certificate, fp string) (*x509.Certificate, error) {
	fp = strings.ToLower(fp)
	if len(fp) != fingerprintLen {
		return nil, fmt.Errorf("CA fingerprint %q is not %d hex characters (copy it from the join token): %w", fp, fingerprintLen, errdefs.ErrInvalid)
	}
	var seen []string
	for _, c := range certs {
		got := CAFingerprint(c.Raw)
		if subtle.ConstantTimeCompare([]byte(got), []byte(fp)) == 1 {
			if !c.IsCA || !c.BasicConstraintsValid {
				return nil, fmt.Errorf("certificate %q has the expected fingerprint but is not a CA: %w", c.Subject.CommonName, errdefs.ErrPermission)
			}
			return c, nil
		}
		if c.IsCA {
			seen = append(seen, got)
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("the peer sent no CA certificate, so it cannot be checked against CA fingerprint %s: it is not a Gantry server of that cluster: %w", fp, errdefs.ErrPermission)
	}
	return nil, fmt.Errorf("the peer belongs to another cluster (CA fingerprint %s, expected %s): check the address, or use a join token of that cluster: %w",
		strings.Join(seen, ", "), fp, errdefs.ErrPermission)
}

// VerifyCAPEM parses caPEM and checks that its fingerprint is fp.
func VerifyCAPEM(caPEM []byte, fp string) (*x509.Certificate, error) {
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return VerifyCAFingerprint([]*x509.Certificate{ca}, fp)
}

func staticCert(c *tls.Certificate) func() *tls.Certificate {
	return func() *tls.Certificate { return c }
}

func serverConfig(caPEM []byte, cert func() *tls.Certificate, optional bool, allow []Role) *tls.Config {
	v := newVerifier(caPEM, x509.ExtKeyUsageClientAuth, allow, "client")
	auth := tls.RequireAnyClientCert // verified in VerifyConnection
	if optional {
		auth = tls.RequestClientCert
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: auth,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if optional && len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, _, err := v.verify(cs.PeerCertificates, time.Now())
			return err
		},
	}
}

func clientConfig(caPEM []byte, cert func() *tls.Certificate, want Role) *tls.Config {
	v := newVerifier(caPEM, x509.ExtKeyUsageServerAuth, []Role{want}, "server")
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: string(want) + "." + trustDomain,
		// Verified in VerifyConnection: chain to the cluster CA and role.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := checkRole(want); err != nil {
				return err
			}
			_, _, err := v.verify(cs.PeerCertificates, time.Now())
			return err
		},
	}
}

// verifier checks a peer's certificate chain against the cluster CA.
type verifier struct {
	roots *x509.CertPool
	ca    *x509.Certificate
	caErr error
	usage x509.ExtKeyUsage
	allow []Role
	side  string // "client" or "server", for messages
}

func newVerifier(caPEM []byte, usage x509.ExtKeyUsage, allow []Role, side string) *verifier {
	v := &verifier{usage: usage, allow: allow, side: side}
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		v.caErr = fmt.Errorf("this node's cluster CA (ca.pem) is unusable, so no peer can be verified: %w", err)
		return v
	}
	v.ca = ca
	v.roots = x509.NewCertPool()
	v.roots.AddCert(ca)
	return v
}

func (v *verifier) verify(chain []*x509.Certificate, now time.Time) (Role, string, error) {
	if v.caErr != nil {
		return "", "", v.caErr
	}
	if len(chain) == 0 {
		return "", "", fmt.Errorf("%s presented no certificate: connect with this cluster's node certificate: %w", v.side, errdefs.ErrPermission)
	}
	leaf := chain[0]
	who := fmt.Sprintf("%s certificate %q", v.side, leaf.Subject.CommonName)
	if err := leaf.CheckSignatureFrom(v.ca); err != nil {
		return "", "", v.foreignCA(who, chain)
	}
	if err := checkValidity(who, leaf, now); err != nil {
		return "", "", err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{v.usage}}); err != nil {
		return "", "", fmt.Errorf("%s does not verify against the cluster CA: %v: %w", who, err, errdefs.ErrPermission)
	}
	role, name, err := identity(leaf)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", who, err)
	}
	if len(v.allow) > 0 && !slices.Contains(v.allow, role) {
		return "", "", fmt.Errorf("peer %q is a %s, this endpoint needs a %s: %w", name, role, joinRoles(v.allow), errdefs.ErrPermission)
	}
	return role, name, nil
}

// CheckValidity fails when cert is expired or not valid yet at now, with
// an error that says how to fix it. A node checks its own certificate with
// it at start, so it says so instead of being refused by every peer.
func CheckValidity(cert *x509.Certificate, now time.Time) error {
	return checkValidity(fmt.Sprintf("certificate %q", cert.Subject.CommonName), cert, now)
}

func checkValidity(who string, cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return errdefs.WithHint(fmt.Errorf("%s expired at %s: %w", who, cert.NotAfter.UTC().Format(time.RFC3339), errdefs.ErrPermission),
			"rotate it with a new join token: on that node remove <data-dir>/tls/node.pem and start it again with a join token of the cluster (nodes renew their certificate while running, so it was off for too long)")
	}
	if now.Before(cert.NotBefore) {
		return errdefs.WithHint(fmt.Errorf("%s is not valid before %s, and it is %s here: %w", who,
			cert.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), errdefs.ErrPermission),
			"the clocks of the nodes differ: synchronise them (NTP)")
	}
	return nil
}

// foreignCA explains a certificate that the cluster CA did not sign,
// naming the CA that did when the peer sent it.
func (v *verifier) foreignCA(who string, chain []*x509.Certificate) error {
	want := CAFingerprint(v.ca.Raw)
	other := "unknown: the peer did not send it; issuer " + fmt.Sprintf("%q", chain[0].Issuer.CommonName)
	for _, c := range chain[1:] {
		if chain[0].CheckSignatureFrom(c) == nil {
			other = CAFingerprint(c.Raw)
			break
		}
	}
	return errdefs.WithHint(fmt.Errorf("%s signed by another cluster's CA (CA fingerprint %s, expected %s): %w", who, other, want, errdefs.ErrPermission),
		"the node belongs to another cluster, or this cluster was re-created: join it again with a join token of this cluster")
}

// identity reads a node certificate's role and name from its URI SAN
// spiffe://gantry/<role>/<name>, which must agree with its CN.
func identity(cert *x509.Certificate) (Role, string, error) {
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" && u.Host == trustDomain {
			found = append(found, u.Path)
		}
	}
	if len(found) != 1 {
		return "", "", fmt.Errorf("%w (found %d): %w", errNoRole, len(found), errdefs.ErrPermission)
	}
	role, name, ok := strings.Cut(strings.TrimPrefix(found[0], "/"), "/")
	switch {
	case !ok || !Role(role).Valid():
		return "", "", fmt.Errorf("certificate identity spiffe://%s%s names no known role: %w", trustDomain, found[0], errdefs.ErrPermission)
	case ValidName(name) != nil || name != cert.Subject.CommonName:
		return "", "", fmt.Errorf("certificate identity spiffe://%s%s does not match its CN %q: %w", trustDomain, found[0], cert.Subject.CommonName, errdefs.ErrPermission)
	}
	return Role(role), name, nil
}

func joinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}
