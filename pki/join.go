package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
)

// Join tokens.
//
// A join token is "gtyj.<role>.<id>.<secret>.<ca-fingerprint>":
//   - role is the role the joining node gets (server or worker);
//   - id names the token in the state (and in revocations and logs);
//   - secret is 256 random bits; the state keeps only its SHA-256;
//   - ca-fingerprint is CAFingerprint of the cluster CA, so the joining node
//     checks the server's CA before sending the token (as kubeadm's
//     discovery-token-ca-cert-hash does); it makes the token useless
//     against an impostor that does not hold the CA key.
//
// id and secret are lowercase base32 (a-z, 2-7); the fingerprint is hex.

// JoinTokenPrefix starts every join token, so that one is recognised in a
// file or an environment variable (and by secret scanners).
const JoinTokenPrefix = "gtyj"

const (
	joinIDLen     = 10 // 50 bits: unique enough to name, not a secret
	joinSecretLen = 52 // 32 bytes in base32 without padding
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// JoinToken is a parsed join token, without its secret.
type JoinToken struct {
	ID   string
	Role Role
	// SecretHash is the hex SHA-256 of the secret, what the state stores
	// and compares (HashJoinSecret).
	SecretHash string
	// CAFingerprint is the cluster CA's fingerprint (CAFingerprint).
	CAFingerprint string
}

// NewJoinToken makes a join token for role in the cluster whose CA
// certificate is caDER. token is what the operator hands to the new node
// (it is a credential: show it once); t is what to record in the state.
func NewJoinToken(role Role, caDER []byte) (token string, t JoinToken, err error) {
	if err := checkRole(role); err != nil {
		return "", JoinToken{}, fmt.Errorf("new join token: %w", err)
	}
	if len(caDER) == 0 {
		return "", JoinToken{}, fmt.Errorf("new join token: the CA certificate is empty: %w", errdefs.ErrInvalid)
	}
	var idb [8]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", JoinToken{}, fmt.Errorf("new join token: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", JoinToken{}, fmt.Errorf("new join token: %w", err)
	}
	id := strings.ToLower(b32.EncodeToString(idb[:]))[:joinIDLen]
	sec := strings.ToLower(b32.EncodeToString(secret[:]))
	fp := CAFingerprint(caDER)
	token = strings.Join([]string{JoinTokenPrefix, string(role), id, sec, fp}, ".")
	return token, JoinToken{ID: id, Role: role, SecretHash: HashJoinSecret(sec), CAFingerprint: fp}, nil
}

// HashJoinSecret is the hex SHA-256 of a join token's secret part. The
// secret is 256 random bits, so a fast hash cannot be brute-forced.
func HashJoinSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseJoinToken parses a join token (surrounding white space ignored).
// The errors say which part is wrong without repeating the token, which
// is a credential.
func ParseJoinToken(s string) (JoinToken, error) {
	const form = "gtyj.<role>.<id>.<secret>.<ca-fingerprint>"
	bad := func(format string, args ...any) (JoinToken, error) {
		return JoinToken{}, errdefs.WithHint(fmt.Errorf("join token: "+format+": %w", append(args, errdefs.ErrInvalid)...),
			"copy the whole token printed when it was created, of the form "+form)
	}
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) != 5 {
		if !strings.HasPrefix(s, JoinTokenPrefix+".") {
			return bad("it does not start with %q", JoinTokenPrefix+".")
		}
		return bad("it has %d dot-separated parts, want 5", len(parts))
	}
	prefix, role, id, secret, fp := parts[0], Role(parts[1]), parts[2], parts[3], parts[4]
	switch {
	case prefix != JoinTokenPrefix:
		return bad("it does not start with %q", JoinTokenPrefix+".")
	case !role.Valid():
		return bad("role %q is unknown (want %s or %s)", clip(string(role)), RoleServer, RoleWorker)
	case len(id) != joinIDLen || !isBase32Lower(id):
		return bad("id must be %d characters of a-z and 2-7", joinIDLen)
	case len(secret) != joinSecretLen || !isBase32Lower(secret):
		return bad("secret must be %d characters of a-z and 2-7 (is the token cut short?)", joinSecretLen)
	case len(fp) != fingerprintLen || !isHexLower(fp):
		return bad("CA fingerprint must be %d characters of 0-9 and a-f", fingerprintLen)
	}
	return JoinToken{ID: id, Role: role, SecretHash: HashJoinSecret(secret), CAFingerprint: fp}, nil
}

// CheckCA checks that the token was made for the cluster whose CA
// certificate is caDER (comparison in constant time).
func (t JoinToken) CheckCA(caDER []byte) error {
	got := CAFingerprint(caDER)
	if subtle.ConstantTimeCompare([]byte(got), []byte(t.CAFingerprint)) != 1 {
		return errdefs.WithHint(fmt.Errorf("join token %s is for another cluster (CA fingerprint %s, this cluster's is %s): %w",
			t.ID, t.CAFingerprint, got, errdefs.ErrPermission), "create a join token on this cluster")
	}
	return nil
}

// SecretMatches reports, in constant time, whether hash is the token's
// SecretHash.
func (t JoinToken) SecretMatches(hash string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(t.SecretHash)) == 1
}

func isBase32Lower(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

func isHexLower(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'f') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// clip shortens what a message repeats of untrusted input.
func clip(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
