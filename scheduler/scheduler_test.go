package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestPlaceSpreadsThenPacks(t *testing.T) {
	nodes := []Node{
		{ID: "a", Ready: true, CPU: 2000, Memory: 4 << 30},
		{ID: "b", Ready: true, CPU: 2000, Memory: 4 << 30},
		{ID: "c", Ready: false, CPU: 8000, Memory: 16 << 30},
	}
	usage := map[string]*Usage{"a": {CPU: 1000, Memory: 1 << 30}}
	got := map[string]int{}
	for i := 0; i < 4; i++ {
		id, err := Place(nodes, usage, Request{Service: "web", CPU: 250, Memory: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		got[id]++
	}
	if got["a"] != 2 || got["b"] != 2 || got["c"] != 0 {
		t.Fatalf("want 2/2 spread across ready nodes, got %v", got)
	}
	// Another service goes to the fullest node that fits (a: 1500m used).
	id, err := Place(nodes, usage, Request{Service: "db", CPU: 100, Memory: 1 << 20})
	if err != nil || id != "a" {
		t.Fatalf("bin-packing: got %q, %v", id, err)
	}
}

func TestPlaceNoRoom(t *testing.T) {
	nodes := []Node{{ID: "a", Ready: true, CPU: 1000, Memory: 1 << 30}}
	_, err := Place(nodes, map[string]*Usage{}, Request{Service: "big", CPU: 2000})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if _, err := Place(nil, map[string]*Usage{}, Request{Service: "x"}); err == nil {
		t.Fatal("no nodes should fail")
	}
}

// A drained or ineligible node is named as such, not as "not ready", and
// the hint says how to make it take instances again.
func TestPlaceMarkedNodes(t *testing.T) {
	nodes := []Node{{ID: "a", Ready: true, Unschedulable: "draining", CPU: 1000}, {ID: "b", Ready: true, Unschedulable: "ineligible", CPU: 1000}}
	_, err := Place(nodes, map[string]*Usage{}, Request{Service: "web", CPU: 100})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"a: draining, takes no new instances", "b: ineligible, takes no new instances", "gantry eligible NODE true"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "not ready") || strings.Contains(msg, "lower the service's resources") {
		t.Errorf("error blames readiness or resources: %s", msg)
	}
	nodes = append(nodes, Node{ID: "c", Ready: true, CPU: 1000})
	if id, err := Place(nodes, map[string]*Usage{}, Request{Service: "web", CPU: 100}); err != nil || id != "c" {
		t.Fatalf("the eligible node: got %q, %v", id, err)
	}
}

// A node without room says how much memory is reserved and asked in the
// units specs use, not in bytes.
func TestPlaceNoRoomInIECUnits(t *testing.T) {
	nodes := []Node{{ID: "a", Ready: true, CPU: 4000, Memory: 47 << 29}}
	usage := map[string]*Usage{"a": {Memory: 192 << 20}}
	_, err := Place(nodes, usage, Request{Service: "big", Memory: 500 << 30})
	if err == nil || !strings.Contains(err.Error(), "a: memory 192 MiB of 23.5 GiB reserved, 500 GiB asked") {
		t.Errorf("error = %v", err)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 64 << 20: "64 MiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}

func BenchmarkPlace(b *testing.B) {
	var nodes []Node
	for i := 0; i < 100; i++ {
		nodes = append(nodes, Node{ID: fmt.Sprintf("n%03d", i), Ready: true, CPU: 64000, Memory: 256 << 30})
	}
	usage := map[string]*Usage{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Place(nodes, usage, Request{Service: "web", CPU: 1, Memory: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
