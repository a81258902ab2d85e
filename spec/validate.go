package spec

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
)

// Limits enforced by validation.
const (
	MaxReplicas = 1000
	MaxCPU      = MilliCPU(1024 * 1000) // 1024 cores
	MinMemory   = Bytes(4 << 20)        // 4Mi
	// MinPidsWithInit: gantry's init is PID 1 and runs several threads
	// (each counts against the pids limit); below this it cannot start.
	MinPidsWithInit   = 16
	MaxStopGrace      = Duration(time.Hour)
	MinHealthInterval = Duration(100 * time.Millisecond)
	MaxHealthFailures = 100
	// MaxReplaceAfter bounds disconnect.replace_after: a node away for a
	// day is not coming back soon, and its instances are needed elsewhere.
	MaxReplaceAfter = Duration(24 * time.Hour)
)

// Defaults applied by Parse (for absent fields) and SetDefaults (for zero ones).
const (
	DefaultReplicas       = 1
	DefaultRestart        = RestartAlways
	DefaultStopSignal     = "SIGTERM"
	DefaultStopGrace      = Duration(10 * time.Second)
	DefaultProtocol       = "tcp"
	DefaultHealthInterval = Duration(10 * time.Second)
	DefaultHealthTimeout  = Duration(time.Second)
	DefaultHealthFailures = 3
	DefaultHealthPath     = "/"
)

// InitEnabled reports whether instances run a minimal init as PID 1 (the
// default: Init is nil or true).
func (s Service) InitEnabled() bool { return s.Init == nil || *s.Init }

// SetDefaults fills zero-valued fields that have defaults: restart, stop
// signal and grace, port protocols, health interval, timeout, failures and
// HTTP path. It also normalises capability names to "CAP_X". Replicas is left
// alone (0 is a valid count). A zero stop grace becomes 10s, as a zero value
// cannot be told apart from an absent one: a code-built spec that wants no
// grace sets it to 0 after calling SetDefaults. Parse applies the same
// defaults by field presence instead.
func (s *Service) SetDefaults() {
	if s.Restart == "" {
		s.Restart = DefaultRestart
	}
	if s.Stop.Signal == "" {
		s.Stop.Signal = DefaultStopSignal
	}
	if s.Stop.Grace == 0 {
		s.Stop.Grace = DefaultStopGrace
	}
	for i := range s.Ports {
		if s.Ports[i].Protocol == "" {
			s.Ports[i].Protocol = DefaultProtocol
		}
	}
	if h := s.Health; h != nil {
		if h.Interval == 0 {
			h.Interval = DefaultHealthInterval
		}
		if h.Timeout == 0 {
			h.Timeout = defaultTimeout(h.Interval)
		}
		if h.Failures == 0 {
			h.Failures = DefaultHealthFailures
		}
		if h.HTTP != nil && h.HTTP.Path == "" {
			h.HTTP.Path = DefaultHealthPath
		}
	}
	for i, c := range s.CapAdd {
		if n, ok := NormalizeCapability(c); ok {
			s.CapAdd[i] = n
		}
	}
}

// defaultTimeout is 1s, or the interval when that is shorter, so that a
// spec setting only "interval: 500ms" is valid.
func defaultTimeout(interval Duration) Duration {
	if interval > 0 && interval < DefaultHealthTimeout {
		return interval
	}
	return DefaultHealthTimeout
}

// Validate checks a spec built in code and reports every problem at once as a
// *ValidationError (in the errdefs.ErrInvalid category), without positions.
// Zero values of fields that have defaults (restart, stop signal, protocol,
// health interval, timeout, failures, HTTP path) count as those defaults.
func (s *Service) Validate() error {
	if s == nil {
		return &ValidationError{Errors: []FieldError{{Message: "no service spec"}}}
	}
	p := &problems{}
	validate(s, false, p)
	return p.err("")
}

// err returns the collected problems as a *ValidationError, or nil.
func (p *problems) err(file string) error {
	if len(p.list) == 0 {
		return nil
	}
	list := p.list
	if p.truncated {
		list = append(list, truncatedProblem)
	}
	return &ValidationError{File: file, Errors: list}
}

// validator checks one Service. In strict mode (after Parse applied defaults)
// zero values of defaulted fields are errors: the user wrote them.
type validator struct {
	p      *problems
	strict bool
}

func (v *validator) add(path, hint, format string, args ...any) {
	v.p.add(FieldError{Path: path, Message: fmt.Sprintf(format, args...), Hint: hint})
}

