package intent_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/intent"
	"github.com/gantry-dev/gantry/spec"
)

func web(mod func(*intent.Intent)) intent.Intent {
	in := intent.Intent{Kind: intent.Web, Name: "web", Image: "nginx:1.27", Port: 8080}
	if mod != nil {
		mod(&in)
	}
	return in
}

// explained reports whether some explanation line contains every part.
func explained(res intent.Result, parts ...string) bool {
	for _, line := range res.Explanation {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestCompile(t *testing.T) {
	const mi = 1 << 20
	tests := []struct {
		name     string
		in       intent.Intent
		replicas int
		cpu      spec.MilliCPU
		memory   spec.Bytes
		restart  spec.RestartPolicy
		ports    int
		check    string // tcp, http or ""
		why      []string
	}{
		{"web defaults", web(nil), 1, 100, 64 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"exposure internal", "not published"}},
		{"web public", web(func(in *intent.Intent) { in.Exposure = intent.Public }), 1, 100, 64 * mi, spec.RestartAlways, 1, "tcp",
			[]string{"exposure public", "published"}},
		{"web http check", web(func(in *intent.Intent) { in.HealthPath = "/healthz" }), 1, 100, 64 * mi, spec.RestartAlways, 0, "http",
			[]string{"HTTP GET /healthz"}},
		{"web high availability", web(func(in *intent.Intent) { in.Availability = intent.High }), 3, 100, 64 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"availability high: 3 replicas", "health-gated", "spreads them across nodes"}},
		{"web load medium", web(func(in *intent.Intent) { in.Load = "medium" }), 2, 250, 128 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"load medium: 2 replicas of 250m CPU and 128Mi"}},
		{"web load high", web(func(in *intent.Intent) { in.Load = "HIGH" }), 4, 500, 256 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"load high: 4 replicas of 500m CPU and 256Mi"}},
		{"web rate", web(func(in *intent.Intent) { in.Load = "250rps" }), 3, 500, 256 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"load 250 requests/s: 3 replicas"}},
		{"web small rate", web(func(in *intent.Intent) { in.Load = "10/s" }), 1, 100, 64 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"load 10 requests/s: 1 replica"}},
		{"web huge rate capped", web(func(in *intent.Intent) { in.Load = "100000 req/s" }), intent.MaxRateReplicas, 500, 256 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"capped at 50"}},
		{"web high, load high, public, budget", web(func(in *intent.Intent) {
			in.Availability, in.Exposure, in.Load = intent.High, intent.Public, "high"
			in.Budget = intent.Budget{MaxCPUMillis: 1000, MaxMemory: "512Mi", MaxReplicas: 3}
		}), 3, 330, 170 * mi, spec.RestartAlways, 1, "tcp",
			[]string{"budget max_replicas 3: 3 replicas instead of 4"}},
		{"budget cpu drops replicas", web(func(in *intent.Intent) {
			in.Load = "high"
			in.Budget.MaxCPUMillis = 120
		}), 2, 60, 256 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"budget max_cpu_millis 120: 2 replicas instead of 4"}},
		{"budget memory drops replicas", web(func(in *intent.Intent) {
			in.Availability = intent.High
			in.Budget.MaxMemory = "64Mi"
		}), 2, 100, 32 * mi, spec.RestartAlways, 0, "tcp",
			[]string{"budget max_memory 64Mi: 2 replicas instead of 3"}},
		{"worker", intent.Intent{Kind: intent.Worker, Name: "jobs", Image: "busybox:1.36", Load: "medium"}, 2, 250, 128 * mi, spec.RestartAlways, 0, "",
			[]string{"kind worker", "no health check"}},
		{"worker high", intent.Intent{Kind: intent.Worker, Name: "jobs", Image: "busybox:1.36", Availability: intent.High}, 3, 100, 64 * mi, spec.RestartAlways, 0, "",
			[]string{"availability high: 3 replicas", "running (a worker has no health check)"}},
		{"batch", intent.Intent{Kind: intent.Batch, Name: "report", Image: "busybox:1.36", Command: []string{"sh", "-c", "echo done"}}, 1, 250, 128 * mi, spec.RestartOnFailure, 0, "",
			[]string{"restart on-failure", "retried"}},
		{"batch heavy in budget", intent.Intent{Kind: intent.Batch, Name: "report", Image: "busybox:1.36", Load: "high",
			Budget: intent.Budget{MaxCPUMillis: 600, MaxMemory: "256Mi"}}, 1, 600, 256 * mi, spec.RestartOnFailure, 0, "",
			[]string{"budget max_cpu_millis 600: 600m CPU per replica instead of 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := intent.Compile(tt.in)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			s := res.Spec
			if err := s.Validate(); err != nil {
				t.Fatalf("compiled spec is invalid: %v", err)
			}
			if s.Name != tt.in.Name || s.Image != tt.in.Image {
				t.Errorf("name/image = %s/%s", s.Name, s.Image)
			}
			if s.Replicas != tt.replicas || s.Resources.CPU != tt.cpu || s.Resources.Memory != tt.memory {
				t.Errorf("got %d × %s/%s, want %d × %s/%s", s.Replicas, s.Resources.CPU, s.Resources.Memory, tt.replicas, tt.cpu, tt.memory)
			}
			if s.Restart != tt.restart {
				t.Errorf("restart = %s, want %s", s.Restart, tt.restart)
			}
			if len(s.Ports) != tt.ports {
				t.Errorf("ports = %+v, want %d", s.Ports, tt.ports)
			}
			check := ""
			if s.Health != nil {
				switch {
				case s.Health.TCP != nil:
					check = "tcp"
				case s.Health.HTTP != nil:
					check = "http"
				}
			}
			if check != tt.check {
				t.Errorf("health check = %q, want %q", check, tt.check)
			}
			if !explained(res, tt.why...) {
				t.Errorf("no explanation line has %q:\n%s", tt.why, strings.Join(res.Explanation, "\n"))
			}
			if s.Labels["gantry.dev/kind"] != string(tt.in.Kind) {
				t.Errorf("labels = %v", s.Labels)
			}
		})
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name  string
		in    intent.Intent
		field string
		says  string // in the message or hint
	}{
		{"no kind", intent.Intent{Name: "a", Image: "busybox"}, "kind", "required"},
		{"kind typo", intent.Intent{Kind: "wbe", Name: "a", Image: "busybox"}, "kind", "did you mean web?"},
		{"cron", intent.Intent{Kind: intent.Cron, Name: "a", Image: "busybox"}, "kind", "no scheduler for periodic jobs"},
		{"web without port", web(func(in *intent.Intent) { in.Port = 0 }), "port", "required for kind web"},
		{"port out of range", web(func(in *intent.Intent) { in.Port = 70000 }), "port", "between 1 and 65535"},
		{"worker with port", intent.Intent{Kind: intent.Worker, Name: "a", Image: "busybox", Port: 80}, "port", "use kind web"},
		{"worker public", intent.Intent{Kind: intent.Worker, Name: "a", Image: "busybox", Exposure: intent.Public}, "exposure", "only kind web"},
		{"batch high", intent.Intent{Kind: intent.Batch, Name: "a", Image: "busybox", Availability: intent.High}, "availability", "not to batch"},
		{"batch rate", intent.Intent{Kind: intent.Batch, Name: "a", Image: "busybox", Load: "50rps"}, "load", "no request rate"},
		{"bad availability", web(func(in *intent.Intent) { in.Availability = "hihg" }), "availability", "did you mean high?"},
		{"bad exposure", web(func(in *intent.Intent) { in.Exposure = "world" }), "exposure", "internal or public"},
		{"bad load", web(func(in *intent.Intent) { in.Load = "lots" }), "load", "low, medium or high"},
		{"zero rate", web(func(in *intent.Intent) { in.Load = "0rps" }), "load", "between 1 and"},
		{"bad name", web(func(in *intent.Intent) { in.Name = "My_Web" }), "name", `try "my-web"`},
		{"bad image", web(func(in *intent.Intent) { in.Image = "Nginx:1" }), "image", "lowercase"},
		{"bad health path", web(func(in *intent.Intent) { in.HealthPath = "healthz" }), "health_path", `write "/healthz"`},
		{"negative cpu budget", web(func(in *intent.Intent) { in.Budget.MaxCPUMillis = -1 }), "budget.max_cpu_millis", "between 0"},
		{"bad memory budget", web(func(in *intent.Intent) { in.Budget.MaxMemory = "lots" }), "budget.max_memory", "1Gi"},
		{"cpu budget too small", web(func(in *intent.Intent) { in.Budget.MaxCPUMillis = 30 }), "budget.max_cpu_millis", "at least 50"},
		{"memory budget too small", web(func(in *intent.Intent) { in.Budget.MaxMemory = "16Mi" }), "budget.max_memory", "at least 32Mi"},
		{"high needs two replicas", web(func(in *intent.Intent) {
			in.Availability = intent.High
			in.Budget.MaxReplicas = 1
		}), "budget.max_replicas", "availability standard"},
		{"high needs cpu for two", web(func(in *intent.Intent) {
			in.Availability = intent.High
			in.Budget.MaxCPUMillis = 80
		}), "budget.max_cpu_millis", "at least 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := intent.Compile(tt.in)
			if err == nil {
				t.Fatal("Compile accepted the intent")
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v is not in the invalid category", err)
			}
			var ie *intent.Error
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *intent.Error", err)
			}
			for _, p := range ie.Problems {
				if p.Field == tt.field && strings.Contains(p.Message+" "+p.Hint, tt.says) {
					return
				}
			}
			t.Errorf("no problem at %s saying %q: %v", tt.field, tt.says, err)
		})
	}
}

