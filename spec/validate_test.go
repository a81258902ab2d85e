package spec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// TestValidationRules checks every rule through Parse: the problem's field
// path, line, message and hint.
func TestValidationRules(t *testing.T) {
	const base = "name: web\nimage: busybox\n" // lines 1-2; most cases start on line 3
	long := strings.Repeat("a", 64)
	cases := []struct {
		name, in  string
		full      bool // in is the whole spec, not appended to base
		path      string
		line      int
		msg, hint string
	}{
		{"version 2", "version: 2", false, "version", 3, "unsupported version 2", "version: 1"},
		{"name missing", "image: busybox\n", true, "name", 1, "required", "short name"},
		{"name uppercase", "name: Web\nimage: busybox\n", true, "name", 1, "lowercase", `try "web"`},
		{"name underscore", "name: my_web\nimage: busybox\n", true, "name", 1, "lowercase letters, digits and '-'", `try "my-web"`},
		{"name digit first", "name: 1web\nimage: busybox\n", true, "name", 1, "must start with a lowercase letter", ""},
		{"name dash last", "name: web-\nimage: busybox\n", true, "name", 1, "must end with a letter or digit", `try "web"`},
		{"name too long", "name: " + long + "\nimage: busybox\n", true, "name", 1, "at most 63 characters", ""},
		{"image missing", "name: web\n", true, "image", 1, "required", "busybox:1.36"},
		{"image uppercase", "name: web\nimage: Busybox\n", true, "image", 2, "not a valid image reference", `lowercase: "busybox"`},
		{"image empty tag", "name: web\nimage: \"busybox:\"\n", true, "image", 2, "not a valid image reference", ""},
		{"image bad digest", "name: web\nimage: busybox@sha256:abc\n", true, "image", 2, "not a valid image reference", ""},
		{"replicas negative", "replicas: -1", false, "replicas", 3, "must be between 0 and 1000, got -1", "0 keeps the service"},
		{"replicas too many", "replicas: 1001", false, "replicas", 3, "must be between 0 and 1000", ""},
		{"command NUL", `command: ["/bin/a\0b"]`, false, "command[0]", 3, "NUL", ""},
		{"args NUL", "args:\n  - ok\n  - \"a\\0\"", false, "args[1]", 5, "NUL", ""},
		{"env empty key", `env: {"": x}`, false, `env[""]`, 3, "must not be empty", ""},
		{"env key with =", "env:\n  A=B: x", false, `env["A=B"]`, 4, "must not contain '='", "NAME: value"},
		{"env key NUL", `env: {"A\0": x}`, false, `env["A\x00"]`, 3, "NUL", ""},
		{"env key long", "env: {" + strings.Repeat("A", 129) + ": x}", false, "env." + strings.Repeat("A", 129), 3, "at most 128 bytes", ""},
		{"env value NUL", `env: {A: "x\0"}`, false, "env.A", 3, "value must not contain a NUL", ""},
		{"workdir relative", "workdir: www", false, "workdir", 3, "absolute path", `"/www"`},
		{"workdir NUL", `workdir: "/a\0"`, false, "workdir", 3, "NUL", ""},
		{"user three parts", `user: "a:b:c"`, false, "user", 3, "user or user:group", "uid:gid"},
		{"user bad name", "user: -x", false, "user", 3, "not a valid user", ""},
		{"user uid too big", "user: 4294967295", false, "user", 3, "out of range", ""},
		{"port name missing", "ports:\n  - {port: 80}", false, "ports[0].name", 4, "required", ""},
		{"port name invalid", "ports:\n  - {name: HTTP, port: 80}", false, "ports[0].name", 4, "lowercase", `try "http"`},
		{"port name duplicate", "ports:\n  - {name: http, port: 80}\n  - {name: http, port: 81}", false, "ports[1].name", 5, `duplicate port name "http"`, ""},
		{"port zero", "ports:\n  - {name: http, port: 0}", false, "ports[0].port", 4, "between 1 and 65535, got 0", ""},
		{"port missing", "ports:\n  - name: http", false, "ports[0].port", 4, "between 1 and 65535, got 0", ""},
		{"port too big", "ports:\n  - name: http\n    port: 65536", false, "ports[0].port", 5, "between 1 and 65535", ""},
		{"port duplicate", "ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80}", false, "ports[1].port", 5, "80/tcp is already declared by ports[0]", ""},
		{"host port negative", "ports:\n  - {name: a, port: 80, host_port: -1}", false, "ports[0].host_port", 4, "0 or between 1 and 65535", ""},
		{"host port too big", "ports:\n  - {name: a, port: 80, host_port: 70000}", false, "ports[0].host_port", 4, "0 or between 1 and 65535", ""},
		{"host port duplicate", "ports:\n  - {name: a, port: 80, host_port: 8080}\n  - {name: b, port: 81, host_port: 8080}", false, "ports[1].host_port", 5, "8080/tcp is already used by ports[0]", ""},
		{"protocol unknown", "ports:\n  - {name: a, port: 80, protocol: sctp}", false, "ports[0].protocol", 4, `unknown protocol "sctp"`, "tcp or udp"},
		{"protocol uppercase", "ports:\n  - {name: a, port: 80, protocol: UDP}", false, "ports[0].protocol", 4, "unknown protocol", `"udp" in lowercase`},
		{"protocol empty", "ports:\n  - {name: a, port: 80, protocol: \"\"}", false, "ports[0].protocol", 4, "must not be empty", ""},
		{"cpu negative", "resources: {cpu: -1}", false, "resources.cpu", 3, "must not be negative", ""},
		{"cpu too much", "resources:\n  cpu: 1025", false, "resources.cpu", 4, "at most 1024 cores, got 1025", ""},
		{"memory too small", "resources: {memory: 1Mi}", false, "resources.memory", 3, "at least 4Mi, got 1Mi", "runc"},
		{"memory negative", "resources: {memory: -1}", false, "resources.memory", 3, "must not be negative", ""},
		{"pids negative", "resources: {pids: -1}", false, "resources.pids", 3, "must not be negative", "no limit"},
		{"pids too few for init", "resources: {pids: 1}", false, "resources.pids", 3, "at least 16 when init is on, got 1", "init: false"},
		{"restart typo", "restart: on_failure", false, "restart", 3, `unknown restart policy "on_failure"`, "did you mean on-failure?"},
		{"restart unknown", "restart: sometimes", false, "restart", 3, "unknown restart policy", "always, on-failure or never"},
		{"restart empty", `restart: ""`, false, "restart", 3, "must not be empty", ""},
		{"signal unknown", "stop: {signal: SIGTERN}", false, "stop.signal", 3, "unknown signal", "did you mean SIGTERM?"},
		{"signal zero", "stop: {signal: 0}", false, "stop.signal", 3, "between 1 and 64", ""},
		{"signal 65", "stop:\n  signal: 65", false, "stop.signal", 4, "between 1 and 64", ""},
		{"signal empty", `stop: {signal: ""}`, false, "stop.signal", 3, "must not be empty", ""},
		{"grace negative", "stop: {grace: -1s}", false, "stop.grace", 3, "between 0s and 1h, got -1s", ""},
		{"grace too long", "stop: {grace: 2h}", false, "stop.grace", 3, "between 0s and 1h", ""},
		{"health without check", "health:\n  interval: 5s", false, "health", 4, "exactly one of http, tcp or exec", "http: {port: http"},
		{"health two checks", "health:\n  http: {port: 80}\n  tcp: {port: 80}", false, "health", 4, "sets http and tcp", ""},
		{"http port missing", "health:\n  http: {path: /}", false, "health.http.port", 4, "required", ""},
		{"http port unknown", "ports: [{name: http, port: 80}]\nhealth:\n  http: {port: htp}", false, "health.http.port", 5, `no port named "htp"`, "did you mean http?"},
		{"http port undeclared", "health:\n  http: {port: web}", false, "health.http.port", 4, `no port named "web"`, "declare it under ports"},
		{"http port zero", "health:\n  http: {port: 0}", false, "health.http.port", 4, `invalid port "0"`, ""},
		{"tcp port too big", "health:\n  tcp: {port: 70000}", false, "health.tcp.port", 4, `invalid port "70000"`, ""},
		{"tcp port missing", "health:\n  tcp: {}", false, "health.tcp.port", 4, "required", ""},
		{"http path relative", "health:\n  http: {port: 80, path: healthz}", false, "health.http.path", 4, "must start with '/'", `"/healthz"`},
		{"http path space", "health:\n  http: {port: 80, path: /a b}", false, "health.http.path", 4, "spaces", "%20"},
		{"http path empty", "health:\n  http: {port: 80, path: \"\"}", false, "health.http.path", 4, "must not be empty", ""},
		{"exec empty", "health:\n  exec: {command: []}", false, "health.exec.command", 4, "must not be empty", ""},
		{"exec missing", "health:\n  exec: {}", false, "health.exec.command", 4, "must not be empty", ""},
		{"exec empty program", "health:\n  exec: {command: [\"\", x]}", false, "health.exec.command[0]", 4, "must not be empty", ""},
		{"exec NUL", "health:\n  exec:\n    command: [a, \"\\0\"]", false, "health.exec.command[1]", 5, "NUL", ""},
		{"interval short", "health:\n  tcp: {port: 80}\n  interval: 50ms", false, "health.interval", 5, "at least 100ms, got 50ms", ""},
		{"interval zero", "health:\n  tcp: {port: 80}\n  interval: 0s", false, "health.interval", 5, "at least 100ms", ""},
		{"timeout zero", "health:\n  tcp: {port: 80}\n  timeout: 0s", false, "health.timeout", 5, "greater than 0", ""},
		{"timeout over interval", "health:\n  tcp: {port: 80}\n  interval: 2s\n  timeout: 3s", false, "health.timeout", 6, "must not exceed interval (2s), got 3s", ""},
		{"failures zero", "health:\n  tcp: {port: 80}\n  failures: 0", false, "health.failures", 5, "between 1 and 100, got 0", ""},
		{"failures many", "health:\n  tcp: {port: 80}\n  failures: 101", false, "health.failures", 5, "between 1 and 100", ""},
		{"health grace negative", "health:\n  tcp: {port: 80}\n  grace: -1s", false, "health.grace", 5, "must not be negative", ""},
		{"label key bad start", "labels:\n  -x: y", false, "labels.-x", 4, "invalid label key", "prefix/"},
		{"label key two slashes", "labels: {a/b/c: y}", false, "labels.a/b/c", 3, "at most one '/'", ""},
		{"label key empty prefix", "labels: {/b: y}", false, "labels./b", 3, "empty prefix", ""},
		{"label key uppercase prefix", "labels: {Example.com/b: y}", false, "labels.Example.com/b", 3, "DNS subdomain", ""},
		{"label key long name", "labels: {" + long + ": y}", false, "labels." + long, 3, "at most 63", ""},
		{"label key space", `labels: {"a b": y}`, false, `labels["a b"]`, 3, "invalid label key", ""},
		{"label value long", "labels: {a: " + long + "}", false, "labels.a", 3, "value must be at most 63 characters", ""},
		{"cap unknown", "cap_add: [NET_ADMN]", false, "cap_add[0]", 3, `unknown capability "NET_ADMN"`, "did you mean CAP_NET_ADMIN?"},
		{"cap all", "cap_add:\n  - kill\n  - ALL", false, "cap_add[1]", 5, "unknown capability", "ALL is not supported"},
		{"cap duplicate", "cap_add: [net_admin, CAP_NET_ADMIN]", false, "cap_add[1]", 3, "CAP_NET_ADMIN is already listed at cap_add[0]", ""},
		{"replace_after negative", "disconnect: {replace_after: -1s}", false, "disconnect.replace_after", 3, "between 0s and 24h, got -1s", "0s replaces at once"},
		{"replace_after too long", "disconnect:\n  replace_after: 25h", false, "disconnect.replace_after", 4, "between 0s and 24h, got 25h0m0s", "before replacing it elsewhere"},
		{"replace_after not a duration", "disconnect: {replace_after: soon}", false, "disconnect.replace_after", 3, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base + c.in + "\n"
			if c.full {
				in = c.in
			}
			s, err := Parse([]byte(in), "t.yaml")
			if s != nil {
				t.Fatalf("Parse accepted:\n%s", in)
			}
			fe := assertProblem(t, err, c.path, c.line, c.msg)
			if !strings.Contains(fe.Hint, c.hint) {
				t.Errorf("hint %q does not contain %q", fe.Hint, c.hint)
			}
			if ve, _ := AsValidationError(err); len(ve.Errors) != 1 {
				t.Errorf("want exactly one problem, got:\n%v", err)
			}
		})
	}
}