func validate(s *Service, strict bool, p *problems) {
	v := &validator{p: p, strict: strict}
	if s.Version != 0 && s.Version != 1 {
		v.add("version", "remove it or write version: 1", "unsupported version %d; this Gantry reads version 1", s.Version)
	}
	v.dnsLabel("name", s.Name, "give the service a short name such as web")
	v.image(s.Image)
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		v.add("replicas", "0 keeps the service but runs no instances", "must be between 0 and %d, got %d", MaxReplicas, s.Replicas)
	}
	v.noNUL("command", s.Command)
	v.noNUL("args", s.Args)
	v.env(s.Env)
	if s.Workdir != "" {
		switch {
		case strings.ContainsRune(s.Workdir, 0):
			v.add("workdir", "", "must not contain a NUL byte")
		case !strings.HasPrefix(s.Workdir, "/"):
			v.add("workdir", fmt.Sprintf("write %q", "/"+s.Workdir), "must be an absolute path, got %q", s.Workdir)
		}
	}
	v.user(s.User)
	v.ports(s.Ports)
	v.resources(s.Resources, s.InitEnabled())
	switch s.Restart {
	case RestartAlways, RestartOnFailure, RestartNever:
	case "":
		if v.strict {
			v.add("restart", "use always, on-failure or never", "must not be empty")
		}
	default:
		hint := "use always, on-failure or never"
		if m := suggest(string(s.Restart), []string{"always", "on-failure", "never"}); m != "" {
			hint = "did you mean " + m + "?"
		}
		v.add("restart", hint, "unknown restart policy %q", s.Restart)
	}
	v.stop(s.Stop)
	if s.Health != nil {
		v.health(s.Health, s.Ports)
	}
	v.labels(s.Labels)
	v.capabilities(s.CapAdd)
	v.secrets(s.Secrets, s.Env)
	if r := s.Disconnect.ReplaceAfter; r < 0 || r > MaxReplaceAfter {
		v.add("disconnect.replace_after",
			"how long to wait after an instance's node goes down before replacing it elsewhere; 0s replaces at once",
			"must be between 0s and 24h, got %s", r)
	}
}

func (v *validator) dnsLabel(path, s, missingHint string) {
	if s == "" {
		v.add(path, missingHint, "required")
		return
	}
	if msg := dnsLabelProblem(s); msg != "" {
		hint := "use lowercase letters, digits and '-', starting with a letter, at most 63 characters"
		if fix := dnsLabelFix(s); fix != "" && fix != s {
			hint = fmt.Sprintf("try %q", fix)
		}
		v.add(path, hint, "%s, got %q", msg, s)
	}
}

// dnsLabelProblem says why s is not a DNS label (RFC 1123, starting with a
// letter), or returns "".
func dnsLabelProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > 63 {
		return fmt.Sprintf("must be at most 63 characters (is %d)", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "must contain only lowercase letters, digits and '-'"
		}
	}
	if c := s[0]; c < 'a' || c > 'z' {
		return "must start with a lowercase letter"
	}
	if s[len(s)-1] == '-' {
		return "must end with a letter or digit"
	}
	return ""
}

// dnsLabelFix turns s into a DNS label if it can: "My_Web" -> "my-web".
func dnsLabelFix(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	out := strings.TrimLeft(b.String(), "0123456789-")
	if len(out) > 63 {
		out = out[:63]
	}
	out = strings.TrimRight(out, "-")
	for strings.Contains(out, "--") {
		out = strings.ReplaceAll(out, "--", "-")
	}
	if dnsLabelProblem(out) != "" {
		return ""
	}
	return out
}

func (v *validator) image(ref string) {
	const hint = "write [registry/]repository[:tag][@digest] in lowercase, e.g. busybox:1.36 or 127.0.0.1:5000/team/app:1"
	if ref == "" {
		v.add("image", hint, "required")
		return
	}
	if _, err := name.ParseReference(ref); err != nil {
		// ParseReference tries a tag, then a digest, and says only "could not
		// parse reference"; the error of the form the user meant says why.
		msg := err.Error()
		if strings.HasPrefix(msg, "could not parse reference") {
			var perr error
			if strings.Contains(ref, "@") {
				_, perr = name.NewDigest(ref)
			} else {
				_, perr = name.NewTag(ref)
			}
			if perr != nil {
				msg = perr.Error()
			}
		}
		h := hint
		if low := strings.ToLower(ref); low != ref {
			if _, err := name.ParseReference(low); err == nil {
				h = fmt.Sprintf("repository names are lowercase: %q", low)
			}
		}
		v.add("image", h, "not a valid image reference: %s", msg)
	}
}

