package spec

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	yaml "go.yaml.in/yaml/v3"
)

func TestParseCPU(t *testing.T) {
	good := map[string]MilliCPU{
		"250m": 250, "0.5": 500, "1": 1000, "2.25": 2250, ".5": 500, "0": 0, "0m": 0, "1000m": 1000,
		"1.000": 1000, "0.001": 1, "1e1": 10000, "2E-3": 2, " 3 ": 3000, "9223372036854775807m": math.MaxInt64,
	}
	for in, want := range good {
		if got, err := ParseCPU(in); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                      "empty",
		"-1":                    "negative",
		"-250m":                 "negative",
		"0.0005":                "finer than one millicore",
		"1.5m":                  "finer than one millicore",
		"m":                     "want a number first",
		"1 core":                "unknown suffix",
		"1k":                    "unknown suffix",
		"1..2":                  "unknown suffix",
		"0x10":                  "unknown suffix",
		"9223372036854775808m":  "too large",
		"9223372036854776":      "too large",
		"1e999":                 "unknown suffix",
		strings.Repeat("1", 65): "too long",
	}
	for in, want := range bad {
		_, err := ParseCPU(in)
		if err == nil || !strings.Contains(err.Error(), want) || !errdefs.IsInvalid(err) {
			t.Errorf("ParseCPU(%q) error = %v, want ErrInvalid containing %q", in, err, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]Bytes{
		"0": 0, "1": 1, "1048576": 1 << 20, "64Mi": 64 << 20, "1Ki": 1024, "1.5Gi": 3 << 29, "0.5Ki": 512,
		"1k": 1000, "1K": 1000, "1M": 1e6, "1G": 1e9, "2T": 2e12, "1P": 1e15, "1E": 1e18, "7Ei": 7 << 60,
		"1e3": 1000, "1E3": 1000, "1e+3": 1000, "1000e-3": 1, "1.5k": 1500, "9223372036854775807": math.MaxInt64,
	}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                    "empty",
		"-1":                  "negative",
		"-64Mi":               "negative",
		"1.5":                 "whole number of bytes",
		"0.1Ki":               "whole number of bytes",
		"1e-1":                "whole number of bytes",
		"64MB":                "unknown suffix",
		"64mi":                "unknown suffix",
		"Mi":                  "want a number first",
		"abc":                 "want a number first",
		"8Ei":                 "too large",
		"9223372036854775808": "too large",
		"10E":                 "too large",
		"1e19":                "too large",
		"1e":                  "unknown suffix",
		"1e1000":              "unknown suffix",
		"1 Mi":                "unknown suffix",
	}
	for in, want := range bad {
		_, err := ParseBytes(in)
		if err == nil || !strings.Contains(err.Error(), want) || !errdefs.IsInvalid(err) {
			t.Errorf("ParseBytes(%q) error = %v, want ErrInvalid containing %q", in, err, want)
		}
	}
}

func TestQuantityStrings(t *testing.T) {
	cpus := map[MilliCPU]string{0: "0", 250: "250m", 1000: "1", 2250: "2250m", 4000: "4", -500: "-500m"}
	for c, want := range cpus {
		if got := c.String(); got != want {
			t.Errorf("MilliCPU(%d).String() = %q, want %q", c, got, want)
		}
	}
	sizes := map[Bytes]string{0: "0", 1: "1", 1000: "1000", 1024: "1Ki", 1536: "1536", 64 << 20: "64Mi", 3 << 29: "1536Mi", 1 << 30: "1Gi", 7 << 60: "7Ei", -1024: "-1Ki", math.MinInt64: "-8Ei"}
	for b, want := range sizes {
		if got := b.String(); got != want {
			t.Errorf("Bytes(%d).String() = %q, want %q", b, got, want)
		}
	}
}

func TestQuantityJSON(t *testing.T) {
	type wire struct {
		CPU MilliCPU `json:"cpu"`
		Mem Bytes    `json:"mem"`
		D   Duration `json:"d"`
	}
	cases := []struct {
		v    wire
		json string
	}{
		{wire{250, 64 << 20, Duration(10 * time.Second)}, `{"cpu":"250m","mem":"64Mi","d":"10s"}`},
		{wire{1000, 1000, Duration(1500 * time.Millisecond)}, `{"cpu":"1","mem":1000,"d":"1.5s"}`},
		{wire{0, 0, 0}, `{"cpu":"0","mem":0,"d":"0s"}`},
		{wire{-1, -1, -1}, `{"cpu":"-1m","mem":-1,"d":"-1ns"}`},
		{wire{math.MaxInt64, math.MaxInt64, math.MaxInt64}, `{"cpu":"9223372036854775807m","mem":9223372036854775807,"d":"2562047h47m16.854775807s"}`},
		{wire{math.MinInt64, math.MinInt64, math.MinInt64}, `{"cpu":"-9223372036854775808m","mem":"-8Ei","d":"-2562047h47m16.854775808s"}`},
	}
	for _, c := range cases {
		data, err := json.Marshal(c.v)
		if err != nil || string(data) != c.json {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", c.v, data, err, c.json)
		}
		var back wire
		if err := json.Unmarshal(data, &back); err != nil || back != c.v {
			t.Errorf("Unmarshal(%s) = %+v, %v; want %+v", data, back, err, c.v)
		}
	}
	// Other accepted JSON forms: numbers of cores, sizes as strings, nanoseconds.
	var w wire
	if err := json.Unmarshal([]byte(`{"cpu":0.5,"mem":"1Gi","d":1000000000}`), &w); err != nil || w != (wire{500, 1 << 30, Duration(time.Second)}) {
		t.Errorf("Unmarshal of alternative forms = %+v, %v", w, err)
	}
	for _, bad := range []string{`{"cpu":"lots"}`, `{"cpu":true}`, `{"mem":"1.5"}`, `{"mem":[1]}`, `{"d":"soon"}`, `{"d":1.5}`} {
		if err := json.Unmarshal([]byte(bad), &w); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

func TestQuantityYAML(t *testing.T) {
	type wire struct {
		CPU MilliCPU `yaml:"cpu"`
		Mem Bytes    `yaml:"mem"`
		D   Duration `yaml:"d"`
	}
	in := wire{250, 64 << 20, Duration(90 * time.Second)}
	data, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cpu: 250m\nmem: 64Mi\nd: 1m30s\n"; string(data) != want {
		t.Errorf("yaml.Marshal = %q, want %q", data, want)
	}
	var back wire
	if err := yaml.Unmarshal(data, &back); err != nil || back != in {
		t.Errorf("yaml.Unmarshal = %+v, %v; want %+v", back, err, in)
	}
	if err := yaml.Unmarshal([]byte("cpu: 0.5\nmem: 1000\nd: 0\n"), &back); err != nil || back != (wire{500, 1000, 0}) {
		t.Errorf("yaml.Unmarshal of numbers = %+v, %v", back, err)
	}
	if err := yaml.Unmarshal([]byte("d: 10\n"), &back); err == nil {
		t.Error("yaml.Unmarshal accepted a duration without a unit")
	}
}

// fullService sets every field, with values that differ from the defaults.
func fullService() *Service {
	no := false
	return &Service{
		Version:   1,
		Name:      "api",
		Image:     "registry.example.com/team/api@sha256:" + strings.Repeat("b", 64),
		Command:   []string{"/bin/api", "--flag=<&>"},
		Args:      []string{"serve", "ünïcode", "tab\there"},
		Env:       map[string]string{"A": "1", "EMPTY": "", "QUOTE": `"x"`},
		Workdir:   "/srv",
		User:      "1000:1000",
		Replicas:  0,
		Ports:     []Port{{Name: "http", Port: 80, HostPort: 8080, Protocol: "tcp"}, {Name: "dns", Port: 53, Protocol: "udp"}},
		Resources: Resources{CPU: 1500, Memory: 100000000, Pids: 10},
		Restart:   RestartOnFailure,
		Stop:      Stop{Signal: "SIGINT", Grace: 0},
		Health: &Health{
			Exec:     &ExecCheck{Command: []string{"/bin/check", "-q"}},
			Interval: Duration(250 * time.Millisecond),
			Timeout:  Duration(100 * time.Millisecond),
			Failures: 7,
			Grace:    Duration(time.Minute),
		},
		Labels:     map[string]string{"tier": "back", "example.com/team": "core"},
		Init:       &no,
		CapAdd:     []string{"CAP_NET_BIND_SERVICE"},
		Disconnect: Disconnect{ReplaceAfter: Duration(30 * time.Second)},
	}
}

func TestServiceJSONRoundTrip(t *testing.T) {
	for _, s := range []*Service{fullService(), validService()} {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Service
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", data, err)
		}
		if !reflect.DeepEqual(&back, s) {
			t.Errorf("encoding/json round trip changed the spec:\n%+v\n%+v\nvia %s", &back, s, data)
		}
	}
	// A parsed spec marshals to JSON that Parse reads back identically,
	// including the explicit zero stop grace.
	s := fullService()
	data, _ := json.Marshal(s)
	if !strings.Contains(string(data), `"grace":"0s"`) {
		t.Errorf("zero stop grace not written: %s", data)
	}
	parsed, err := Parse(data, "state.json")
	if err != nil {
		t.Fatalf("Parse of marshalled spec: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(parsed, s) {
		t.Errorf("Parse(json.Marshal(s)) != s: %v\n%+v\n%+v", Changes(s, parsed), parsed, s)
	}
	// And YAML marshalling reads back through Parse too.
	ydata, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if parsed, err := Parse(ydata, "out.yaml"); err != nil || !reflect.DeepEqual(parsed, s) {
		t.Errorf("Parse(yaml.Marshal(s)): %v, changes %v\n%s", err, Changes(s, parsed), ydata)
	}
}
