package intent

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Result is a compiled intent: a spec that passes spec.Validate and one
// plain-language sentence per choice made.
type Result struct {
	Spec        spec.Service `json:"spec"`
	Explanation []string     `json:"explanation"`
}

// Sizing rules. They are rules of thumb, stated in the explanation so a
// user knows what to measure and adjust.
const (
	// RatePerReplica is the request rate one 500m replica is assumed to serve.
	RatePerReplica = 100
	// MaxRateReplicas caps the replicas a request rate alone asks for.
	MaxRateReplicas = 50
	// HighReplicas is the replica count availability high asks for, and
	// HighMinReplicas the fewest a budget may clamp it to.
	HighReplicas    = 3
	HighMinReplicas = 2
	// MinCPU and MinMemory are the smallest per-replica sizes a budget may
	// clamp to.
	MinCPU    = spec.MilliCPU(50)
	MinMemory = spec.Bytes(32 << 20)
	maxRate   = 10_000_000
)

type size struct {
	replicas int
	cpu      spec.MilliCPU
	memory   spec.Bytes
}

var (
	serviceTiers = map[string]size{
		LoadLow:    {1, 100, 64 << 20},
		LoadMedium: {2, 250, 128 << 20},
		LoadHigh:   {4, 500, 256 << 20},
	}
	batchTiers = map[string]size{
		LoadLow:    {1, 250, 128 << 20},
		LoadMedium: {1, 500, 256 << 20},
		LoadHigh:   {1, 1000, 512 << 20},
	}
	rateSize = size{0, 500, 256 << 20}
)

// compiler holds one compilation: the normalised intent, the problems
// found and the explanation so far.
type compiler struct {
	in       Intent
	avail    Availability
	exposure Exposure
	tier     string // low, medium, high; "" with a rate
	rate     int
	maxMem   spec.Bytes
	problems []Problem
	why      []string
}

func (c *compiler) bad(field, hint, format string, args ...any) {
	c.problems = append(c.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...), Hint: hint})
}

func (c *compiler) explain(format string, args ...any) {
	c.why = append(c.why, fmt.Sprintf(format, args...))
}

// Compile turns an intent into a service spec and explains each choice.
// It reports every problem at once as an *Error naming the intent field
// and saying how to fix it.
func Compile(in Intent) (Result, error) {
	c := &compiler{in: in}
	c.check()
	if len(c.problems) > 0 {
		return Result{}, &Error{Problems: c.problems}
	}
	svc, ok := c.build()
	if !ok {
		return Result{}, &Error{Problems: c.problems}
	}
	if err := svc.Validate(); err != nil {
		c.specProblems(err)
		if len(c.problems) == 0 {
			c.bad("", "report this as a bug with the intent that caused it", "the compiled spec is invalid: %v", err)
		}
		return Result{}, &Error{Problems: c.problems}
	}
	return Result{Spec: svc, Explanation: c.why}, nil
}

// check validates the intent and normalises its enumerations.
func (c *compiler) check() {
	in := c.in
	kinds := []string{string(Web), string(Worker), string(Batch), string(Cron)}
	switch in.Kind {
	case Web, Worker, Batch:
	case Cron:
		c.bad("kind", "use kind batch and start each run from an external scheduler (a systemd timer or CI job that removes and deploys it), or kind worker with a command that loops and sleeps between runs",
			"cron is not supported: Gantry has no scheduler for periodic jobs yet")
	case "":
		c.bad("kind", "one of web (serves on a port), worker (long-running, no port), batch (runs to completion)", "required")
	default:
		hint := "use web, worker or batch"
		if m := closest(string(in.Kind), kinds); m != "" {
			hint = "did you mean " + m + "?"
		}
		c.bad("kind", hint, "unknown kind %q", in.Kind)
	}

	// Name, image, command and env are checked by the spec's own rules,
	// whose field paths are the intent's.
	probe := spec.Service{Name: in.Name, Image: in.Image, Command: in.Command, Env: in.Env, Replicas: 1}
	c.specProblems(probe.Validate())

	if in.Kind == Web {
		switch {
		case in.Port == 0:
			c.bad("port", "the port your program listens on inside the container, e.g. 8080", "required for kind web")
		case in.Port < 1 || in.Port > 65535:
			c.bad("port", "the port your program listens on inside the container, e.g. 8080", "must be between 1 and 65535, got %d", in.Port)
		}
		if p := in.HealthPath; p != "" && !strings.HasPrefix(p, "/") {
			c.bad("health_path", fmt.Sprintf("write %q", "/"+p), "must start with '/', got %q", p)
		}
	} else if in.Kind == Worker || in.Kind == Batch {
		if in.Port != 0 {
			c.bad("port", "remove port, or use kind web for a program that serves on a port", "only kind web takes a port, this is kind %s", in.Kind)
		}
		if in.HealthPath != "" {
			c.bad("health_path", "remove health_path, or use kind web", "only kind web has an HTTP health check, this is kind %s", in.Kind)
		}
	}

	switch in.Availability {
	case "", Standard:
		c.avail = Standard
	case High:
		c.avail = High
		if in.Kind == Batch {
			c.bad("availability", "leave availability out (or standard): a failed run is retried on its own",
				"high availability applies to long-running kinds (web, worker), not to batch")
		}
	default:
		hint := "use standard or high"
		if m := closest(string(in.Availability), []string{"standard", "high"}); m != "" {
			hint = "did you mean " + m + "?"
		}
		c.bad("availability", hint, "unknown availability %q", in.Availability)
	}

	switch in.Exposure {
	case "", Internal:
		c.exposure = Internal
	case Public:
		c.exposure = Public
		if in.Kind == Worker || in.Kind == Batch {
			c.bad("exposure", "leave exposure out, or use kind web with a port", "public exposure needs a port, which only kind web has")
		}
	default:
		hint := "use internal or public"
		if m := closest(string(in.Exposure), []string{"internal", "public"}); m != "" {
			hint = "did you mean " + m + "?"
		}
		c.bad("exposure", hint, "unknown exposure %q", in.Exposure)
	}

	c.checkLoad()
	c.checkBudget()
}

