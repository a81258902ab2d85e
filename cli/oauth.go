package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// isJWT reports whether a bearer token looks like an OAuth JWT access token
// (three dot-separated parts); gantry's own tokens contain no dot.
func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

// bearerErrorDescription returns the error_description of a
// WWW-Authenticate: Bearer challenge (RFC 6750 §3), or "".
func bearerErrorDescription(challenge string) string {
	const key = `error_description="`
	i := strings.Index(challenge, key)
	if i < 0 {
		return ""
	}
	rest := challenge[i+len(key)-1:] // from the opening quote
	for j := 1; j < len(rest); j++ {
		switch rest[j] {
		case '\\':
			j++
		case '"':
			if s, err := strconv.Unquote(rest[:j+1]); err == nil {
				return s
			}
			return rest[1:j]
		}
	}
	return ""
}

// explainOAuthRejection is the message for a 401 to a JWT: the server's
// reason (expired, wrong audience, ...) says what to fix.
func explainOAuthRejection(addr, reason string) error {
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Errorf("the gantry server at %s rejected the OAuth access token: %s", addr, reason)
}
