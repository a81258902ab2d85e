package scheduler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// A down node is never a candidate, whatever room it has, and a placement
// failure says since when it is down.
func TestPlaceSkipsDownNodes(t *testing.T) {
	since := time.Date(2026, 12, 3, 12, 0, 1, 0, time.UTC)
	nodes := []Node{
		{ID: "a", Ready: false, DownSince: since, CPU: 64000, Memory: 256 << 30},
		{ID: "b", Ready: true, CPU: 1000, Memory: 1 << 30},
	}
	usage := map[string]*Usage{}
	for i := 0; i < 4; i++ {
		id, err := Place(nodes, usage, Request{Service: "web", CPU: 250})
		if err != nil || id != "b" {
			t.Fatalf("placement %d: %q, %v; want the ready node b", i, id, err)
		}
	}
	_, err := Place(nodes, usage, Request{Service: "web", CPU: 250})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("full ready node and a down one: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "a: down since 2026-12-03T12:00:01Z") {
		t.Errorf("error does not name the down node: %v", err)
	}
}
