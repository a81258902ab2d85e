package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func newCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a key and CSR for name and has ca sign it, issued at now.
func issue(t testing.TB, ca *CA, role Role, name string, ttl time.Duration, now time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, csr, err := NewKeyAndCSR(name)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = ca.Issue(csr, role, name, []net.IP{net.ParseIP("127.0.0.1")}, ttl, now)
	if err != nil {
		t.Fatalf("Issue(%s, %s): %v", role, name, err)
	}
	return certPEM, keyPEM
}

// nodeCert is issue made into the tls.Certificate a node presents.
func nodeCert(t testing.TB, ca *CA, role Role, name string) tls.Certificate {
	t.Helper()
	return nodeCertAt(t, ca, role, name, DefaultNodeTTL, time.Now())
}

func nodeCertAt(t testing.TB, ca *CA, role Role, name string, ttl time.Duration, now time.Time) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := issue(t, ca, role, name, ttl, now)
	c, err := KeyPair(certPEM, keyPEM, ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v BasicConstraintsValid=%v MaxPathLen=%d MaxPathLenZero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("algorithms %v / %v, want ECDSA P-256 with SHA-256", c.PublicKeyAlgorithm, c.SignatureAlgorithm)
	}
	if life := c.NotAfter.Sub(now); life < CALifetime-time.Second || life > CALifetime+time.Second {
		t.Errorf("CA lifetime %v, want %v", life, CALifetime)
	}
	if !strings.HasPrefix(c.Subject.CommonName, "Gantry cluster CA ") || len(c.Subject.CommonName) != len("Gantry cluster CA ")+8 {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	other := newCA(t)
	if other.Cert.Subject.CommonName == c.Subject.CommonName || other.Fingerprint() == ca.Fingerprint() {
		t.Error("two CAs share a name or fingerprint")
	}

	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || string(loaded.PEM) != string(ca.PEM) {
		t.Error("LoadCA did not give back the same certificate")
	}
	// The loaded CA signs certificates that verify against the original.
	cert := nodeCert(t, loaded, RoleWorker, "w1")
	if err := cert.Leaf.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("certificate from loaded CA: %v", err)
	}

	otherKey, _ := other.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), otherKey); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("LoadCA with another CA's key: %v", err)
	}
	leafPEM, _ := issue(t, ca, RoleWorker, "w1", time.Hour, now)
	if _, err := LoadCA(leafPEM, keyPEM); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA with a node certificate: %v", err)
	}
	if _, err := LoadCA([]byte("junk"), keyPEM); !errdefs.IsInvalid(err) {
		t.Errorf("LoadCA of junk: %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	keyPEM, csr, err := NewKeyAndCSR("web-1")
	if err != nil {
		t.Fatal(err)
	}
	ips := []net.IP{net.ParseIP("10.99.0.5"), net.ParseIP("::1"), net.IPv4zero}
	certPEM, err := ca.Issue(csr, RoleServer, "web-1", ips, 48*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := KeyPair(certPEM, keyPEM, ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	c := pair.Leaf
	if c.Subject.CommonName != "web-1" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://gantry/server/web-1" {
		t.Errorf("URIs %v", c.URIs)
	}
	if strings.Join(c.DNSNames, ",") != "server.gantry,web-1" {
		t.Errorf("DNS names %v", c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(ips[0]) || !c.IPAddresses[1].Equal(ips[1]) {
		t.Errorf("IP SANs %v, want 10.99.0.5 and ::1 (0.0.0.0 dropped)", c.IPAddresses)
	}
	if len(c.ExtKeyUsage) != 2 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v", c.ExtKeyUsage)
	}
	if c.IsCA {
		t.Error("node certificate is a CA")
	}
	if !c.NotBefore.Equal(now.Add(-time.Minute).Truncate(time.Second)) || !c.NotAfter.Equal(now.Add(48*time.Hour).Truncate(time.Second)) {
		t.Errorf("validity %v – %v, want now-1m – now+48h", c.NotBefore, c.NotAfter)
	}
	if len(pair.Certificate) != 2 || string(pair.Certificate[1]) != string(ca.Cert.Raw) {
		t.Error("KeyPair does not present the CA after the node certificate")
	}
	if role, name, err := identity(c); role != RoleServer || name != "web-1" || err != nil {
		t.Errorf("identity = %s, %s, %v", role, name, err)
	}

	// A lifetime past the CA's is cut at the CA's expiry.
	late, _ := issue(t, ca, RoleWorker, "w1", MaxNodeTTL, ca.Cert.NotAfter.Add(-time.Hour))
	lc, _ := parseCertPEM(late)
	if !lc.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %v past the CA's %v", lc.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	_, csr, err := NewKeyAndCSR("w1")
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit in the signature, the last bytes of the DER.
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)-3] ^= 0x01
	// Or swap the public key for another's, keeping the signature.
	_, other, _ := NewKeyAndCSR("w1")
	otherReq, _ := x509.ParseCertificateRequest(other)
	req, _ := x509.ParseCertificateRequest(csr)
	swapped := append([]byte(nil), csr...)
	swapped = []byte(strings.Replace(string(swapped), string(req.RawSubjectPublicKeyInfo), string(otherReq.RawSubjectPublicKeyInfo), 1))

	for _, tc := range []struct {
		name string
		csr  []byte
		role Role
		node string
		ttl  time.Duration
		want string
	}{
		{"bad signature", tampered, RoleWorker, "w1", time.Hour, "signature does not verify"},
		{"swapped key", swapped, RoleWorker, "w1", time.Hour, "signature does not verify"},
		{"not a CSR", []byte("junk"), RoleWorker, "w1", time.Hour, "parse certificate request"},
		{"zero ttl", csr, RoleWorker, "w1", 0, "must be positive"},
		{"negative ttl", csr, RoleWorker, "w1", -time.Hour, "must be positive"},
		{"ttl too long", csr, RoleWorker, "w1", MaxNodeTTL + time.Hour, "longer than the maximum"},
		{"unknown role", csr, Role("admin"), "w1", time.Hour, `role "admin" is unknown`},
		{"bad name", csr, RoleWorker, "Web_1", time.Hour, "only lowercase letters"},
	} {
		_, err := ca.Issue(tc.csr, tc.role, tc.node, nil, tc.ttl, now)
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want invalid with %q", tc.name, err, tc.want)
		}
	}
	if _, err := ca.Issue(csr, RoleWorker, "w1", nil, time.Hour, ca.Cert.NotAfter.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "CA expired") {
		t.Errorf("issue after the CA expired: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "w1", "node-7", strings.Repeat("a", 63)} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                      "empty",
		strings.Repeat("a", 64): "more than 63",
		"-a":                    "starts or ends",
		"a-":                    "starts or ends",
		"Node1":                 "lowercase",
		"a.b":                   "'.'",
		"a/b":                   "'/'",
	} {
		err := ValidName(name)
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--name") {
			t.Errorf("ValidName(%q) = %v, want invalid with %q and how to fix it", name, err, want)
		}
	}
}

