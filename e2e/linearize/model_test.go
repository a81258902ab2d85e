package linearize

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func w(client int, key string, v int, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Kind: Write, Key: key, Value: v}, Output: Output{}, Call: call, Return: ret}
}

func wUnknown(client int, key string, v int, call int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Kind: Write, Key: key, Value: v}, Output: Output{Unknown: true}, Call: call, Return: math.MaxInt64}
}

func r(client int, key string, v int, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Kind: Read, Key: key}, Output: Output{Value: v}, Call: call, Return: ret}
}

func TestModel(t *testing.T) {
	cases := []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"empty", nil, porcupine.Ok},
		{"read of a key never written", []porcupine.Operation{r(0, "web", Absent, 0, 1)}, porcupine.Ok},
		{"sequential", []porcupine.Operation{w(0, "web", 3, 0, 10), r(1, "web", 3, 20, 30), w(1, "web", 5, 40, 50), r(0, "web", 5, 60, 70)}, porcupine.Ok},
		// A read concurrent with a write may see either value.
		{"concurrent read sees the new value", []porcupine.Operation{w(0, "web", 1, 0, 10), w(0, "web", 2, 20, 40), r(1, "web", 2, 25, 30)}, porcupine.Ok},
		{"concurrent read sees the old value", []porcupine.Operation{w(0, "web", 1, 0, 10), w(0, "web", 2, 20, 40), r(1, "web", 1, 25, 30)}, porcupine.Ok},
		// Two concurrent writes: readers after both must agree on one.
		{"concurrent writes, readers agree", []porcupine.Operation{w(0, "web", 1, 0, 30), w(1, "web", 2, 5, 25), r(2, "web", 1, 40, 50), r(3, "web", 1, 60, 70)}, porcupine.Ok},
		{"keys are independent", []porcupine.Operation{w(0, "a", 1, 0, 10), w(1, "b", 2, 0, 10), r(2, "a", 1, 20, 30), r(2, "b", 2, 20, 30)}, porcupine.Ok},
		// A write of unknown outcome may never take effect...
		{"unknown write not applied", []porcupine.Operation{w(0, "web", 1, 0, 10), wUnknown(1, "web", 9, 20), r(2, "web", 1, 100, 110)}, porcupine.Ok},
		// ...or take effect long after its call.
		{"unknown write applied late", []porcupine.Operation{w(0, "web", 1, 0, 10), wUnknown(1, "web", 9, 20), r(2, "web", 1, 100, 110), r(2, "web", 9, 200, 210)}, porcupine.Ok},

		{"stale read after a finished write", []porcupine.Operation{w(0, "web", 1, 0, 10), w(0, "web", 2, 20, 30), r(1, "web", 1, 40, 50)}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{w(0, "web", 1, 0, 10), r(1, "web", 7, 20, 30)}, porcupine.Illegal},
		{"lost acknowledged write", []porcupine.Operation{w(0, "web", 4, 0, 10), r(1, "web", Absent, 20, 30)}, porcupine.Illegal},
		{"readers disagree after concurrent writes", []porcupine.Operation{w(0, "web", 1, 0, 30), w(1, "web", 2, 5, 25), r(2, "web", 1, 40, 50), r(3, "web", 2, 60, 70), r(2, "web", 1, 80, 90)}, porcupine.Illegal},
		{"value goes back in time", []porcupine.Operation{w(0, "web", 1, 0, 10), wUnknown(1, "web", 9, 20), r(2, "web", 9, 100, 110), r(2, "web", 1, 200, 210)}, porcupine.Illegal},
		{"one bad key among good ones", []porcupine.Operation{w(0, "a", 1, 0, 10), r(1, "a", 1, 20, 30), w(0, "b", 1, 0, 10), r(1, "b", 2, 20, 30)}, porcupine.Illegal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			viz := filepath.Join(t.TempDir(), "viz.html")
			got, err := Check(c.h, 10*time.Second, viz)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("Check = %s, want %s", got, c.want)
			}
			b, err := os.ReadFile(viz)
			switch {
			case c.want == porcupine.Ok && err == nil:
				t.Error("a visualization was written for a linearizable history")
			case c.want == porcupine.Illegal && (err != nil || !strings.Contains(string(b), "<html")):
				t.Errorf("no HTML visualization of the illegal history: %v", err)
			}
		})
	}
}

func TestModelDescribes(t *testing.T) {
	if s := Model.DescribeOperation(Input{Kind: Write, Key: "web", Value: 3}, Output{}); s != "set(web, 3)" {
		t.Errorf("write: %q", s)
	}
	if s := Model.DescribeOperation(Input{Kind: Write, Key: "web", Value: 3}, Output{Unknown: true}); s != "set(web, 3) -> ?" {
		t.Errorf("unknown write: %q", s)
	}
	if s := Model.DescribeOperation(Input{Kind: Read, Key: "web"}, Output{Value: Absent}); s != "get(web) -> absent" {
		t.Errorf("read: %q", s)
	}
}

// The recorder keeps call and return times around each operation, marks
// failed writes as of unknown outcome and drops failed reads.
func TestRecorder(t *testing.T) {
	rec := NewRecorder()
	var wg sync.WaitGroup
	var mu sync.Mutex
	val := Absent
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if i%2 == 0 {
					_ = rec.Write(c, "web", c*100+i, func() error { mu.Lock(); val = c*100 + i; mu.Unlock(); return nil })
				} else {
					_, _ = rec.Read(c, "web", func() (int, error) { mu.Lock(); defer mu.Unlock(); return val, nil })
				}
			}
		}()
	}
	wg.Wait()
	boom := errors.New("timeout")
	if err := rec.Write(9, "web", 7, func() error { return boom }); err != boom {
		t.Errorf("Write returned %v, want fn's error", err)
	}
	refused := fmt.Errorf("%w: stale", ErrNotApplied)
	if err := rec.Write(9, "web", 8, func() error { return refused }); err != refused {
		t.Errorf("Write returned %v, want fn's error", err)
	}
	if _, err := rec.Read(9, "web", func() (int, error) { return 0, boom }); err != boom {
		t.Errorf("Read returned %v, want fn's error", err)
	}
	h := rec.History()
	writes, reads, unknown := Counts(h)
	if writes != 101 || reads != 100 || unknown != 1 {
		t.Errorf("Counts = %d writes, %d reads, %d unknown; want 101, 100, 1", writes, reads, unknown)
	}
	for _, op := range h {
		if op.Call > op.Return {
			t.Fatalf("operation returns before its call: %+v", op)
		}
	}
	rec.Note("faults", "nothing happened")
	if res := CheckT(t, rec, 10*time.Second); res != porcupine.Ok {
		t.Errorf("a mutex-guarded register: %s, want Ok", res)
	}

	// A read of a value nobody wrote, after everything: illegal, and the
	// visualization carries the note.
	rec.Add(r(0, "web", 12345, rec.Since(time.Now()), rec.Since(time.Now())+1))
	viz := filepath.Join(t.TempDir(), "viz.html")
	res, err := Check(rec.History(), 10*time.Second, viz, rec.Notes()...)
	if err != nil || res != porcupine.Illegal {
		t.Fatalf("Check with an impossible read: %s, %v; want Illegal", res, err)
	}
	if b, err := os.ReadFile(viz); err != nil || !strings.Contains(string(b), "nothing happened") {
		t.Errorf("the visualization lacks the note: %v", err)
	}
}
