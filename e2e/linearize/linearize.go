// Package linearize records the operations concurrent clients make on a
// Gantry cluster and checks with porcupine that the history is
// linearizable: that some order of the operations, each taking effect at
// one instant between its call and its return, explains every result.
//
// The model is a register per key: the key is a service name, a write is
// a deploy or scale_service setting its desired replicas to a value, a
// read is get_service's desired replicas (Absent when there is no such
// service). A write whose outcome the client does not know (an error or a
// timeout: it may have been committed) may take effect at any time after
// its call; a write refused for certain (ErrNotApplied) and a failed read
// tell nothing and are dropped.
package linearize

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Absent is the value of a key that was never written (a read of a
// service that does not exist).
const Absent = -1

// Kind is what an operation does.
type Kind int

// The kinds of operation.
const (
	Write Kind = iota
	Read
)

// Input is an operation's call: a write of Value to Key or a read of Key.
type Input struct {
	Kind  Kind
	Key   string
	Value int // for Write
}

// Output is what a read returned; for a write it is unused.
type Output struct {
	Value int
	// Unknown marks a write whose outcome the client does not know.
	Unknown bool
}

// Model is the per-key register, partitioned by key so that the checker
// handles each key's history on its own.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return Absent },
	Step: func(state, input, output any) (bool, any) {
		in := input.(Input)
		if in.Kind == Write {
			return true, in.Value
		}
		return output.(Output).Value == state.(int), state
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		switch {
		case in.Kind == Write && out.Unknown:
			return fmt.Sprintf("set(%s, %d) -> ?", in.Key, in.Value)
		case in.Kind == Write:
			return fmt.Sprintf("set(%s, %d)", in.Key, in.Value)
		default:
			return fmt.Sprintf("get(%s) -> %s", in.Key, describe(out.Value))
		}
	},
	DescribeState: func(state any) string { return describe(state.(int)) },
}

func describe(v int) string {
	if v == Absent {
		return "absent"
	}
	return fmt.Sprint(v)
}

// Recorder collects a history from concurrent clients. Its methods are
// safe for concurrent use.
type Recorder struct {
	start time.Time

	mu    sync.Mutex
	ops   []porcupine.Operation
	notes []porcupine.Annotation
}

// NewRecorder starts a history; times are measured from now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

func (r *Recorder) now() int64 { return int64(time.Since(r.start)) }

// ErrNotApplied marks (wrapped in fn's error) a write the server refused
// for certain, such as a conditional write found stale: Write drops it
// from the history, as it changed nothing.
var ErrNotApplied = errors.New("write not applied")

// Write records client's write of v to key, made by calling fn. An error
// from fn leaves the outcome unknown (the write may take effect at any
// time after its call) unless it wraps ErrNotApplied. fn's error is
// returned.
func (r *Recorder) Write(client int, key string, v int, fn func() error) error {
	call := r.now()
	err := fn()
	ret := r.now()
	out := Output{}
	if errors.Is(err, ErrNotApplied) {
		return err
	}
	if err != nil {
		ret, out.Unknown = math.MaxInt64, true
	}
	r.add(porcupine.Operation{ClientId: client, Input: Input{Kind: Write, Key: key, Value: v}, Call: call, Output: out, Return: ret})
	return err
}

// Read records client's read of key, made by calling fn, which returns
// the value (Absent when there is none). A read that fails is not kept.
func (r *Recorder) Read(client int, key string, fn func() (int, error)) (int, error) {
	call := r.now()
	v, err := fn()
	ret := r.now()
	if err == nil {
		r.add(porcupine.Operation{ClientId: client, Input: Input{Kind: Read, Key: key}, Call: call, Output: Output{Value: v}, Return: ret})
	}
	return v, err
}

// Add records an operation made outside Write and Read (times from
// Since).
func (r *Recorder) Add(op porcupine.Operation) { r.add(op) }

// Since is the time, in the history's clock, of t.
func (r *Recorder) Since(t time.Time) int64 { return int64(t.Sub(r.start)) }

func (r *Recorder) add(op porcupine.Operation) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Note marks an instant of the test on the visualization's timeline, on a
// row of its own named tag (e.g. "faults", "SIGKILL leader s1").
func (r *Recorder) Note(tag, description string) {
	now := r.now()
	r.mu.Lock()
	r.notes = append(r.notes, porcupine.Annotation{Tag: tag, Start: now, Description: description, BackgroundColor: "#f6c0c0"})
	r.mu.Unlock()
}

// Notes returns a copy of the notes recorded so far.
func (r *Recorder) Notes() []porcupine.Annotation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Annotation(nil), r.notes...)
}

// History returns a copy of the operations recorded so far.
func (r *Recorder) History() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}

// Counts returns how many writes, reads and writes of unknown outcome the
// history holds.
func Counts(h []porcupine.Operation) (writes, reads, unknown int) {
	for _, op := range h {
		if op.Input.(Input).Kind == Read {
			reads++
			continue
		}
		writes++
		if op.Output.(Output).Unknown {
			unknown++
		}
	}
	return writes, reads, unknown
}

// Check checks the history against Model within timeout (0: no limit; a
// check that runs out of time answers porcupine.Unknown). Unless the
// history is linearizable, and vizPath is set, it writes porcupine's HTML
// visualization of the history, its longest partial linearizations and
// the notes to vizPath.
func Check(h []porcupine.Operation, timeout time.Duration, vizPath string, notes ...porcupine.Annotation) (porcupine.CheckResult, error) {
	res, info := porcupine.CheckOperationsVerbose(Model, h, timeout)
	if res == porcupine.Ok || vizPath == "" {
		return res, nil
	}
	info.AddAnnotations(notes)
	if err := porcupine.VisualizePath(Model, info, vizPath); err != nil {
		return res, fmt.Errorf("linearize: write the visualization: %w", err)
	}
	return res, nil
}

// VizDirEnv names a directory where CheckT keeps visualizations (they are
// written under the test's temporary directory, removed when it ends,
// otherwise).
const VizDirEnv = "GANTRY_LINEARIZE_DIR"

// CheckT checks the recorded history for a test: an illegal history fails
// it, an unknown result (the check ran out of time) is logged; either way
// the path of the visualization is logged.
func CheckT(t testing.TB, r *Recorder, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	h := r.History()
	dir := os.Getenv(VizDirEnv)
	if dir == "" {
		dir = t.TempDir()
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.html", name, time.Now().UnixNano()))
	res, err := Check(h, timeout, path, r.Notes()...)
	if err != nil {
		t.Error(err)
	}
	w, rd, unk := Counts(h)
	switch res {
	case porcupine.Illegal:
		t.Errorf("the history of %d writes (%d of unknown outcome) and %d reads is not linearizable; visualization: %s (set %s to keep it)",
			w, unk, rd, path, VizDirEnv)
	case porcupine.Unknown:
		t.Logf("linearizability of %d writes and %d reads not decided within %v; visualization: %s", w, rd, timeout, path)
	default:
		t.Logf("linearizable: %d writes (%d of unknown outcome), %d reads", w, unk, rd)
	}
	return res
}