func TestNeedsRenewal(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{NotBefore: start, NotAfter: start.Add(300 * 24 * time.Hour)}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{199 * 24 * time.Hour, false},
		{201 * 24 * time.Hour, true},
		{400 * 24 * time.Hour, true},
	} {
		if got := NeedsRenewal(c, start.Add(tc.at)); got != tc.want {
			t.Errorf("NeedsRenewal at +%v = %v, want %v", tc.at, got, tc.want)
		}
	}
}

func TestNodeFiles(t *testing.T) {
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := LoadNodeFiles(dir); !errdefs.IsNotFound(err) {
		t.Errorf("LoadNodeFiles of a missing dir: %v, want not found", err)
	}
	certPEM, keyPEM := issue(t, ca, RoleWorker, "w1", time.Hour, time.Now())
	if err := WriteNodeFiles(dir, certPEM, keyPEM, ca.PEM); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", st.Mode(), err)
	}
	n, err := LoadNodeFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n.Role != RoleWorker || n.Name != "w1" || n.Cert == nil || string(n.CAPEM) != string(ca.PEM) {
		t.Errorf("loaded %s/%s", n.Role, n.Name)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files in the TLS dir, want 3 (temporary files left?)", len(entries))
	}

	// Rotation overwrites in place.
	cert2, key2 := issue(t, ca, RoleWorker, "w1", 2*time.Hour, time.Now())
	if err := WriteNodeFiles(dir, cert2, key2, ca.PEM); err != nil {
		t.Fatal(err)
	}
	if n2, err := LoadNodeFiles(dir); err != nil || n2.Cert.SerialNumber.Cmp(n.Cert.SerialNumber) == 0 {
		t.Errorf("after rewrite: %v, serial unchanged", err)
	}

	// A certificate from another CA, or a key of another certificate, is refused.
	other := newCA(t)
	if err := WriteNodeFiles(dir, cert2, key2, other.PEM); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNodeFiles(dir); err == nil || !strings.Contains(err.Error(), "not signed by the cluster CA") {
		t.Errorf("certificate of another CA: %v", err)
	}
	if err := WriteNodeFiles(dir, cert2, keyPEM, ca.PEM); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNodeFiles(dir); !errdefs.IsInvalid(err) {
		t.Errorf("key of another certificate: %v", err)
	}
}