func (c *compiler) checkLoad() {
	const hint = `use low, medium or high, or for web and worker a rate such as "250rps"`
	s := strings.ToLower(strings.TrimSpace(c.in.Load))
	switch s {
	case "":
		return
	case LoadLow, LoadMedium, LoadHigh:
		c.tier = s
		return
	}
	num := s
	for _, suf := range []string{"requests/s", "requests per second", "req/s", "rps", "/s"} {
		if t, ok := strings.CutSuffix(num, suf); ok {
			num = strings.TrimSpace(t)
			break
		}
	}
	n, err := strconv.Atoi(num)
	switch {
	case err != nil:
		c.bad("load", hint, "unknown load %q", c.in.Load)
	case n < 1 || n > maxRate:
		c.bad("load", hint, "a rate must be between 1 and %d requests/s, got %d", maxRate, n)
	case c.in.Kind == Batch:
		c.bad("load", "say how heavy one run is: low, medium or high", "a batch job has no request rate")
	default:
		c.rate = n
	}
}

func (c *compiler) checkBudget() {
	b := c.in.Budget
	if b.MaxCPUMillis < 0 || b.MaxCPUMillis > int64(spec.MaxCPU) {
		c.bad("budget.max_cpu_millis", "total millicores for all replicas, e.g. 2000 for two cores; 0 means no limit",
			"must be between 0 and %d, got %d", int64(spec.MaxCPU), b.MaxCPUMillis)
	}
	if b.MaxReplicas < 0 || b.MaxReplicas > spec.MaxReplicas {
		c.bad("budget.max_replicas", "0 means no limit", "must be between 0 and %d, got %d", spec.MaxReplicas, b.MaxReplicas)
	}
	if b.MaxMemory != "" {
		m, err := spec.ParseBytes(b.MaxMemory)
		switch {
		case err != nil:
			c.bad("budget.max_memory", `total memory for all replicas, e.g. "1Gi" or "512Mi"`, "%v", err)
		case m < 0:
			c.bad("budget.max_memory", `total memory for all replicas, e.g. "1Gi"; leave it out for no limit`, "must not be negative, got %s", b.MaxMemory)
		default:
			c.maxMem = m
		}
	}
}

// specProblems turns spec validation problems into intent problems: the
// spec's paths are the intent's except for the health check's path.
func (c *compiler) specProblems(err error) {
	if err == nil {
		return
	}
	ve, ok := spec.AsValidationError(err)
	if !ok {
		c.bad("", "", "%v", err)
		return
	}
	for _, fe := range ve.Errors {
		field := fe.Path
		switch {
		case strings.HasPrefix(field, "health.http.path"):
			field = "health_path"
		case strings.HasPrefix(field, "ports[0].port"):
			field = "port"
		}
		c.problems = append(c.problems, Problem{Field: field, Message: fe.Message, Hint: fe.Hint})
	}
}

