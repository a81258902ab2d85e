package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// selfSigned writes a self-signed certificate and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"gantry.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// A non-loopback --listen is allowed only with TLS; the refusal says how to
// fix it. Cert and key go together and must load.
func TestDevListenRequiresTLS(t *testing.T) {
	cert, key := selfSigned(t)
	cases := []struct {
		args []string
		want string // "" = accepted; else a substring of the error
	}{
		{[]string{"--listen", "127.0.0.1:7433"}, ""},
		{[]string{"--listen", "localhost:7433"}, ""},
		{[]string{"--listen", "[::1]:7433"}, ""},
		{[]string{"--listen", "0.0.0.0:7433"}, "requires TLS"},
		{[]string{"--listen", "192.0.2.10:7433"}, "--tls-cert FILE --tls-key FILE"},
		{[]string{"--listen", "0.0.0.0:7433", "--tls-cert", cert, "--tls-key", key}, ""},
		{[]string{"--listen", "127.0.0.1:7433", "--tls-cert", cert, "--tls-key", key}, ""},
		{[]string{"--listen", "0.0.0.0:7433", "--tls-cert", cert}, "go together"},
		{[]string{"--listen", "0.0.0.0:7433", "--tls-cert", key, "--tls-key", cert}, "PEM"},
		{[]string{"--listen", "0.0.0.0:7433", "--tls-cert", "/nonexistent.pem", "--tls-key", key}, "/nonexistent.pem"},
	}
	for _, c := range cases {
		o, err := ParseDevFlags(c.args, &bytes.Buffer{})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: err = %v, want an invalid-argument error containing %q", c.args, err, c.want)
		case err == nil:
			ln, scheme, err := listenerTLS(o, nil, nil)
			if wantTLS := o.TLSCert != ""; err != nil || (scheme == "https") != wantTLS || (ln != nil) != wantTLS {
				t.Errorf("%v: listener scheme %q, err %v", c.args, scheme, err)
			}
		}
	}
}

// A renewed certificate written over the files is served without a
// restart; files that stop loading keep the previous certificate.
func TestCertReload(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		t.Fatal(err)
	}
	first, _ := r.get(nil)
	replace := func(cert, key []byte) {
		t.Helper()
		later := time.Now().Add(time.Minute)
		for path, data := range map[string][]byte{certFile: cert, keyFile: key} {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, later, later); err != nil {
				t.Fatal(err)
			}
		}
		r.mu.Lock()
		r.checked = time.Time{} // as if the check interval had passed
		r.mu.Unlock()
	}
	c2, k2 := selfSigned(t)
	cert2, _ := os.ReadFile(c2)
	key2, _ := os.ReadFile(k2)
	replace(cert2, key2)
	second, _ := r.get(nil)
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatal("the renewed certificate was not loaded")
	}
	replace([]byte("junk"), key2)
	if third, _ := r.get(nil); third != second {
		t.Error("a broken renewal replaced the working certificate")
	}
}