func (v *validator) noNUL(path string, list []string) {
	for i, s := range list {
		if strings.ContainsRune(s, 0) {
			v.add(fmt.Sprintf("%s[%d]", path, i), "", "must not contain a NUL byte")
		}
	}
}

func (v *validator) env(env map[string]string) {
	for _, k := range sortedKeys(env) {
		p := keyPath("env", k)
		switch {
		case k == "":
			v.add(p, "", "variable name must not be empty")
		case strings.ContainsRune(k, '='):
			v.add(p, "write NAME: value, not NAME=value", "variable name must not contain '='")
		case strings.ContainsRune(k, 0):
			v.add(p, "", "variable name must not contain a NUL byte")
		case len(k) > maxEnvName:
			// Also keeps the JSON form of the key (up to 6 bytes per byte
			// escaped) under YAML's 1024-character limit for keys, so a
			// parsed spec can always be parsed again from its JSON.
			v.add(p, "names are short identifiers like GREETING", "variable name must be at most %d bytes (is %d)", maxEnvName, len(k))
		}
		if strings.ContainsRune(env[k], 0) {
			v.add(p, "", "value must not contain a NUL byte")
		}
	}
}

// maxEnvName is the longest environment variable name accepted.
const maxEnvName = 128

var userPart = regexp.MustCompile(`^(?:[0-9]+|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)$`)

func (v *validator) user(u string) {
	if u == "" {
		return
	}
	const hint = `use a name ("nobody"), a uid ("1000"), uid:gid ("1000:1000") or name:group ("www:www")`
	parts := strings.Split(u, ":")
	if len(parts) > 2 {
		v.add("user", hint, "must be user or user:group, got %q", u)
		return
	}
	for _, part := range parts {
		if !userPart.MatchString(part) {
			v.add("user", hint, "%q is not a valid user or group name or number", part)
			return
		}
		if part[0] >= '0' && part[0] <= '9' {
			if n, err := strconv.ParseUint(part, 10, 32); err != nil || n > 1<<32-2 {
				v.add("user", "ids go up to 4294967294", "id %s is out of range", part)
				return
			}
		}
	}
}

func (v *validator) ports(ports []Port) {
	names := map[string]int{}
	hosts := map[string]int{}
	conts := map[string]int{}
	for i, p := range ports {
		pp := fmt.Sprintf("ports[%d]", i)
		v.dnsLabel(pp+".name", p.Name, "name the port, e.g. http; health checks refer to ports by name")
		if j, dup := names[p.Name]; dup && p.Name != "" {
			v.add(pp+".name", "give each port its own name", "duplicate port name %q (also ports[%d])", p.Name, j)
		} else if p.Name != "" {
			names[p.Name] = i
		}
		if p.Port < 1 || p.Port > 65535 {
			v.add(pp+".port", "the port your program listens on inside the container", "must be between 1 and 65535, got %d", p.Port)
		}
		if p.HostPort < 0 || p.HostPort > 65535 {
			v.add(pp+".host_port", "0 (or leaving it out) picks a free port", "must be 0 or between 1 and 65535, got %d", p.HostPort)
		}
		proto := p.Protocol
		switch proto {
		case "tcp", "udp":
		case "":
			proto = DefaultProtocol
			if v.strict {
				v.add(pp+".protocol", "use tcp or udp", "must not be empty")
			}
		default:
			hint := "use tcp or udp"
			if l := strings.ToLower(proto); l == "tcp" || l == "udp" {
				hint = fmt.Sprintf("write %q in lowercase", l)
			}
			v.add(pp+".protocol", hint, "unknown protocol %q", p.Protocol)
		}
		if p.Port >= 1 && p.Port <= 65535 {
			key := fmt.Sprintf("%d/%s", p.Port, proto)
			if j, dup := conts[key]; dup {
				v.add(pp+".port", "declare each container port once", "port %s is already declared by ports[%d]", key, j)
			} else {
				conts[key] = i
			}
		}
		if p.HostPort >= 1 && p.HostPort <= 65535 {
			key := fmt.Sprintf("%d/%s", p.HostPort, proto)
			if j, dup := hosts[key]; dup {
				v.add(pp+".host_port", "pick another host port, or 0 for a free one", "host port %s is already used by ports[%d]", key, j)
			} else {
				hosts[key] = i
			}
		}
	}
}