// build makes the spec and the explanation. It returns false with problems
// when the budget cannot fit the smallest acceptable service.
func (c *compiler) build() (spec.Service, bool) {
	in := c.in
	svc := spec.Service{
		Version: 1,
		Name:    in.Name,
		Image:   in.Image,
		Command: append([]string(nil), in.Command...),
		Labels:  map[string]string{"gantry.dev/kind": string(in.Kind)},
	}
	if len(in.Env) > 0 {
		svc.Env = make(map[string]string, len(in.Env))
		for _, k := range sortedKeys(in.Env) {
			svc.Env[k] = in.Env[k]
		}
	}

	switch in.Kind {
	case Web:
		svc.Restart = spec.RestartAlways
		c.explain("kind web: a long-running service listening on port %d; restart always, so an instance that exits is started again (with backoff)", in.Port)
		c.webNetwork(&svc)
	case Worker:
		svc.Restart = spec.RestartAlways
		c.explain("kind worker: a long-running process with no port; restart always, so an instance that exits is started again (with backoff); " +
			"it has no health check (Gantry cannot know how to probe it), so an instance counts as ready once its process runs")
	case Batch:
		svc.Restart = spec.RestartOnFailure
		c.explain("kind batch: runs to completion once; restart on-failure, so a failed run (non-zero exit) is retried with backoff and a successful one stays exited; " +
			"deploying the same spec again does not rerun it: remove the service and deploy it again for another run")
	}

	want := c.sizeForLoad()
	if in.Kind != Batch {
		c.availability(&want)
	} else {
		c.explain("availability standard: one run at a time")
	}
	if !c.clamp(&want) {
		return spec.Service{}, false
	}
	svc.Replicas = want.replicas
	svc.Resources = spec.Resources{CPU: want.cpu, Memory: want.memory}

	svc.Labels["gantry.dev/availability"] = string(c.avail)
	if in.Kind == Web {
		svc.Labels["gantry.dev/exposure"] = string(c.exposure)
	}
	if c.rate > 0 {
		svc.Labels["gantry.dev/load"] = strconv.Itoa(c.rate) + "rps"
	} else {
		svc.Labels["gantry.dev/load"] = c.tierOrDefault()
	}
	keys := sortedKeys(svc.Labels)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + svc.Labels[k]
	}
	c.explain("labels %s record the intent, so policies and tools can see what the service is for", strings.Join(pairs, ", "))
	svc.SetDefaults()
	return svc, true
}

// webNetwork sets the port, its exposure and the health check.
func (c *compiler) webNetwork(svc *spec.Service) {
	in := c.in
	checkPort := strconv.Itoa(in.Port)
	if c.exposure == Public {
		svc.Ports = []spec.Port{{Name: "http", Port: in.Port, Protocol: spec.DefaultProtocol}}
		checkPort = "http"
		c.explain("exposure public: port %d is published on a free port of the host running each replica (get_service shows it under ports); "+
			"Gantry has no load balancer yet, so each replica has its own host port", in.Port)
	} else {
		c.explain("exposure internal: port %d is not published on the host; it is reachable at each instance's container network address (get_service shows the IP)", in.Port)
	}
	h := &spec.Health{Interval: spec.Duration(5 * time.Second), Timeout: spec.Duration(2 * time.Second), Failures: 3}
	if in.HealthPath != "" {
		h.HTTP = &spec.HTTPCheck{Port: checkPort, Path: in.HealthPath}
		c.explain("health: HTTP GET %s on port %d every 5s (2xx or 3xx is healthy, 3 failures in a row unhealthy); an instance counts as ready, and receives its turn in updates, only once it passes", in.HealthPath, in.Port)
	} else {
		h.TCP = &spec.TCPCheck{Port: checkPort}
		c.explain("health: TCP connect to port %d every 5s (3 failures in a row unhealthy); an instance counts as ready once it accepts connections; set health_path for an HTTP check", in.Port)
	}
	svc.Health = h
}

func (c *compiler) tierOrDefault() string {
	if c.tier == "" {
		return LoadLow
	}
	return c.tier
}

// sizeForLoad picks replicas and per-replica resources from the load.
func (c *compiler) sizeForLoad() size {
	if c.in.Kind == Batch {
		s := batchTiers[c.tierOrDefault()]
		c.explain("%s: one run with %s CPU and %s memory", c.loadLabel(), s.cpu, s.memory)
		return s
	}
	var s size
	switch {
	case c.rate == 0:
		s = serviceTiers[c.tierOrDefault()]
	case c.rate <= 20:
		s = serviceTiers[LoadLow]
	case c.rate <= 2*RatePerReplica:
		s = serviceTiers[LoadMedium]
	default:
		s = rateSize
		s.replicas = (c.rate + RatePerReplica - 1) / RatePerReplica
		if s.replicas > MaxRateReplicas {
			s.replicas = MaxRateReplicas
			c.explain("load %d requests/s asks for more than %d replicas: capped at %d; scale further with scale_service once measured",
				c.rate, MaxRateReplicas, MaxRateReplicas)
		}
	}
	c.explain("%s: %d replica%s of %s CPU and %s memory (rule of thumb: about %d requests/s per 500m replica; measure and adjust with scale_service)",
		c.loadLabel(), s.replicas, plural(s.replicas), s.cpu, s.memory, RatePerReplica)
	return s
}

