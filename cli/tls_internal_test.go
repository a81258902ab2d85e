package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --ca-file (or GANTRY_CA_FILE) adds a CA to the system's roots; a file
// that holds no certificate, or is missing, is a usage error saying so.
func TestCAFile(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cli test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, junk := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	trusts := func(c *tls.Config) bool {
		if c == nil || c.RootCAs == nil {
			return false
		}
		_, err := cert.Verify(x509.VerifyOptions{Roots: c.RootCAs})
		return err == nil
	}
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	cases := []struct {
		flag string
		env  []string
		want string // "" = trusts the CA; "none" = nil config
	}{
		{"", nil, "none"},
		{ca, nil, ""},
		{"", []string{"GANTRY_CA_FILE", ca}, ""},
		{ca, []string{"GANTRY_CA_FILE", junk}, ""}, // the flag wins
		{junk, nil, "no PEM certificate"},
		{filepath.Join(dir, "missing.pem"), nil, "missing.pem"},
	}
	for _, c := range cases {
		a := newApp(nil, nil, nil, env(c.env...))
		a.g.caFile = c.flag
		conf, err := a.tlsConfig()
		name := fmt.Sprintf("flag %q env %v", c.flag, c.env)
		switch c.want {
		case "none":
			if err != nil || conf != nil {
				t.Errorf("%s: %v %v, want the defaults", name, conf, err)
			}
		case "":
			if err != nil || !trusts(conf) {
				t.Errorf("%s: err %v, trusts the CA: %v", name, err, trusts(conf))
			}
		default:
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want a usage error containing %q", name, err, c.want)
			}
		}
	}
}