func TestErrorsCarryPermission(t *testing.T) {
	_, _, err := PeerRole(&tls.ConnectionState{})
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("PeerRole without certificate: %v", err)
	}
	if _, _, err := PeerRole(nil); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("PeerRole(nil): %v", err)
	}
	// A certificate of the right CA but without a Gantry identity.
	ca := newCA(t)
	c := nodeCert(t, ca, RoleWorker, "w1")
	c.Leaf.URIs = nil
	if _, _, err := PeerRole(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}); !errors.Is(err, errNoRole) {
		t.Errorf("PeerRole of a certificate without identity: %v", err)
	}
}

func TestReissue(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	now := time.Now()
	cur := nodeCertAt(t, ca, RoleServer, "s1", 90*24*time.Hour, now.Add(-70*24*time.Hour))
	if !NeedsRenewal(cur.Leaf, now) {
		t.Fatal("a 90-day certificate 70 days old does not need renewal")
	}
	_, csr, err := NewKeyAndCSR("ignored")
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := ca.Reissue(csr, cur.Leaf, DefaultNodeTTL, now)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := parseCertPEM(renewed)
	if role, name, err := identity(c); role != RoleServer || name != "s1" || err != nil {
		t.Errorf("renewed identity %s/%s, %v; want server/s1", role, name, err)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || NeedsRenewal(c, now) {
		t.Errorf("renewed IPs %v, NeedsRenewal %v", c.IPAddresses, NeedsRenewal(c, now))
	}

	// An expired certificate, or one of another cluster, cannot renew.
	old := nodeCertAt(t, ca, RoleWorker, "w1", time.Hour, now.Add(-2*time.Hour))
	if _, err := ca.Reissue(csr, old.Leaf, DefaultNodeTTL, now); !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("renew of an expired certificate: %v", err)
	}
	foreign := nodeCert(t, other, RoleWorker, "w1")
	if _, err := ca.Reissue(csr, foreign.Leaf, DefaultNodeTTL, now); !errors.Is(err, errdefs.ErrPermission) {
		t.Errorf("renew of another cluster's certificate: %v", err)
	}
	if err := CheckValidity(old.Leaf, now); err == nil || !strings.Contains(err.Error(), `certificate "w1" expired at`) || !strings.Contains(err.Error(), "join token") {
		t.Errorf("CheckValidity of an expired certificate: %v", err)
	}
	if err := CheckValidity(cur.Leaf, now); err != nil {
		t.Errorf("CheckValidity of a valid certificate: %v", err)
	}
}
