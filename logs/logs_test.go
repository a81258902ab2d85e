package logs

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "container.log")

	if rotated, err := Rotate(p, 10, 2); rotated || err != nil {
		t.Fatalf("missing file: %v %v", rotated, err)
	}
	write(t, p, "short\n")
	if rotated, err := Rotate(p, 10, 2); rotated || err != nil {
		t.Fatalf("small file: %v %v", rotated, err)
	}
	write(t, p, "first generation\n")
	if rotated, err := Rotate(p, 10, 2); !rotated || err != nil {
		t.Fatalf("Rotate = %v %v", rotated, err)
	}
	if got := read(t, p); got != "" {
		t.Errorf("live file after rotation = %q", got)
	}
	if got := read(t, p+".1"); got != "first generation\n" {
		t.Errorf(".1 = %q", got)
	}
	st, _ := os.Stat(p + ".1")
	if st.Mode().Perm() != 0o640 {
		t.Errorf(".1 mode %v, want the live file's 0640", st.Mode().Perm())
	}
	for _, gen := range []string{"second generation\n", "third generation\n"} {
		write(t, p, gen)
		if _, err := Rotate(p, 10, 2); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(t, p+".1"); got != "third generation\n" {
		t.Errorf(".1 = %q", got)
	}
	if got := read(t, p+".2"); got != "second generation\n" {
		t.Errorf(".2 = %q", got)
	}
	if _, err := os.Stat(p + ".3"); !os.IsNotExist(err) {
		t.Errorf(".3 exists with keep 2: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("files left: %v", entries)
	}

	write(t, p, "only truncate\n")
	if rotated, err := Rotate(p, 1, 0); !rotated || err != nil {
		t.Fatalf("keep 0: %v %v", rotated, err)
	}
	if got := read(t, p); got != "" {
		t.Errorf("keep 0 left %q", got)
	}
	if got := read(t, p+".1"); got != "third generation\n" {
		t.Errorf("keep 0 touched .1: %q", got)
	}
	if _, err := Rotate(p, 0, 1); !errdefs.IsInvalid(err) {
		t.Errorf("maxBytes 0: %v", err)
	}
}

// TestRotateWhileWriting appends numbered lines with O_APPEND (as a
// container does) while rotating often. Every line is found in order; lines
// may only be missing at the end of a rotated copy (the copy-truncate
// window), where the last line may also be cut.
func TestRotateWhileWriting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "container.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	const keep = 400
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written int
	wg.Add(1)
	go func() {
		defer wg.Done()
		pad := strings.Repeat("x", 40)
		for i := 0; ; i++ {
			select {
			case <-stop:
				written = i
				return
			default:
			}
			if _, err := fmt.Fprintf(w, "line %08d %s\n", i, pad); err != nil {
				t.Errorf("write: %v", err)
				written = i
				return
			}
			if i%64 == 63 {
				time.Sleep(10 * time.Microsecond) // a fast, not a pathological, writer
			}
		}
	}()
	rotations := 0
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) && rotations < keep-1 {
		rotated, err := Rotate(p, 4096, keep)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if rotated {
			rotations++
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if rotations < 5 {
		t.Fatalf("only %d rotations happened", rotations)
	}

	// Oldest first: path.rotations ... path.1, path.
	var files []string
	for i := rotations; i >= 1; i-- {
		files = append(files, fmt.Sprintf("%s.%d", p, i))
	}
	files = append(files, p)
	next, lost, cut := 0, 0, 0
	for fi, name := range files {
		data := read(t, name)
		lines := strings.SplitAfter(data, "\n")
		for li, line := range lines {
			if line == "" {
				continue
			}
			last := li == len(lines)-1 || (li == len(lines)-2 && lines[len(lines)-1] == "")
			var seq int
			if _, err := fmt.Sscanf(line, "line %08d ", &seq); err != nil || len(line) != 55 {
				if last && fi < len(files)-1 && !strings.HasSuffix(line, "\n") {
					cut++ // a write cut by the truncate: allowed at a copy's end
					continue
				}
				t.Fatalf("%s: malformed line %q", name, line)
			}
			if seq < next {
				t.Fatalf("%s: line %d after %d: duplicated or reordered", name, seq, next-1)
			}
			if seq > next {
				if li != 0 || fi == 0 {
					t.Fatalf("%s: lines %d..%d missing inside a file", name, next, seq-1)
				}
				lost += seq - next
			}
			next = seq + 1
		}
	}
	if next != written {
		t.Errorf("last line found %d, writer wrote %d", next-1, written-1)
	}
	t.Logf("%d lines, %d rotations, %d lines lost and %d cut in copy-truncate windows", written, rotations, lost, cut)
	if lost > written/4 {
		t.Errorf("lost %d of %d lines: the window is too wide", lost, written)
	}
}

func TestTailAcrossRotations(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.log")
	write(t, p+".2", "a1\na2\na3\n")
	write(t, p+".1", "b1\nb2\n")
	write(t, p, "c1\nc2")

	for _, tc := range []struct {
		n, max int
		want   []string
		trunc  bool
	}{
		{1, 0, []string{"c2"}, false},
		{2, 0, []string{"c1", "c2"}, false},
		{3, 0, []string{"b2", "c1", "c2"}, false},
		{6, 0, []string{"a2", "a3", "b1", "b2", "c1", "c2"}, false},
		{100, 0, []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2"}, false},
		{0, 0, []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2"}, false},
		{100, 9, []string{"b2", "c1", "c2"}, true},
		{3, 9, []string{"b2", "c1", "c2"}, false},
		{0, 8, []string{"c1", "c2"}, true},
		{2, 1, []string{""}, true},
	} {
		got, trunc, err := Tail(p, tc.n, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) || trunc != tc.trunc {
			t.Errorf("Tail(n=%d, max=%d) = %q, %v; want %q, %v", tc.n, tc.max, got, trunc, tc.want, tc.trunc)
		}
	}

	// The live file missing mid-rotation: the copies still answer.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got, _, err := Tail(p, 1, 0); err != nil || !reflect.DeepEqual(got, []string{"b2"}) {
		t.Errorf("without the live file: %q %v", got, err)
	}
	if _, _, err := Tail(filepath.Join(dir, "nope.log"), 10, 0); !errdefs.IsNotFound(err) {
		t.Errorf("missing log: %v", err)
	}
	empty := filepath.Join(dir, "empty.log")
	write(t, empty, "")
	if got, trunc, err := Tail(empty, 10, 0); err != nil || len(got) != 0 || trunc {
		t.Errorf("empty log: %q %v %v", got, trunc, err)
	}
}

func TestTailLongLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.log")
	long := strings.Repeat("0123456789", 1000)
	write(t, p, "before\n"+long+"\n")
	got, trunc, err := Tail(p, 5, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !trunc || len(got) != 1 || got[0] != long[len(long)-99:] {
		t.Errorf("long line: %d lines, first %d bytes, truncated %v", len(got), len(got[0]), trunc)
	}
}

// TestTailBigFileReadsOnlyTheEnd checks Tail on a large log is quick and
// right (it reads backwards, not the whole file).
func TestTailBigFileReadsOnlyTheEnd(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.log")
	var b bytes.Buffer
	for i := 0; i < 300000; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	write(t, p, b.String())
	got, trunc, err := Tail(p, 3, 0)
	if err != nil || trunc {
		t.Fatal(err, trunc)
	}
	if want := []string{"line 299997", "line 299998", "line 299999"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// referenceTail is Tail's contract written the slow, obvious way.
func referenceTail(files []string, n, maxBytes int) ([]string, bool) {
	all := strings.Join(files, "")
	if all == "" {
		return []string{}, false
	}
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	size, first := 0, len(lines)
	for first > 0 && size+len(lines[first-1])+1 <= maxBytes {
		size += len(lines[first-1]) + 1
		first--
	}
	if first == len(lines) {
		l := lines[len(lines)-1]
		return []string{l[max(0, len(l)-(maxBytes-1)):]}, true
	}
	return lines[first:], first > 0
}

func TestTailMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	dir := t.TempDir()
	for iter := 0; iter < 500; iter++ {
		p := filepath.Join(dir, "c"+strconv.Itoa(iter)+".log")
		nfiles := 1 + rng.Intn(4)
		contents := make([]string, nfiles) // oldest first
		for i := range contents {
			var b strings.Builder
			for j := rng.Intn(6); j > 0; j-- {
				b.WriteString(strings.Repeat(string(rune('a'+rng.Intn(26))), rng.Intn(12)))
				b.WriteByte('\n')
			}
			contents[i] = b.String()
			name := p
			if k := nfiles - 1 - i; k > 0 {
				name = fmt.Sprintf("%s.%d", p, k)
			}
			write(t, name, contents[i])
		}
		n := rng.Intn(8)
		maxBytes := 1 + rng.Intn(60)
		got, trunc, err := Tail(p, n, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		want, wantTrunc := referenceTail(contents, n, maxBytes)
		if !reflect.DeepEqual(got, want) || trunc != wantTrunc {
			t.Fatalf("files %q n=%d max=%d: got %q %v, want %q %v", contents, n, maxBytes, got, trunc, want, wantTrunc)
		}
	}
}

// TestRotateBoundedAgainstFastWriter: a writer faster than the copy (a
// container printing in a loop) must not be chased forever: the rotation
// ends, its copy stays within copyLimit and starts with a whole line, and
// a file already far over the limit keeps only its newest part.
func TestRotateBoundedAgainstFastWriter(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "container.log")
	const maxBytes = 1 << 20
	limit := copyLimit(maxBytes)

	// A file three times the limit, written before the rotation.
	line := strings.Repeat("y", 63) + "\n"
	big := strings.Repeat(line, int(3*limit)/len(line))
	write(t, p, "oldest\n"+big+"newest\n")
	if rotated, err := Rotate(p, maxBytes, 1); !rotated || err != nil {
		t.Fatalf("Rotate = %v %v", rotated, err)
	}
	got := read(t, p+".1")
	if int64(len(got)) > limit || !strings.HasSuffix(got, "newest\n") || strings.Contains(got, "oldest") || !strings.HasPrefix(got, line) {
		t.Errorf("rotated copy of an oversized file: %d bytes (limit %d), starts %q, ends %q", len(got), limit, got[:min(len(got), 70)], got[max(0, len(got)-10):])
	}

	// A writer appending as fast as it can during the rotations.
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	chunk := []byte(strings.Repeat(line, 1024))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 5; i++ {
		for {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() >= 2*limit {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		done := make(chan error, 1)
		go func() { _, err := Rotate(p, maxBytes, 2); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Rotate chases the writer and does not end")
		}
		st, err := os.Stat(p + ".1")
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > limit {
			t.Fatalf("rotation %d: copy is %d bytes, over the limit %d", i, st.Size(), limit)
		}
	}
}
