package mcp

import (
	"encoding/json"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestScopesInclude(t *testing.T) {
	for _, tc := range []struct {
		has  Scope
		need Scope
		ok   bool
	}{
		{ScopeRead, ScopeRead, true}, {ScopeRead, ScopeOperate, false}, {ScopeRead, ScopeAdmin, false},
		{ScopeOperate, ScopeRead, true}, {ScopeOperate, ScopeOperate, true}, {ScopeOperate, ScopeAdmin, false},
		{ScopeAdmin, ScopeRead, true}, {ScopeAdmin, ScopeOperate, true}, {ScopeAdmin, ScopeAdmin, true},
		{"root", ScopeRead, false}, {ScopeAdmin, "root", false},
	} {
		if got := (Principal{Name: "p", Scopes: []Scope{tc.has}}).Has(tc.need); got != tc.ok {
			t.Errorf("%s has %s = %v, want %v", tc.has, tc.need, got, tc.ok)
		}
	}
	if (Principal{}).Has(ScopeRead) {
		t.Error("a principal without scopes may read")
	}
}

func TestToolScope(t *testing.T) {
	if s := toolScope(&sdk.Tool{Annotations: readOnly("x")}); s != ScopeRead {
		t.Errorf("read-only tool needs %s", s)
	}
	if s := toolScope(&sdk.Tool{Annotations: mutating("x", true, false)}); s != ScopeOperate {
		t.Errorf("mutating tool needs %s", s)
	}
	if s := toolScope(&sdk.Tool{}); s != ScopeOperate {
		t.Errorf("tool without annotations needs %s, want operate (fail closed)", s)
	}
	if s := toolScope(needs(ScopeAdmin, &sdk.Tool{Annotations: readOnly("x")})); s != ScopeAdmin {
		t.Errorf("declared admin tool needs %s", s)
	}
}

func redactString(t *testing.T, in string) string {
	t.Helper()
	out := redactArguments(json.RawMessage(in))
	if out != nil && !json.Valid(out) {
		t.Fatalf("redacted %s is not JSON: %s", in, out)
	}
	return string(out)
}

func TestRedactArguments(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		want, never []string
	}{
		{"secret keys", `{"name":"web","token":"t0p","api_key":"k3y","Password":"pw","nested":{"client_secret":"s3c"}}`,
			[]string{`"name":"web"`, `"token":"[redacted]"`, `"api_key":"[redacted]"`}, []string{"t0p", "k3y", `"pw"`, "s3c"}},
		{"env map in a spec", `{"spec":{"name":"web","env":{"DB_URL":"postgres://u:p@db","MODE":"x1"}}}`,
			[]string{`"DB_URL":"[redacted]"`, `"MODE":"[redacted]"`, `"name":"web"`}, []string{"postgres", "x1"}},
		{"env list", `{"env":["A=one","B=two"]}`, []string{`"A=[redacted]"`}, []string{"one", "two"}},
		{"yaml spec", `{"spec_yaml":"name: web\nimage: busybox\nenv:\n  SECRET_X: hunter2\n  PLAIN: visible-no\n"}`,
			[]string{`"image":"busybox"`, `"SECRET_X":"[redacted]"`}, []string{"hunter2", "visible-no"}},
		{"yaml that does not parse", `{"spec_yaml":"env: [unclosed\n  PASSWORD: hunter2"}`, []string{"do not parse"}, []string{"hunter2"}},
		{"long string", `{"ref":"` + strings.Repeat("a", 1000) + `"}`, []string{"[1000 bytes]"}, []string{strings.Repeat("a", 300)}},
		{"not json", `{"a":`, []string{"not JSON"}, nil},
	} {
		got := redactString(t, tc.in)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %s does not contain %s", tc.name, got, w)
			}
		}
		for _, n := range tc.never {
			if strings.Contains(got, n) {
				t.Errorf("%s: %s contains %s", tc.name, got, n)
			}
		}
	}
	if got := redactArguments(nil); got != nil {
		t.Errorf("no arguments = %s", got)
	}
	// Bounded: many keys collapse to a summary that keeps the key names.
	var b strings.Builder
	b.WriteString(`{"name":"web"`)
	for i := range 200 {
		b.WriteString(`,"field` + strings.Repeat("x", 5) + string(rune('a'+i%26)) + strings.Repeat("y", i%7) + `":"` + strings.Repeat("v", 100) + `"`)
	}
	b.WriteString("}")
	got := redactString(t, b.String())
	if len(got) > maxAuditArgs || !strings.Contains(got, "_truncated") || !strings.Contains(got, `"name":"web"`) {
		t.Errorf("large arguments: %d bytes: %.300s", len(got), got)
	}
	// Canonical: the same arguments in another order redact to the same bytes.
	if a, c := redactString(t, `{"b":1,"a":{"y":2,"x":3}}`), redactString(t, `{"a":{"x":3,"y":2},"b":1}`); a != c {
		t.Errorf("not canonical: %s vs %s", a, c)
	}
}
