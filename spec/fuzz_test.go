package spec

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives JSON marshalling and parsing again unchanged.
func FuzzParse(f *testing.F) {
	if web, err := os.ReadFile("../examples/web.yaml"); err == nil {
		f.Add(string(web))
	}
	for _, seed := range []string{
		"name: web\nimage: busybox\n",
		`{"name": "web", "image": "busybox", "replicas": 0, "stop": {"grace": "0s"}}`,
		"name: web\nimage: busybox\nresources: {cpu: 0.5, memory: 1e9}\ncap_add: [net_admin]\n",
		"name: web\nimage: busybox\nports: [{name: a, port: 1, host_port: 2, protocol: udp}]\nhealth: {tcp: {port: a}, interval: 150ms}\n",
		"name: web\nimage: busybox\nenv: &e {A: \"\\x00\"}\nlabels: *e\n",
		"name: web\nimage: busybox\nhealth: {exec: {command: [true]}, grace: 1m}\ninit: no\nuser: \"1000:1000\"\n",
		"a: &a [x, x]\nb: &b [*a, *a]\n",
		"name: x\n---\nname: y\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse([]byte(in), "fuzz.yaml")
		if err != nil {
			if s != nil {
				t.Fatalf("Parse returned both a spec and an error: %v", err)
			}
			if _, ok := AsValidationError(err); !ok {
				t.Fatalf("Parse error is %T, want *ValidationError: %v", err, err)
			}
			return
		}
		if verr := s.Validate(); verr != nil {
			t.Fatalf("Parse accepted a spec that Validate rejects: %v", verr)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse(data, "again.json")
		if err != nil {
			t.Fatalf("parse of marshalled spec %s: %v", data, err)
		}
		if c := Changes(s, again); len(c) > 0 {
			t.Fatalf("round trip through %s changed %v", data, c)
		}
		var decoded Service
		if err := json.Unmarshal(data, &decoded); err != nil {
			t.Fatalf("json.Unmarshal of %s: %v", data, err)
		}
		if c := Changes(s, &decoded); len(c) > 0 {
			t.Fatalf("encoding/json round trip through %s changed %v", data, c)
		}
	})
}

// FuzzParseBytes checks that ParseBytes never panics and that String reads
// back to the same value.
func FuzzParseBytes(f *testing.F) {
	for _, seed := range []string{"0", "64Mi", "1.5Gi", "1G", "1e3", "8Ei", "9223372036854775807", "0.5Ki", "1k", "-1", "1.1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		b, err := ParseBytes(in)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseBytes(%q) = %d, negative", in, b)
		}
		again, err := ParseBytes(b.String())
		if err != nil || again != b {
			t.Fatalf("ParseBytes(%q) = %d; String %q reads back as %d, %v", in, b, b.String(), again, err)
		}
		var j Bytes
		data, _ := json.Marshal(b)
		if err := json.Unmarshal(data, &j); err != nil || j != b {
			t.Fatalf("JSON %s of %d reads back as %d, %v", data, b, j, err)
		}
	})
}

// FuzzParseCPU checks that ParseCPU never panics and that String reads back
// to the same value.
func FuzzParseCPU(f *testing.F) {
	for _, seed := range []string{"0", "250m", "0.5", "1", "2.25", "1e1", "0.0001", "-1", "9223372036854775807m"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCPU(in)
		if err != nil {
			return
		}
		if c < 0 {
			t.Fatalf("ParseCPU(%q) = %d, negative", in, c)
		}
		again, err := ParseCPU(c.String())
		if err != nil || again != c {
			t.Fatalf("ParseCPU(%q) = %d; String %q reads back as %d, %v", in, c, c.String(), again, err)
		}
		var j MilliCPU
		data, _ := json.Marshal(c)
		if err := json.Unmarshal(data, &j); err != nil || j != c {
			t.Fatalf("JSON %s of %d reads back as %d, %v", data, c, j, err)
		}
	})
}