// TestValidationAccepts checks the valid forms of the rules above.
func TestValidationAccepts(t *testing.T) {
	const base = "name: web\nimage: busybox\n"
	for _, in := range []string{
		"version: 1",
		"replicas: 0",
		"replicas: 1000",
		"user: root", "user: 1000", `user: "1000:1000"`, "user: www-data:www-data", "user: nobody:100",
		"ports:\n  - {name: dns, port: 53, host_port: 5353}\n  - {name: dns-udp, port: 53, host_port: 5353, protocol: udp}",
		"ports:\n  - {name: a, port: 80}\n  - {name: b, port: 81}",
		"resources: {cpu: 0, memory: 0, pids: 0}",
		"resources: {pids: 16}", "init: false\nresources: {pids: 1}",
		"resources: {cpu: 1024, memory: 4Mi}",
		"resources: {cpu: \"0.25\", memory: \"4194304\"}",
		"restart: on-failure", "restart: never",
		"stop: {signal: TERM}", "stop: {signal: sigint}", "stop: {signal: 15}", "stop: {signal: 64}", "stop: {grace: 1h}", "stop: {grace: 0s}",
		"health: {tcp: {port: 8080}}",
		"ports: [{name: http, port: 80}]\nhealth: {http: {port: http, path: \"/healthz?full=1\"}, interval: 100ms, timeout: 100ms, failures: 100, grace: 1m}",
		"health: {exec: {command: [/bin/true]}}",
		"labels: {app: web, example.com/tier: front, a.b_c-d: \"\", x: " + strings.Repeat("v", 63) + "}",
		"cap_add: [NET_BIND_SERVICE, cap_net_raw, CAP_CHECKPOINT_RESTORE]",
		"env: {PATH: /bin, EMPTY: , NUM: 1}",
		"workdir: /srv/app",
		"init: false",
		"disconnect: {replace_after: 0s}", "disconnect: {replace_after: 30s}", "disconnect: {replace_after: 24h}", "disconnect: {}",
	} {
		if _, err := Parse([]byte(base+in+"\n"), "t.yaml"); err != nil {
			t.Errorf("Parse rejected %q:\n%v", in, err)
		}
	}
	for _, image := range []string{"busybox", "library/busybox:1.36", "127.0.0.1:5000/a/b@sha256:" + strings.Repeat("a", 64), "ghcr.io/org/app:v1.2.3"} {
		if _, err := Parse([]byte("name: web\nimage: "+image+"\n"), "t.yaml"); err != nil {
			t.Errorf("Parse rejected image %q:\n%v", image, err)
		}
	}
}

