// Package intent compiles a structured description of what a user wants to
// run (a web service, a worker, a batch job; how available, how exposed,
// how loaded, within what budget) into a concrete service spec, with a
// plain-language explanation of every choice it made. It is pure and
// deterministic: the same intent always gives the same spec and the same
// explanation, without I/O and without a model.
package intent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// Kind is the kind of workload.
type Kind string

// Workload kinds.
const (
	Web    Kind = "web"    // long-running, serves on a port
	Worker Kind = "worker" // long-running, no port (consumes a queue, ...)
	Batch  Kind = "batch"  // runs to completion
	Cron   Kind = "cron"   // runs on a schedule (not supported yet)
)

// Availability says how much downtime is acceptable.
type Availability string

// Availability levels.
const (
	Standard Availability = "standard"
	High     Availability = "high"
)

// Exposure says who may reach a web service.
type Exposure string

// Exposure levels.
const (
	Internal Exposure = "internal"
	Public   Exposure = "public"
)

// Load levels accepted in Intent.Load besides a rate such as "250rps".
const (
	LoadLow    = "low"
	LoadMedium = "medium"
	LoadHigh   = "high"
)

// Intent is what a user wants to run. Only Kind, Name and Image (and Port
// for kind web) are required; everything else has a documented default.
type Intent struct {
	Kind    Kind              `json:"kind"`
	Name    string            `json:"name"`
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Port is the port a web service listens on inside its container.
	Port int `json:"port,omitempty"`
	// HealthPath, for kind web, makes the health check an HTTP GET of this
	// path (2xx/3xx is healthy) instead of a TCP connect.
	HealthPath   string       `json:"health_path,omitempty"`
	Availability Availability `json:"availability,omitempty"` // default standard
	Exposure     Exposure     `json:"exposure,omitempty"`     // default internal
	// Load is low, medium or high, or for web and worker a rate such as
	// "250rps" or "250/s". Default low.
	Load   string `json:"load,omitempty"`
	Budget Budget `json:"budget,omitempty"`
}

// Budget bounds what the compiled service may reserve in total (all
// replicas together). Zero fields mean no limit.
type Budget struct {
	MaxCPUMillis int64  `json:"max_cpu_millis,omitempty"`
	MaxMemory    string `json:"max_memory,omitempty"` // a size such as "1Gi"
	MaxReplicas  int    `json:"max_replicas,omitempty"`
}

// Problem is one thing wrong with an intent.
type Problem struct {
	// Field is the intent field, e.g. "port" or "budget.max_memory"; empty
	// for problems with the input as a whole.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(p.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Error lists every problem found in an intent. It is in the
// errdefs.ErrInvalid category.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid intent: " + strings.Join(parts, "; ")
}

// Is puts Error in the errdefs.ErrInvalid category.
func (e *Error) Is(target error) bool { return target == errdefs.ErrInvalid }

// MaxInputBytes bounds the JSON text Decode accepts.
const MaxInputBytes = 64 << 10

// fieldNames are the JSON names Decode accepts, for typo hints.
var fieldNames = []string{"kind", "name", "image", "command", "env", "port", "health_path",
	"availability", "exposure", "load", "budget", "max_cpu_millis", "max_memory", "max_replicas"}

// Decode reads an intent from JSON text: one object, no unknown fields, at
// most MaxInputBytes. Errors are *Error values naming the field.
func Decode(data []byte) (Intent, error) {
	var in Intent
	if len(data) > MaxInputBytes {
		return in, problem("", fmt.Sprintf("input is %d bytes, more than the %d accepted", len(data), MaxInputBytes), "an intent is a small JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Intent{}, decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Intent{}, problem("", "unexpected data after the intent object", "send exactly one JSON object")
	}
	return in, nil
}

func problem(field, msg, hint string) *Error {
	return &Error{Problems: []Problem{{Field: field, Message: msg, Hint: hint}}}
}

// decodeProblem turns an encoding/json error into a Problem naming the field.
func decodeProblem(err error) *Error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return problem("", fmt.Sprintf("not valid JSON at byte %d: %v", syn.Offset, syn), "send a JSON object such as {\"kind\":\"web\",\"name\":\"web\",\"image\":\"nginx:1.27\",\"port\":80}")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return problem("", fmt.Sprintf("must be a JSON object, got %s", typ.Value), "send a JSON object with kind, name and image")
		}
		return problem(field, fmt.Sprintf("must be %s, got %s", jsonType(typ.Type.Kind().String()), typ.Value), "")
	case errors.Is(err, io.EOF):
		return problem("", "empty input", "send a JSON object with kind, name and image")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		hint := "known fields: " + strings.Join(fieldNames, ", ")
		if m := closest(name, fieldNames); m != "" {
			hint = "did you mean " + m + "?"
		}
		return problem(name, "unknown field", hint)
	}
	return problem("", strings.TrimPrefix(msg, "json: "), "send a JSON object with kind, name and image")
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "slice":
		return "a list"
	case "map", "struct":
		return "an object"
	}
	return "a " + goKind
}

// closest returns the candidate within a small edit distance of s, or "".
func closest(s string, candidates []string) string {
	s = strings.ToLower(s)
	if len(s) > 64 {
		return ""
	}
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := spec.EditDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(3, len(s)/3))
	if len(s) >= 3 {
		limit = max(limit, 2) // a swapped pair of letters is two edits
	}
	if bestD <= limit {
		return best
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