func TestCompileReportsAllProblems(t *testing.T) {
	_, err := intent.Compile(intent.Intent{Kind: intent.Batch, Name: "Bad_Name", Port: 80, Availability: intent.High})
	var ie *intent.Error
	if !errors.As(err, &ie) {
		t.Fatalf("got %v", err)
	}
	fields := map[string]bool{}
	for _, p := range ie.Problems {
		fields[p.Field] = true
	}
	for _, f := range []string{"name", "image", "port", "availability"} {
		if !fields[f] {
			t.Errorf("no problem reported for %s: %v", f, err)
		}
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	in := web(func(in *intent.Intent) {
		in.Availability, in.Exposure, in.Load = intent.High, intent.Public, "high"
		in.Env = map[string]string{"B": "2", "A": "1", "C": "3"}
		in.Budget = intent.Budget{MaxCPUMillis: 1500, MaxMemory: "1Gi"}
	})
	first, err := intent.Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(first)
	for range 20 {
		res, err := intent.Compile(in)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(res)
		if string(got) != string(want) {
			t.Fatalf("second compile differs:\n%s\n%s", got, want)
		}
		if !reflect.DeepEqual(res, first) {
			t.Fatal("results are not deeply equal")
		}
	}
}

func TestCompileDoesNotAliasInput(t *testing.T) {
	in := intent.Intent{Kind: intent.Worker, Name: "w", Image: "busybox", Command: []string{"sleep", "1"}, Env: map[string]string{"A": "1"}}
	res, err := intent.Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	res.Spec.Command[0], res.Spec.Env["A"] = "changed", "changed"
	if in.Command[0] != "sleep" || in.Env["A"] != "1" {
		t.Fatal("the compiled spec shares memory with the intent")
	}
}

// TestCompileProperties: every intent that compiles gives a valid spec
// within its budget, with an explanation; every refusal is an *Error.
func TestCompileProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := intent.Intent{
			Kind:         intent.Kind(rapid.SampledFrom([]string{"web", "worker", "batch", "cron", "", "bogus"}).Draw(t, "kind")),
			Name:         rapid.SampledFrom([]string{"web", "api-2", "x", "Bad", ""}).Draw(t, "name"),
			Image:        rapid.SampledFrom([]string{"busybox:1.36", "127.0.0.1:5000/a/b:1", "", "UPPER"}).Draw(t, "image"),
			Port:         rapid.IntRange(-1, 70000).Draw(t, "port"),
			Availability: intent.Availability(rapid.SampledFrom([]string{"", "standard", "high", "x"}).Draw(t, "availability")),
			Exposure:     intent.Exposure(rapid.SampledFrom([]string{"", "internal", "public", "x"}).Draw(t, "exposure")),
			Load:         rapid.SampledFrom([]string{"", "low", "medium", "high", "1rps", "150/s", "999rps", "5000 requests/s", "x"}).Draw(t, "load"),
			Budget: intent.Budget{
				MaxCPUMillis: rapid.Int64Range(-10, 5000).Draw(t, "max_cpu"),
				MaxMemory:    rapid.SampledFrom([]string{"", "16Mi", "64Mi", "100Mi", "1Gi", "3G", "x", "-1"}).Draw(t, "max_memory"),
				MaxReplicas:  rapid.IntRange(-1, 60).Draw(t, "max_replicas"),
			},
		}
		if rapid.Bool().Draw(t, "health") {
			in.HealthPath = "/healthz"
		}
		res, err := intent.Compile(in)
		if err != nil {
			var ie *intent.Error
			if !errors.As(err, &ie) || len(ie.Problems) == 0 || !errdefs.IsInvalid(err) {
				t.Fatalf("refusal is not an *intent.Error with problems: %v", err)
			}
			return
		}
		s := res.Spec
		if err := s.Validate(); err != nil {
			t.Fatalf("compiled spec is invalid: %v", err)
		}
		if s.Replicas < 1 {
			t.Fatalf("replicas %d", s.Replicas)
		}
		b := in.Budget
		if b.MaxReplicas > 0 && s.Replicas > b.MaxReplicas {
			t.Fatalf("%d replicas over the budget of %d", s.Replicas, b.MaxReplicas)
		}
		if b.MaxCPUMillis > 0 && int64(s.Resources.CPU)*int64(s.Replicas) > b.MaxCPUMillis {
			t.Fatalf("%d × %s over the CPU budget %d", s.Replicas, s.Resources.CPU, b.MaxCPUMillis)
		}
		if b.MaxMemory != "" {
			limit, _ := spec.ParseBytes(b.MaxMemory)
			if limit > 0 && int64(s.Resources.Memory)*int64(s.Replicas) > int64(limit) {
				t.Fatalf("%d × %s over the memory budget %s", s.Replicas, s.Resources.Memory, b.MaxMemory)
			}
		}
		if in.Availability == intent.High && s.Replicas < intent.HighMinReplicas {
			t.Fatalf("availability high with %d replicas", s.Replicas)
		}
		if s.Resources.CPU < intent.MinCPU || s.Resources.Memory < intent.MinMemory {
			t.Fatalf("resources %s/%s below the minimum", s.Resources.CPU, s.Resources.Memory)
		}
		if len(res.Explanation) < 3 {
			t.Fatalf("explanation too short: %q", res.Explanation)
		}
	})
}