func (v *validator) resources(r Resources, init bool) {
	if r.CPU < 0 {
		v.add("resources.cpu", "0 means no limit", "must not be negative, got %s", r.CPU)
	} else if r.CPU > MaxCPU {
		v.add("resources.cpu", `CPU is in cores ("2") or millicores ("250m")`, "must be at most %s cores, got %s", MaxCPU, r.CPU)
	}
	if r.Memory < 0 {
		v.add("resources.memory", "0 means no limit", "must not be negative, got %s", r.Memory)
	} else if r.Memory > 0 && r.Memory < MinMemory {
		v.add("resources.memory",
			"the kernel and runc need a few MiB to start a container; a smaller limit gets it OOM-killed before your command runs",
			"must be 0 (no limit) or at least %s, got %s", MinMemory, r.Memory)
	}
	if r.Pids < 0 {
		v.add("resources.pids", "0 means no limit", "must not be negative, got %d", r.Pids)
	} else if init && r.Pids > 0 && r.Pids < MinPidsWithInit {
		v.add("resources.pids",
			"gantry's init runs as PID 1 with a few threads, which count as pids, and crashes below this; set init: false to run your program alone under a tighter limit",
			"must be 0 (no limit) or at least %d when init is on, got %d", MinPidsWithInit, r.Pids)
	}
}

func (v *validator) stop(s Stop) {
	if s.Signal == "" {
		if v.strict {
			v.add("stop.signal", "use a name like SIGTERM", "must not be empty")
		}
	} else if _, err := ParseSignal(s.Signal); err != nil {
		v.addValueError("stop.signal", err)
	}
	if s.Grace < 0 || s.Grace > MaxStopGrace {
		v.add("stop.grace", "how long to wait after the stop signal before SIGKILL", "must be between 0s and 1h, got %s", s.Grace)
	}
}

// addValueError reports a *valueError's message and hint at path.
func (v *validator) addValueError(path string, err error) {
	var ve *valueError
	if errors.As(err, &ve) {
		v.add(path, ve.Hint, "%s, got %q", ve.Msg, ve.Value)
		return
	}
	v.add(path, "", "%v", err)
}

func (v *validator) health(h *Health, ports []Port) {
	var set []string
	if h.HTTP != nil {
		set = append(set, "http")
	}
	if h.TCP != nil {
		set = append(set, "tcp")
	}
	if h.Exec != nil {
		set = append(set, "exec")
	}
	switch len(set) {
	case 0:
		v.add("health", "e.g. http: {port: http, path: /}", "needs exactly one of http, tcp or exec")
	case 1:
	default:
		v.add("health", "keep one of them", "sets %s; a health check has exactly one of http, tcp or exec", strings.Join(set, " and "))
	}
	if h.HTTP != nil {
		v.checkPort("health.http.port", h.HTTP.Port, ports)
		path := h.HTTP.Path
		switch {
		case path == "":
			if v.strict {
				v.add("health.http.path", `use "/" or leave it out`, "must not be empty")
			}
		case !strings.HasPrefix(path, "/"):
			v.add("health.http.path", fmt.Sprintf("write %q", "/"+path), "must start with '/', got %q", path)
		case strings.IndexFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
			v.add("health.http.path", "percent-encode them, e.g. %20 for a space", "must not contain spaces or control characters")
		}
	}
	if h.TCP != nil {
		v.checkPort("health.tcp.port", h.TCP.Port, ports)
	}
	if h.Exec != nil {
		if len(h.Exec.Command) == 0 {
			v.add("health.exec.command", `e.g. command: ["/bin/check", "--quick"]`, "must not be empty")
		} else if h.Exec.Command[0] == "" {
			v.add("health.exec.command[0]", "the first element is the program to run", "must not be empty")
		}
		v.noNUL("health.exec.command", h.Exec.Command)
	}
	interval := h.Interval
	if interval == 0 && !v.strict {
		interval = DefaultHealthInterval
	}
	if interval < MinHealthInterval {
		v.add("health.interval", "checking more often than every 100ms only adds load", "must be at least 100ms, got %s", h.Interval)
	}
	timeout := h.Timeout
	if timeout == 0 && !v.strict {
		timeout = defaultTimeout(interval)
	}
	switch {
	case timeout <= 0:
		v.add("health.timeout", `e.g. timeout: 1s`, "must be greater than 0, got %s", h.Timeout)
	case timeout > interval && interval >= MinHealthInterval:
		v.add("health.timeout", "a check must finish before the next one starts; raise interval or lower timeout",
			"must not exceed interval (%s), got %s", interval, timeout)
	}
	failures := h.Failures
	if failures == 0 && !v.strict {
		failures = DefaultHealthFailures
	}
	if failures < 1 || failures > MaxHealthFailures {
		v.add("health.failures", "how many failed checks in a row make an instance unhealthy", "must be between 1 and %d, got %d", MaxHealthFailures, h.Failures)
	}
	if h.Grace < 0 {
		v.add("health.grace", "0 counts failures from the start", "must not be negative, got %s", h.Grace)
	}
}