func validService() *Service {
	return &Service{
		Name:     "web",
		Image:    "busybox:1.36",
		Replicas: 2,
		Ports:    []Port{{Name: "http", Port: 8080}},
		Health:   &Health{HTTP: &HTTPCheck{Port: "http"}},
	}
}

func TestValidateCodeBuilt(t *testing.T) {
	// Zero values of defaulted fields count as their defaults.
	if err := validService().Validate(); err != nil {
		t.Fatalf("Validate() of a minimal code-built spec: %v", err)
	}
	s := validService()
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate() after SetDefaults: %v", err)
	}
	if s.Restart != RestartAlways || s.Stop.Signal != "SIGTERM" || s.Stop.Grace != Duration(10*time.Second) ||
		s.Ports[0].Protocol != "tcp" || s.Health.Interval != Duration(10*time.Second) ||
		s.Health.Timeout != Duration(time.Second) || s.Health.Failures != 3 || s.Health.HTTP.Path != "/" {
		t.Errorf("SetDefaults left %+v %+v %+v", s, s.Health, s.Ports)
	}

	cases := []struct {
		name   string
		mutate func(*Service)
		paths  []string
	}{
		{"bad name and image", func(s *Service) { s.Name, s.Image = "Web", "" }, []string{"name", "image"}},
		{"replicas", func(s *Service) { s.Replicas = -3 }, []string{"replicas"}},
		{"memory", func(s *Service) { s.Resources.Memory = 1024 }, []string{"resources.memory"}},
		{"cpu", func(s *Service) { s.Resources.CPU = -1 }, []string{"resources.cpu"}},
		{"ports", func(s *Service) { s.Ports = append(s.Ports, Port{Name: "http", Port: 8080, Protocol: "tcp"}) }, []string{"ports[1].name", "ports[1].port"}},
		{"health", func(s *Service) { s.Health.TCP = &TCPCheck{Port: "x"} }, []string{"health", "health.tcp.port"}},
		{"timeout over default interval", func(s *Service) { s.Health.Timeout = Duration(11 * time.Second) }, []string{"health.timeout"}},
		{"caps", func(s *Service) { s.CapAdd = []string{"NOPE"} }, []string{"cap_add[0]"}},
		{"signal", func(s *Service) { s.Stop.Signal = "NOPE" }, []string{"stop.signal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validService()
			c.mutate(s)
			err := s.Validate()
			ve, ok := AsValidationError(err)
			if !ok {
				t.Fatalf("Validate() = %v, want a ValidationError", err)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Error("not in the ErrInvalid category")
			}
			var paths []string
			for _, fe := range ve.Errors {
				paths = append(paths, fe.Path)
				if fe.Line != 0 || fe.Column != 0 {
					t.Errorf("%s has a position %d:%d in a code-built spec", fe.Path, fe.Line, fe.Column)
				}
			}
			if strings.Join(paths, ",") != strings.Join(c.paths, ",") {
				t.Errorf("problems at %v, want %v:\n%v", paths, c.paths, err)
			}
		})
	}
	var nilSpec *Service
	if err := nilSpec.Validate(); !errdefs.IsInvalid(err) {
		t.Errorf("Validate() of nil = %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	good := map[string]int{"SIGTERM": 15, "TERM": 15, "sigterm": 15, "term": 15, "SIGKILL": 9, "HUP": 1, "15": 15, "1": 1, "64": 64, "SIGUSR1": 10, " SIGINT ": 2}
	for in, want := range good {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "SIG", "SIGFOO", "15x", "99999999999999999999"} {
		if _, err := ParseSignal(in); !errdefs.IsInvalid(err) {
			t.Errorf("ParseSignal(%q) error = %v, want ErrInvalid", in, err)
		}
	}
}

func TestNormalizeCapability(t *testing.T) {
	for in, want := range map[string]string{"NET_ADMIN": "CAP_NET_ADMIN", "cap_net_admin": "CAP_NET_ADMIN", "CAP_BPF": "CAP_BPF", "sys_ptrace": "CAP_SYS_PTRACE"} {
		if got, ok := NormalizeCapability(in); !ok || got != want {
			t.Errorf("NormalizeCapability(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "CAP_", "ALL", "NET-ADMIN", "CAP_FOO"} {
		if got, ok := NormalizeCapability(in); ok {
			t.Errorf("NormalizeCapability(%q) = %q, want not ok", in, got)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"replicas", "restart", "resources", "host_port", "cap_add"}
	for in, want := range map[string]string{"replica": "replicas", "hostPort": "host_port", "CapAdd": "cap_add", "resorces": "resources", "xyz": "", "": ""} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
