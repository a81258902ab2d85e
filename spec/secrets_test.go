package spec

import (
	"slices"
	"strings"
	"testing"
)

// TestSecretsValidation checks the secrets field: variable names like env's,
// no variable set by both env and secrets, secret names as DNS labels.
func TestSecretsValidation(t *testing.T) {
	const base = "name: web\nimage: busybox\n"
	cases := []struct {
		name, in, path string
		line           int
		msg, hint      string
	}{
		{"empty var", `secrets: {"": db-password}`, `secrets[""]`, 3, "must not be empty", ""},
		{"var with =", "secrets:\n  A=B: db", `secrets["A=B"]`, 4, "must not contain '='", "NAME: secret-name"},
		{"var long", "secrets: {" + strings.Repeat("A", 129) + ": db}", "secrets." + strings.Repeat("A", 129), 3, "at most 128 bytes", ""},
		{"also in env", "env: {DB_PASSWORD: x}\nsecrets: {DB_PASSWORD: db-password}", "secrets.DB_PASSWORD", 4, `"DB_PASSWORD" is also set in env`, "remove env.DB_PASSWORD"},
		{"secret name upper", "secrets: {DB_PASSWORD: DB_Password}", "secrets.DB_PASSWORD", 3, "lowercase letters", `try "db-password"`},
		{"secret name empty", `secrets: {DB_PASSWORD: ""}`, "secrets.DB_PASSWORD", 3, "required", "gantry secret set"},
		{"secret name path-like", "secrets: {DB_PASSWORD: ../etc/passwd}", "secrets.DB_PASSWORD", 3, "lowercase letters", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base + c.in + "\n"
			s, err := Parse([]byte(in), "t.yaml")
			if s != nil {
				t.Fatalf("Parse accepted:\n%s", in)
			}
			fe := assertProblem(t, err, c.path, c.line, c.msg)
			if !strings.Contains(fe.Hint, c.hint) {
				t.Errorf("hint %q does not contain %q", fe.Hint, c.hint)
			}
		})
	}
}

// TestSecretsParseValidateDiff checks that a valid secrets map parses, that
// Validate (for specs built in code) applies the same rules, that it
// survives JSON, and that Changes lists it key by key.
func TestSecretsParseValidateDiff(t *testing.T) {
	s, err := Parse([]byte("name: web\nimage: busybox\nenv: {A: b}\nsecrets:\n  DB_PASSWORD: db-password\n  API_KEY: api-key\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Secrets["DB_PASSWORD"]; got != "db-password" {
		t.Fatalf("secrets.DB_PASSWORD = %q", got)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	b := *s
	b.Secrets = map[string]string{"DB_PASSWORD": "other", "TOKEN": "tok"}
	if got, want := Changes(s, &b), []string{"secrets.API_KEY", "secrets.DB_PASSWORD", "secrets.TOKEN"}; !slices.Equal(got, want) {
		t.Errorf("Changes = %v, want %v", got, want)
	}
	b.Secrets = map[string]string{"A": "Bad Name"}
	ve, ok := AsValidationError(b.Validate())
	if !ok || len(ve.Errors) != 2 {
		t.Fatalf("Validate = %v, want two problems (also in env, bad name)", ve)
	}
	if ve.Errors[0].Path != "secrets.A" {
		t.Errorf("path %q, want secrets.A", ve.Errors[0].Path)
	}
	if SecretNameProblem("db-password") != "" || SecretNameProblem("-x") == "" || SecretNameProblem("a/b") == "" {
		t.Error("SecretNameProblem does not follow the DNS label rules")
	}
}
