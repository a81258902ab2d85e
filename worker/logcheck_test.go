package worker

import (
	"testing"
	"time"
)

// A busy log is checked every logCheckMin; a quiet one backs off to
// logCheckMax, and a rotation brings the checks back to logCheckMin.
func TestNextLogCheck(t *testing.T) {
	d := logCheckMin
	var seen []time.Duration
	for i := 0; i < 6; i++ {
		d = nextLogCheck(d, false)
		seen = append(seen, d)
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("quiet delays = %v, want %v", seen, want)
		}
	}
	if got := nextLogCheck(logCheckMax, true); got != logCheckMin {
		t.Errorf("after a rotation: %v, want %v", got, logCheckMin)
	}
}