func (c *compiler) loadLabel() string {
	switch {
	case c.rate > 0:
		return fmt.Sprintf("load %d requests/s", c.rate)
	case c.tier == "":
		return "load not given, sized as low"
	}
	return "load " + c.tier
}

func (c *compiler) availability(s *size) {
	if c.avail != High {
		if s.replicas == 1 {
			c.explain("availability standard: 1 replica, so an update or a crash leaves the service briefly down; use availability high to avoid that")
		} else {
			c.explain("availability standard: %d replicas as the load asks; updates replace them one at a time, each once the others are ready", s.replicas)
		}
		return
	}
	if s.replicas < HighReplicas {
		s.replicas = HighReplicas
	}
	ready := "ready (health-gated)"
	if c.in.Kind == Worker {
		ready = "running (a worker has no health check)"
	}
	c.explain("availability high: %d replicas, so one can fail or be replaced while the others serve; updates replace them one at a time, each only once the others are %s; "+
		"the scheduler spreads them across nodes (they share a node only when there are fewer nodes than replicas)", s.replicas, ready)
}

// clamp fits the size into the budget, explaining each reduction.
func (c *compiler) clamp(s *size) bool {
	b := c.in.Budget
	minReplicas := 1
	if c.avail == High && c.in.Kind != Batch {
		minReplicas = HighMinReplicas
	}
	need := fmt.Sprintf("the %d replica%s", minReplicas, plural(minReplicas))
	if minReplicas > 1 {
		need += " that availability high needs"
	}
	if b.MaxReplicas > 0 && s.replicas > b.MaxReplicas {
		if b.MaxReplicas < minReplicas {
			c.bad("budget.max_replicas", fmt.Sprintf("raise it to at least %d, or use availability standard", minReplicas),
				"%d is fewer than %s", b.MaxReplicas, need)
			return false
		}
		c.explain("budget max_replicas %d: %d replicas instead of %d", b.MaxReplicas, b.MaxReplicas, s.replicas)
		s.replicas = b.MaxReplicas
	}
	if cpu := spec.MilliCPU(b.MaxCPUMillis); cpu > 0 {
		if fit := int(cpu / MinCPU); fit < s.replicas {
			if fit < minReplicas {
				c.bad("budget.max_cpu_millis", fmt.Sprintf("raise it to at least %d", int64(MinCPU)*int64(minReplicas)),
					"%d millicores cannot give %s %s each", b.MaxCPUMillis, need, MinCPU)
				return false
			}
			c.explain("budget max_cpu_millis %d: %d replicas instead of %d (each needs at least %s)", b.MaxCPUMillis, fit, s.replicas, MinCPU)
			s.replicas = fit
		}
	}
	if mem := c.maxMem; mem > 0 {
		if fit := int(mem / MinMemory); fit < s.replicas {
			if fit < minReplicas {
				c.bad("budget.max_memory", fmt.Sprintf("raise it to at least %s", MinMemory*spec.Bytes(minReplicas)),
					"%s cannot give %s %s each", c.in.Budget.MaxMemory, need, MinMemory)
				return false
			}
			c.explain("budget max_memory %s: %d replicas instead of %d (each needs at least %s)", c.in.Budget.MaxMemory, fit, s.replicas, MinMemory)
			s.replicas = fit
		}
	}
	if cpu := spec.MilliCPU(b.MaxCPUMillis); cpu > 0 {
		if per := cpu / spec.MilliCPU(s.replicas) / 10 * 10; per < s.cpu {
			c.explain("budget max_cpu_millis %d: %s CPU per replica instead of %s (%d × %s fits)", b.MaxCPUMillis, per, s.cpu, s.replicas, per)
			s.cpu = per
		}
	}
	if mem := c.maxMem; mem > 0 {
		if per := mem / spec.Bytes(s.replicas) >> 20 << 20; per < s.memory {
			c.explain("budget max_memory %s: %s memory per replica instead of %s (%d × %s fits)", c.in.Budget.MaxMemory, per, s.memory, s.replicas, per)
			s.memory = per
		}
	}
	return true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