func TestDecode(t *testing.T) {
	in, err := intent.Decode([]byte(`{"kind":"web","name":"web","image":"nginx:1.27","port":80,"budget":{"max_cpu_millis":500,"max_memory":"256Mi"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if in.Kind != intent.Web || in.Port != 80 || in.Budget.MaxCPUMillis != 500 || in.Budget.MaxMemory != "256Mi" {
		t.Fatalf("decoded %+v", in)
	}
	bad := []struct{ input, field, says string }{
		{`{"kind":"web","prot":80}`, "prot", "did you mean port?"},
		{`{"kind":"web","port":"80"}`, "port", "must be an integer"},
		{`{"budget":{"max_replicas":"x"}}`, "budget.max_replicas", "must be an integer"},
		{`[1]`, "", "JSON object"},
		{`{"kind":`, "", ""},
		{``, "", "empty input"},
		{`{} {}`, "", "exactly one JSON object"},
		{`{"name":"` + strings.Repeat("a", intent.MaxInputBytes) + `"}`, "", "bytes"},
	}
	for _, tt := range bad {
		_, err := intent.Decode([]byte(tt.input))
		var ie *intent.Error
		if !errors.As(err, &ie) {
			t.Errorf("Decode(%.40q) = %v, want an *intent.Error", tt.input, err)
			continue
		}
		p := ie.Problems[0]
		if p.Field != tt.field || !strings.Contains(p.Message+" "+p.Hint, tt.says) {
			t.Errorf("Decode(%.40q): got %q, want field %q saying %q", tt.input, p.String(), tt.field, tt.says)
		}
	}
}

// FuzzDecodeCompile: no input makes Decode or Compile panic, and whatever
// compiles validates.
func FuzzDecodeCompile(f *testing.F) {
	f.Add([]byte(`{"kind":"web","name":"web","image":"nginx:1.27","port":80,"availability":"high","exposure":"public","load":"250rps"}`))
	f.Add([]byte(`{"kind":"batch","name":"b","image":"busybox","load":"high","budget":{"max_cpu_millis":100,"max_memory":"64Mi"}}`))
	f.Add([]byte(`{"kind":"worker","name":"w","image":"busybox","env":{"A":"1"},"command":["sleep","9"]}`))
	f.Add([]byte(`{"kind":"cron"}`))
	f.Add([]byte(`{"budget":{"max_memory":"1e30"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := intent.Decode(data)
		if err != nil {
			if !errdefs.IsInvalid(err) {
				t.Fatalf("Decode error %v is not in the invalid category", err)
			}
			return
		}
		res, err := intent.Compile(in)
		if err != nil {
			return
		}
		if err := res.Spec.Validate(); err != nil {
			t.Fatalf("compiled spec is invalid: %v", err)
		}
	})
}