// checkPort checks a health-check port: a declared port name or a number.
func (v *validator) checkPort(path, port string, ports []Port) {
	var names []string
	for _, p := range ports {
		if p.Name != "" {
			names = append(names, p.Name)
		}
	}
	if port == "" {
		v.add(path, "name a port from ports (e.g. http) or give a number", "required")
		return
	}
	if port[0] >= '0' && port[0] <= '9' {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add(path, "use a port number between 1 and 65535 or a port name", "invalid port %q", port)
		}
		return
	}
	for _, n := range names {
		if n == port {
			return
		}
	}
	hint := fmt.Sprintf("declare it under ports: - {name: %s, port: 8080}", port)
	if m := suggest(port, names); m != "" {
		hint = "did you mean " + m + "?"
	} else if len(names) > 0 {
		hint = "declared ports: " + strings.Join(names, ", ")
	}
	v.add(path, hint, "no port named %q in ports", port)
}

var (
	labelName    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func (v *validator) labels(labels map[string]string) {
	const keyHint = "label keys are [prefix/]name: name up to 63 letters, digits, '-', '_', '.'; prefix a DNS subdomain, e.g. example.com/tier"
	for _, k := range sortedKeys(labels) {
		p := keyPath("labels", k)
		if msg := labelKeyProblem(k); msg != "" {
			v.add(p, keyHint, "invalid label key: %s", msg)
		}
		if n := utf8.RuneCountInString(labels[k]); n > 63 {
			v.add(p, "put longer text in env, or shorten it", "value must be at most 63 characters (is %d)", n)
		}
	}
}

// labelKeyProblem checks a label key the way Kubernetes does.
func labelKeyProblem(k string) string {
	parts := strings.Split(k, "/")
	name := parts[len(parts)-1]
	switch {
	case len(parts) > 2:
		return "at most one '/'"
	case len(parts) == 2 && parts[0] == "":
		return "empty prefix before '/'"
	case len(parts) == 2 && (len(parts[0]) > 253 || !dnsSubdomain.MatchString(parts[0])):
		return "prefix must be a lowercase DNS subdomain of at most 253 characters"
	case name == "":
		return "empty name"
	case len(name) > 63:
		return "name must be at most 63 characters"
	case !labelName.MatchString(name):
		return "name must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'"
	}
	return ""
}

func (v *validator) capabilities(caps []string) {
	seen := map[string]int{}
	for i, c := range caps {
		p := fmt.Sprintf("cap_add[%d]", i)
		n, ok := NormalizeCapability(c)
		if !ok {
			hint := "use a Linux capability name such as NET_BIND_SERVICE (see capabilities(7))"
			if strings.EqualFold(c, "ALL") || strings.EqualFold(c, "CAP_ALL") {
				hint = "list the capabilities the program needs; ALL is not supported"
			} else if m := suggest("CAP_"+strings.TrimPrefix(strings.ToUpper(c), "CAP_"), capabilityNames()); m != "" {
				hint = "did you mean " + m + "?"
			}
			v.add(p, hint, "unknown capability %q", c)
			continue
		}
		if j, dup := seen[n]; dup {
			v.add(p, "list each capability once", "%s is already listed at cap_add[%d]", n, j)
			continue
		}
		seen[n] = i
	}
}

// secrets checks the secrets map: keys are environment variable names not
// also set in env, values are secret names (DNS labels).
func (v *validator) secrets(secrets, env map[string]string) {
	for _, k := range sortedKeys(secrets) {
		p := keyPath("secrets", k)
		switch {
		case k == "":
			v.add(p, "", "variable name must not be empty")
		case strings.ContainsRune(k, '='):
			v.add(p, "write NAME: secret-name, not NAME=secret-name", "variable name must not contain '='")
		case strings.ContainsRune(k, 0):
			v.add(p, "", "variable name must not contain a NUL byte")
		case len(k) > maxEnvName:
			v.add(p, "names are short identifiers like DB_PASSWORD", "variable name must be at most %d bytes (is %d)", maxEnvName, len(k))
		}
		if _, dup := env[k]; dup && k != "" {
			v.add(p, fmt.Sprintf("remove %s: the secret sets the variable", keyPath("env", k)), "variable %q is also set in env", k)
		}
		v.dnsLabel(p, secrets[k], "name a secret created with gantry secret set NAME")
	}
}

// SecretNameProblem says why name cannot name a secret (secret names follow
// the rules of service names: a DNS label starting with a letter), or
// returns "".
func SecretNameProblem(name string) string { return dnsLabelProblem(name) }
