package pki

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	ca := newCA(t)
	for _, role := range []Role{RoleServer, RoleWorker} {
		token, jt, err := NewJoinToken(role, ca.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(token, "gtyj."+string(role)+"."+jt.ID+".") || !strings.HasSuffix(token, "."+ca.Fingerprint()) {
			t.Errorf("token %q has not the form gtyj.<role>.<id>.<secret>.<cafp>", token)
		}
		got, err := ParseJoinToken(" " + token + "\n")
		if err != nil {
			t.Fatal(err)
		}
		if got != jt {
			t.Errorf("parsed %+v, want %+v", got, jt)
		}
		if strings.Contains(token, jt.SecretHash) || len(jt.SecretHash) != 64 {
			t.Errorf("secret hash %q", jt.SecretHash)
		}
		if !got.SecretMatches(jt.SecretHash) || got.SecretMatches(strings.Repeat("0", 64)) {
			t.Error("SecretMatches")
		}
		if err := got.CheckCA(ca.Cert.Raw); err != nil {
			t.Errorf("CheckCA: %v", err)
		}
		other := newCA(t)
		if err := got.CheckCA(other.Cert.Raw); !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "another cluster") {
			t.Errorf("CheckCA of another CA: %v", err)
		}
	}
	a, ja, _ := NewJoinToken(RoleWorker, ca.Cert.Raw)
	b, jb, _ := NewJoinToken(RoleWorker, ca.Cert.Raw)
	if a == b || ja.ID == jb.ID || ja.SecretHash == jb.SecretHash {
		t.Error("two tokens are alike")
	}
	if _, _, err := NewJoinToken("admin", ca.Cert.Raw); !errdefs.IsInvalid(err) {
		t.Errorf("NewJoinToken(admin): %v", err)
	}
}

func TestParseJoinTokenErrors(t *testing.T) {
	ca := newCA(t)
	token, _, err := NewJoinToken(RoleWorker, ca.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, ".")
	}
	for name, tc := range map[string]struct{ token, want string }{
		"empty":        {"", `does not start with "gtyj."`},
		"api token":    {"gty_abcdef", `does not start with "gtyj."`},
		"other prefix": {with(0, "gtyx"), `does not start with "gtyj."`},
		"cut short":    {strings.Join(parts[:4], "."), "4 dot-separated parts, want 5"},
		"role":         {with(1, "admin"), `role "admin" is unknown`},
		"id":           {with(2, "ABC"), "id must be 10 characters"},
		"secret":       {with(3, parts[3][:20]), "secret must be 52 characters"},
		"secret chars": {with(3, strings.Repeat("1", 52)), "secret must be 52 characters"},
		"fingerprint":  {with(4, strings.Repeat("g", 32)), "CA fingerprint must be 32"},
	} {
		_, err := ParseJoinToken(tc.token)
		if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want invalid with %q", name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), parts[3]) {
			t.Errorf("%s: the error repeats the secret: %v", name, err)
		}
		if !strings.Contains(err.Error(), "gtyj.<role>.<id>.<secret>.<ca-fingerprint>") {
			t.Errorf("%s: the error does not show the form: %v", name, err)
		}
	}
}

func FuzzParseJoinToken(f *testing.F) {
	ca, err := NewCA(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	token, _, _ := NewJoinToken(RoleServer, ca.Cert.Raw)
	f.Add(token)
	f.Add("gtyj.worker.aaaaaaaaaa." + strings.Repeat("b", 52) + "." + strings.Repeat("0", 32))
	f.Add("gtyj....")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := ParseJoinToken(s)
		if err != nil {
			if jt != (JoinToken{}) {
				t.Errorf("error %v with a non-empty token %+v", err, jt)
			}
			if !errdefs.IsInvalid(err) {
				t.Errorf("error %v is not invalid", err)
			}
			return
		}
		// A token that parses is exactly the canonical form.
		parts := strings.Split(strings.TrimSpace(s), ".")
		if len(parts) != 5 || parts[0] != JoinTokenPrefix || Role(parts[1]) != jt.Role || parts[2] != jt.ID ||
			HashJoinSecret(parts[3]) != jt.SecretHash || parts[4] != jt.CAFingerprint {
			t.Errorf("ParseJoinToken(%q) = %+v", s, jt)
		}
		if !jt.Role.Valid() || len(jt.SecretHash) != 64 || len(jt.CAFingerprint) != 32 {
			t.Errorf("ParseJoinToken(%q) = %+v: fields out of form", s, jt)
		}
	})
}
