package spec

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, "web.yaml")
	if err != nil {
		t.Fatalf("Parse(examples/web.yaml): %v", err)
	}
	want := &Service{
		Name:      "web",
		Image:     "127.0.0.1:5000/demo/web:1",
		Command:   []string{"/bin/httpd"},
		Args:      []string{"-f", "-v", "-p", "8080", "-h", "/www"},
		Env:       map[string]string{"GREETING": "hello"},
		Workdir:   "/www",
		Replicas:  3,
		Ports:     []Port{{Name: "http", Port: 8080, Protocol: "tcp"}},
		Resources: Resources{CPU: 250, Memory: 64 << 20, Pids: 256},
		Restart:   RestartAlways,
		Stop:      Stop{Signal: "SIGTERM", Grace: Duration(10 * time.Second)},
		Health: &Health{
			HTTP:     &HTTPCheck{Port: "http", Path: "/"},
			Interval: Duration(2 * time.Second),
			Timeout:  Duration(time.Second),
			Failures: 3,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse(examples/web.yaml) =\n%+v\nwant\n%+v", got, want)
	}
	if !got.InitEnabled() {
		t.Error("InitEnabled() = false for a spec without init")
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse([]byte("name: web\nimage: busybox\nports: [{name: http, port: 80}]\nhealth: {tcp: {port: http}}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"replicas", s.Replicas, 1},
		{"restart", s.Restart, RestartAlways},
		{"stop.signal", s.Stop.Signal, "SIGTERM"},
		{"stop.grace", s.Stop.Grace, Duration(10 * time.Second)},
		{"ports[0].protocol", s.Ports[0].Protocol, "tcp"},
		{"health.interval", s.Health.Interval, Duration(10 * time.Second)},
		{"health.timeout", s.Health.Timeout, Duration(time.Second)},
		{"health.failures", s.Health.Failures, 3},
		{"health.grace", s.Health.Grace, Duration(0)},
		{"init", s.InitEnabled(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseExplicitZeros(t *testing.T) {
	s, err := Parse([]byte("name: web\nimage: busybox\nreplicas: 0\nstop: {grace: 0}\ninit: false\nhealth: {exec: {command: [/ok]}, interval: 500ms}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Replicas != 0 {
		t.Errorf("replicas = %d, want explicit 0", s.Replicas)
	}
	if s.Stop.Grace != 0 {
		t.Errorf("stop.grace = %v, want explicit 0", s.Stop.Grace)
	}
	if s.InitEnabled() {
		t.Error("InitEnabled() = true with init: false")
	}
	if s.Health.Timeout != Duration(500*time.Millisecond) {
		t.Errorf("health.timeout = %v, want the 500ms interval (default timeout is capped by interval)", s.Health.Timeout)
	}
}

func TestParseJSON(t *testing.T) {
	in := "{\n\t\"name\": \"web\",\n\t\"image\": \"busybox\",\n\t\"replicas\": 2,\n\t\"resources\": {\"cpu\": 0.5, \"memory\": 1048576000}\n}"
	s, err := Parse([]byte(in), "web.json")
	if err != nil {
		t.Fatal(err)
	}
	if s.Replicas != 2 || s.Resources.CPU != 500 || s.Resources.Memory != 1048576000 {
		t.Fatalf("got replicas %d cpu %v memory %v", s.Replicas, s.Resources.CPU, s.Resources.Memory)
	}
	_, err = Parse([]byte("{\n  \"name\": \"web\",\n  \"image\": \"busybox\",\n  \"replicas\": \"two\"\n}"), "web.json")
	assertProblem(t, err, "replicas", 4, `must be a whole number, got "two"`)
}

func TestParseNormalizes(t *testing.T) {
	s, err := Parse([]byte("name: web\nimage: busybox\ncap_add: [net_bind_service, CAP_SYS_ADMIN, Kill]\ncommand: []\nenv: {}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_KILL"}; !reflect.DeepEqual(s.CapAdd, want) {
		t.Errorf("cap_add = %v, want %v", s.CapAdd, want)
	}
	if s.Command != nil || s.Env != nil {
		t.Errorf("empty command/env = %#v/%#v, want nil", s.Command, s.Env)
	}
}

func TestParseDocumentErrors(t *testing.T) {
	cases := []struct {
		name, in string
		line     int
		msg      string
	}{
		{"empty", "", 0, "empty spec"},
		{"only comment", "# nothing\n", 0, "empty spec"},
		{"null document", "---\n~\n", 1, "empty spec"},
		{"two documents", "name: a\nimage: b\n---\nname: c\n", 4, "more than one YAML document"},
		{"syntax", "name: web\nimage: [busybox\n", 2, "invalid YAML"},
		{"tab indent", "health:\n\tinterval: 1s\n", 2, "invalid YAML"},
		{"list at top", "- name: web\n", 1, "a spec must be a mapping"},
		{"scalar at top", "web\n", 1, "a spec must be a mapping"},
		{"merge key", "name: web\nimage: busybox\n<<: {replicas: 2}\n", 3, "merge keys"},
		{"duplicate", "name: web\nimage: busybox\nname: api\n", 3, "set twice (first on line 1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse([]byte(c.in), "x.yaml")
			if s != nil || err == nil {
				t.Fatalf("Parse = %v, %v; want an error", s, err)
			}
			ve, ok := AsValidationError(err)
			if !ok || len(ve.Errors) == 0 {
				t.Fatalf("error %T %v is not a ValidationError with problems", err, err)
			}
			fe := ve.Errors[0]
			if fe.Line != c.line || !strings.Contains(fe.Message, c.msg) {
				t.Errorf("problem = line %d %q, want line %d containing %q", fe.Line, fe.Message, c.line, c.msg)
			}
		})
	}
}

func TestParseTabHint(t *testing.T) {
	_, err := Parse([]byte("name: web\nhealth:\n\tinterval: 1s\n"), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), "spaces, not tabs") {
		t.Fatalf("error %v does not mention tabs", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	in := "name: web\nimage: busybox\nenv: {A: \"" + strings.Repeat("x", MaxSpecSize) + "\"}\n"
	_, err := Parse([]byte(in), "big.yaml")
	if err == nil || !strings.Contains(err.Error(), "the limit is 1048576 (1 MiB)") {
		t.Fatalf("Parse of a %d-byte spec: %v", len(in), err)
	}
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("size error is not ErrInvalid: %v", err)
	}
}

func TestParseTypeErrors(t *testing.T) {
	const base = "name: web\nimage: busybox\n" // lines 1-2; cases start on line 3
	cases := []struct {
		in, path string
		line     int
		msg      string
		hint     string
	}{
		{"replicas: three", "replicas", 3, `must be a whole number, got "three"`, ""},
		{"replicas: \"3\"", "replicas", 3, `must be a whole number, got "3"`, "remove the quotes"},
		{"replicas: 2.5", "replicas", 3, "must be a whole number, got 2.5", ""},
		{"replicas: 99999999999999999999", "replicas", 3, "out of range", ""},
		{"replicas: [1]", "replicas", 3, "must be a whole number, got a list", ""},
		{"command: /bin/httpd -f", "command", 3, "must be a list of strings", `["/bin/httpd", "-f"]`},
		{"command: [a, [b]]", "command[1]", 3, "must be a string, got a list", ""},
		{"command: [a, ~]", "command[1]", 3, "must be a string, got nothing", ""},
		{"env: [A=1]", "env", 3, "must be a mapping, got a list", "NAME: value"},
		{"env: {A: [1]}", "env.A", 3, "must be a string, got a list", ""},
		{"env: {A: 1, A: 2}", "env.A", 3, "set twice", ""},
		{"env: {A: \"\\x7f\"}", "env.A", 3, "control character U+007F", ""},
		{"ports: {name: http}", "ports", 3, "must be a list of ports", ""},
		{"ports:\n  - http", "ports[0]", 4, "must be a mapping", ""},
		{"ports:\n  - {name: http, port: \"80\"}", "ports[0].port", 4, `got "80"`, "remove the quotes"},
		{"resources: {cpu: lots}", "resources.cpu", 3, "want a number first", "millicores"},
		{"resources: {cpu: 0.0001}", "resources.cpu", 3, "finer than one millicore", ""},
		{"resources: {memory: 1.5}", "resources.memory", 3, "not a whole number of bytes", ""},
		{"resources: {memory: 64MB}", "resources.memory", 3, `unknown suffix "MB"`, "Mi"},
		{"resources: {memory: [1]}", "resources.memory", 3, "must be a number or a string", ""},
		{"stop: {grace: 10}", "stop.grace", 3, "a duration needs a unit", `"10s"`},
		{"stop: {grace: soon}", "stop.grace", 3, "not a duration", ""},
		{"stop: SIGTERM", "stop", 3, "must be a mapping", ""},
		{"health: {http: 80}", "health.http", 3, "must be a mapping, got 80", ""},
		{"health: {exec: {command: check}}", "health.exec.command", 3, "must be a list of strings", ""},
		{"init: maybe", "init", 3, `must be true or false, got "maybe"`, ""},
		{"labels: {[a]: b}", "labels", 3, "a key must be a string", ""},
		{"labels: {~: b}", "labels", 3, "a key must not be empty", ""},
		{"version: one", "version", 3, "must be a whole number", ""},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, err := Parse([]byte(base+c.in+"\n"), "t.yaml")
			fe := assertProblem(t, err, c.path, c.line, c.msg)
			if !strings.Contains(fe.Hint, c.hint) {
				t.Errorf("hint %q does not contain %q", fe.Hint, c.hint)
			}
		})
	}
}

func TestParseUnknownFields(t *testing.T) {
	cases := []struct {
		in, path string
		line     int
		hint     string
	}{
		{"name: web\nimage: busybox\nreplica: 2\n", "replica", 3, "did you mean replicas?"},
		{"name: web\nimage: busybox\nRestart: never\n", "Restart", 3, "did you mean restart?"},
		{"name: web\nimage: busybox\nports:\n  - {name: a, port: 1, hostPort: 80}\n", "ports[0].hostPort", 4, "did you mean host_port?"},
		{"name: web\nimage: busybox\nresources:\n  memroy: 1Gi\n", "resources.memroy", 4, "did you mean memory?"},
		{"name: web\nimage: busybox\nhealth:\n  http: {port: 80, pth: /}\n", "health.http.pth", 4, "did you mean path?"},
		{"name: web\nimage: busybox\nhealth:\n  retries: 3\n", "health.retries", 4, "known fields here: http, tcp, exec"},
		{"name: web\nimage: busybox\nvolumes: [a]\n", "volumes", 3, "known fields here: version, name"},
		{"name: web\nimage: busybox\ndisconnect: {replace_afer: 1m}\n", "disconnect.replace_afer", 3, "did you mean replace_after?"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			_, err := Parse([]byte(c.in), "t.yaml")
			fe := assertProblem(t, err, c.path, c.line, "unknown field")
			if !strings.Contains(fe.Hint, c.hint) {
				t.Errorf("hint %q does not contain %q", fe.Hint, c.hint)
			}
		})
	}
}

func TestParseReportsAllProblems(t *testing.T) {
	in := `name: Web
image: busybox
replicas: -1
replicaz: 2
workdir: www
ports:
  - {name: http, port: 70000}
resources: {cpu: lots, memory: 1Mi}
restart: sometimes
stop: {signal: SIGNOPE}
health:
  http: {port: htp}
`
	_, err := Parse([]byte(in), "web.yaml")
	want := []struct {
		path string
		line int
	}{
		{"name", 1}, {"replicas", 3}, {"replicaz", 4}, {"workdir", 5}, {"ports[0].port", 7},
		{"resources.cpu", 8}, {"resources.memory", 8}, {"restart", 9}, {"stop.signal", 10}, {"health.http.port", 12},
	}
	ve, ok := AsValidationError(err)
	if !ok {
		t.Fatalf("error %T %v is not a ValidationError", err, err)
	}
	if len(ve.Errors) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ve.Errors), len(want), err)
	}
	for i, w := range want {
		if fe := ve.Errors[i]; fe.Path != w.path || fe.Line != w.line {
			t.Errorf("problem %d = %s at line %d, want %s at line %d", i, fe.Path, fe.Line, w.path, w.line)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", len(lines), err)
	}
	if want := "web.yaml:3:11: replicas: must be between 0 and 1000, got -1 (hint: "; !strings.HasPrefix(lines[1], want) {
		t.Errorf("line 2 = %q, want prefix %q", lines[1], want)
	}
	if !errors.Is(err, errdefs.ErrInvalid) || !errdefs.IsInvalid(err) {
		t.Error("ValidationError is not in the ErrInvalid category")
	}
}

func TestParseTooManyProblems(t *testing.T) {
	var env, top strings.Builder
	env.WriteString("name: web\nimage: busybox\nenv:\n")
	top.WriteString("name: web\nimage: busybox\n")
	for i := 0; i < 300; i++ {
		env.WriteString("  \"A=" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + "\": v\n")
		fmt.Fprintf(&top, "unknown%d: 1\n", i) // the decoder stops early here
	}
	for what, in := range map[string]string{"bad env keys": env.String(), "unknown fields": top.String()} {
		_, err := Parse([]byte(in), "t.yaml")
		ve, ok := AsValidationError(err)
		if !ok {
			t.Fatalf("%s: error %v", what, err)
		}
		if len(ve.Errors) != maxProblems+1 || !strings.Contains(ve.Errors[maxProblems].Message, "too many problems") {
			t.Errorf("%s: got %d problems, last %v; want %d and a truncation note", what, len(ve.Errors), ve.Errors[len(ve.Errors)-1], maxProblems+1)
		}
	}
}

func TestParseAliases(t *testing.T) {
	in := "name: web\nimage: busybox\nenv: &common {A: \"1\"}\nlabels: *common\ncommand: [&bin /bin/sh, *bin]\n"
	s, err := Parse([]byte(in), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels["A"] != "1" || !reflect.DeepEqual(s.Command, []string{"/bin/sh", "/bin/sh"}) {
		t.Fatalf("aliases not followed: labels %v command %v", s.Labels, s.Command)
	}
}

func TestValidationErrorRendering(t *testing.T) {
	cases := []struct {
		err  *ValidationError
		want string
	}{
		{&ValidationError{File: "w.yaml", Errors: []FieldError{{Path: "replicas", Line: 7, Column: 11, Message: "bad", Hint: "fix"}}}, "w.yaml:7:11: replicas: bad (hint: fix)"},
		{&ValidationError{File: "w.yaml", Errors: []FieldError{{Path: "name", Message: "required"}}}, "w.yaml: name: required"},
		{&ValidationError{Errors: []FieldError{{Path: "name", Message: "required"}}}, "name: required"},
		{&ValidationError{Errors: []FieldError{{Path: "name", Line: 3, Message: "required"}}}, "3: name: required"},
		{&ValidationError{File: "w.yaml", Errors: []FieldError{{Line: 2, Message: "invalid YAML: x"}}}, "w.yaml:2: invalid YAML: x"},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

// assertProblem checks that err is a ValidationError with a problem at path
// on line whose message contains msg, and returns that problem.
func assertProblem(t *testing.T, err error, path string, line int, msg string) FieldError {
	t.Helper()
	ve, ok := AsValidationError(err)
	if !ok {
		t.Fatalf("error %T %v is not a ValidationError", err, err)
	}
	for _, fe := range ve.Errors {
		if fe.Path == path {
			if fe.Line != line {
				t.Errorf("%s: line %d, want %d", path, fe.Line, line)
			}
			if fe.Line > 0 && fe.Column == 0 {
				t.Errorf("%s: no column", path)
			}
			if !strings.Contains(fe.Message, msg) {
				t.Errorf("%s: message %q does not contain %q", path, fe.Message, msg)
			}
			return fe
		}
	}
	t.Fatalf("no problem at %s in:\n%v", path, err)
	return FieldError{}
}

func TestParseDisconnect(t *testing.T) {
	s, err := Parse([]byte("name: web\nimage: busybox\ndisconnect:\n  replace_after: 90s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Disconnect.ReplaceAfter != Duration(90*time.Second) {
		t.Errorf("replace_after = %s, want 1m30s", s.Disconnect.ReplaceAfter)
	}
	s, err = Parse([]byte("name: web\nimage: busybox\n"), "t.yaml")
	if err != nil || s.Disconnect.ReplaceAfter != 0 {
		t.Errorf("absent disconnect: %v, %v; want 0s (replace at once)", s, err)
	}
}
