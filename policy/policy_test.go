package policy

import (
	"strings"
	"testing"
)

const testFile = `
principals:
  - name: ci
    allow: [list_*, get_service, deploy, scale_service]
  - name: intern
    deny: [remove_service]
  - name: "oauth:bob@https://idp.example/x"
    deny: [deploy]
rules:
  - name: no-huge-scale
    when: tool == "scale_service" && args.replicas > 10
    effect: deny
    message: more than 10 replicas needs the platform team
  - name: prod-needs-approval
    when: labels.tier == "prod" && !read_only
    effect: needs-approval
  - name: admin-ok
    when: principal == "admin"
    effect: allow
`

func mustLoad(t testing.TB, data string, mode Mode) *Policy {
	t.Helper()
	p, err := Load([]byte(data), mode, "test.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

func TestEvaluateOutcomes(t *testing.T) {
	p := mustLoad(t, testFile, ModeNone)
	ro, _ := ForMode(ModeReadOnly)
	nd, _ := ForMode(ModeNoDestructive)
	deploy := Input{Principal: "admin", Tool: "deploy", Destructive: true}
	cases := []struct {
		name   string
		p      *Policy
		in     Input
		effect Effect
		rule   string
	}{
		{"read-only blocks deploy", ro, deploy, Deny, "mode/read-only"},
		{"read-only allows list", ro, Input{Tool: "list_services", ReadOnly: true}, Allow, ""},
		{"no-destructive blocks remove", nd, Input{Tool: "remove_service", Destructive: true}, Deny, "mode/no-destructive"},
		{"no-destructive allows scale", nd, Input{Tool: "scale_service"}, Allow, ""},
		{"allow list admits", p, Input{Principal: "ci/abc", Tool: "list_services", ReadOnly: true}, Allow, ""},
		{"allow list refuses", p, Input{Principal: "ci/abc", Tool: "remove_service"}, Deny, "principal/ci/allow"},
		{"deny list refuses", p, Input{Principal: "intern/x1", Tool: "remove_service"}, Deny, "principal/intern/deny"},
		{"deny list leaves others", p, Input{Principal: "intern/x1", Tool: "deploy"}, Allow, ""},
		{"cel deny", p, Input{Principal: "ci/abc", Tool: "scale_service", Args: map[string]any{"name": "web", "replicas": 11.0}}, Deny, "no-huge-scale"},
		{"cel no match", p, Input{Principal: "ci/abc", Tool: "scale_service", Args: map[string]any{"name": "web", "replicas": 10.0}}, Allow, ""},
		{"cel missing arg", p, Input{Principal: "ci/abc", Tool: "scale_service", Args: map[string]any{"name": "web"}}, Allow, ""},
		{"cel labels need approval", p, Input{Principal: "intern/x1", Tool: "scale_service", Service: "web", Labels: map[string]string{"tier": "prod"}}, NeedsApproval, "prod-needs-approval"},
		{"cel labels read-only ok", p, Input{Principal: "intern/x1", Tool: "get_service", ReadOnly: true, Labels: map[string]string{"tier": "prod"}}, Allow, ""},
		{"cel allow", p, Input{Principal: "admin", Tool: "deploy"}, Allow, "admin-ok"},
		{"nil policy", nil, deploy, Allow, ""},
		{"oauth principal", p, Input{Principal: "oauth:bob@https://idp.example/x", Tool: "deploy"}, Deny, "principal/oauth:bob@https://idp.example/x/deny"},
	}
	for _, c := range cases {
		d := c.p.Evaluate(c.in)
		if d.Effect != c.effect || d.Rule != c.rule {
			t.Errorf("%s: got %s by %q (%s), want %s by %q", c.name, d.Effect, d.Rule, d.Reason, c.effect, c.rule)
		}
		if d.Effect != Allow && d.Reason == "" {
			t.Errorf("%s: no reason", c.name)
		}
	}
}

func TestModeFlagOverridesFile(t *testing.T) {
	p := mustLoad(t, "mode: no-destructive\n", ModeReadOnly)
	if p.Mode() != ModeReadOnly {
		t.Fatalf("mode = %q", p.Mode())
	}
	if d := p.Evaluate(Input{Tool: "scale_service"}); d.Effect != Deny {
		t.Fatalf("scale in read-only: %+v", d)
	}
}

func TestEvaluationErrorFailsClosed(t *testing.T) {
	p := mustLoad(t, `rules:
  - {name: typed, when: 'args.replicas > 10', effect: deny}
`, ModeNone)
	d := p.Evaluate(Input{Tool: "scale_service", Args: map[string]any{"replicas": "many"}})
	if d.Effect != Deny || d.Rule != "typed" || !strings.Contains(d.Reason, "could not be evaluated") {
		t.Fatalf("got %+v", d)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := map[string][]string{
		"mode: sometimes\n": {"mode:", "read-only"},
		"rules:\n  - {name: r1, when: 'tool ==', effect: deny}":                                          {"rule r1.when: CEL:"},
		"rules:\n  - {name: r1, when: 'nope == 1', effect: deny}":                                        {"rule r1.when: CEL:", "nope"},
		"rules:\n  - {name: r1, when: 'tool', effect: deny}":                                             {"rule r1.when", "bool"},
		"rules:\n  - {name: r1, when: 'true', effect: maybe}":                                            {"rule r1.effect", "needs-approval"},
		"rules:\n  - {name: r1, when: 'true', effect: deny}\n  - {name: r1, when: 'true', effect: deny}": {"rule r1 (rules[1]).name"},
		"rules:\n  - {name: 'bad name', when: 'true', effect: deny}":                                     {"rules[0].name"},
		"rules:\n  - {name: r1, when: '', effect: deny}":                                                 {"rule r1.when: empty"},
		"principals:\n  - {name: ci, allow: ['rm -rf']}":                                                 {"principal ci.allow[0]"},
		"rules:\n  - {name: r1, when: 'true', effect: deny, colour: red}":                                {"colour"},
		"bogus: 1\n": {"bogus"},
	}
	for in, wants := range cases {
		_, err := Load([]byte(in), ModeNone, "p.yaml")
		if err == nil {
			t.Errorf("%q: no error", in)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not contain %q", in, err, w)
			}
		}
	}
}

func TestEmptyFileAllows(t *testing.T) {
	p := mustLoad(t, "", ModeNone)
	if d := p.Evaluate(Input{Tool: "remove_service", Destructive: true}); d.Effect != Allow {
		t.Fatalf("got %+v", d)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustLoad(b, testFile, ModeNone)
	in := Input{Principal: "intern/x1", Tool: "scale_service", Service: "web",
		Args: map[string]any{"name": "web", "replicas": 3.0}, Labels: map[string]string{"tier": "dev"}}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(in); d.Effect != Allow {
			b.Fatal(d)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(testFile))
	f.Add([]byte("mode: read-only\n"))
	f.Add([]byte("rules:\n  - {name: r, when: 'args.x[0] > 1', effect: needs-approval}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load(data, ModeNone, "fuzz.yaml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// A loaded policy evaluates without panicking.
		d := p.Evaluate(Input{Principal: "ci/1", Tool: "deploy", Args: map[string]any{"x": []any{2.0}, "replicas": 3.0}, Labels: map[string]string{"tier": "prod"}})
		if !d.Effect.valid() {
			t.Fatalf("invalid effect %q", d.Effect)
		}
	})
}

// TestExecOffByDefault: exec_instance is refused unless an allow rule or a
// principal's allow list naming it turns it on; the refusal says how.
func TestExecOffByDefault(t *testing.T) {
	const file = `
principals:
  - name: ops
    allow: [list_*, exec_instance]
  - name: wild
    allow: ["*"]
  - name: prefix
    allow: ["exec_*"]
rules:
  - name: allow-exec
    when: tool == "exec_instance" && args.command[0] in ["cat", "ls", "ps"]
    effect: allow
  - name: exec-rm-approval
    when: tool == "exec_instance" && args.command[0] == "rm"
    effect: needs-approval
  - name: no-exec-sh
    when: tool == "exec_instance" && args.command[0] == "sh"
    effect: deny
`
	p := mustLoad(t, file, ModeNone)
	empty := mustLoad(t, "", ModeNone)
	ro := mustLoad(t, file, ModeReadOnly)
	nd := mustLoad(t, file, ModeNoDestructive)
	exec := func(who string, argv ...any) Input {
		return Input{Principal: who, Tool: "exec_instance", Destructive: true, Args: map[string]any{"instance": "web-0-abc", "command": argv}}
	}
	cases := []struct {
		name   string
		p      *Policy
		in     Input
		effect Effect
		rule   string
	}{
		{"nil policy", nil, exec("admin", "cat", "/etc/hostname"), Deny, "default/exec-off"},
		{"empty policy", empty, exec("admin", "cat", "/etc/hostname"), Deny, "default/exec-off"},
		{"allow rule", p, exec("admin", "cat", "/etc/hostname"), Allow, "allow-exec"},
		{"no rule matches", p, exec("admin", "touch", "/x"), Deny, "default/exec-off"},
		{"needs approval", p, exec("admin", "rm", "/x"), NeedsApproval, "exec-rm-approval"},
		{"deny rule", p, exec("ops/x1", "sh", "-c", "id"), Deny, "no-exec-sh"},
		{"principal allow list names it", p, exec("ops/x1", "touch", "/x"), Allow, ""},
		{"star does not count", p, exec("wild/x1", "touch", "/x"), Deny, "default/exec-off"},
		{"prefix does not count", p, exec("prefix/x1", "touch", "/x"), Deny, "default/exec-off"},
		{"missing command arg", p, Input{Principal: "admin", Tool: "exec_instance", Destructive: true}, Deny, "default/exec-off"},
		{"read-only mode", ro, exec("admin", "cat", "/etc/hostname"), Deny, "mode/read-only"},
		{"no-destructive mode", nd, exec("admin", "cat", "/etc/hostname"), Deny, "mode/no-destructive"},
		{"no-destructive without the hint", nd, Input{Principal: "admin", Tool: "exec_instance", Args: map[string]any{"command": []any{"ls"}}}, Deny, "mode/no-destructive"},
		{"other tools unaffected", empty, Input{Principal: "admin", Tool: "deploy", Destructive: true}, Allow, ""},
		{"nil policy other tools", nil, Input{Principal: "admin", Tool: "deploy"}, Allow, ""},
	}
	for _, c := range cases {
		d := c.p.Evaluate(c.in)
		if d.Effect != c.effect || d.Rule != c.rule {
			t.Errorf("%s: got %s by %q (%s), want %s by %q", c.name, d.Effect, d.Rule, d.Reason, c.effect, c.rule)
		}
	}
	d := empty.Evaluate(exec("admin", "ls"))
	for _, want := range []string{"--policy", `tool == "exec_instance"`, "effect: allow", "allow list"} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("default refusal does not say %q:\n%s", want, d.Reason)
		}
	}
	// The snippet in the reason is a policy file that enables exec.
	_, snippet, _ := strings.Cut(d.Reason, "has a rule such as:\n")
	snippet, _, _ = strings.Cut(snippet, "\nor list")
	hinted := mustLoad(t, snippet, ModeNone)
	if got := hinted.Evaluate(exec("admin", "ls", "/")); got.Effect != Allow || got.Rule != "allow-exec-instance" {
		t.Errorf("the hinted snippet decides %s by %q, want allow by allow-exec-instance; snippet:\n%s", got.Effect, got.Rule, snippet)
	}
	if !OffByDefault("exec_instance") || OffByDefault("deploy") {
		t.Error("OffByDefault: want only exec_instance")
	}
}
