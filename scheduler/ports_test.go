package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestPlaceFixedHostPortOncePerNode(t *testing.T) {
	nodes := []Node{{ID: "a", Ready: true}, {ID: "b", Ready: true}}
	usage := map[string]*Usage{}
	req := Request{Service: "web", HostPorts: []string{PortKey(8080, "")}}
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		id, err := Place(nodes, usage, req)
		if err != nil {
			t.Fatalf("placement %d: %v", i, err)
		}
		got[id] = true
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("want one instance per node, got %v", got)
	}
	_, err := Place(nodes, usage, req)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("third instance: want ErrUnavailable, got %v", err)
	}
	for _, want := range []string{"a: host port 8080/tcp", "b: host port 8080/tcp", `"web"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reason %q does not name %q", err, want)
		}
	}
	var h *errdefs.HintError
	if !errors.As(err, &h) || !strings.Contains(h.Hint, "host_port") {
		t.Errorf("want a hint about host_port, got %v", err)
	}
	// Another protocol or port is another resource.
	if _, err := Place(nodes, usage, Request{Service: "dns", HostPorts: []string{PortKey(8080, "UDP")}}); err != nil {
		t.Errorf("8080/udp should still be free: %v", err)
	}
	// Once released the port can be taken again.
	ReleasePorts(usage, "a", "web", req.HostPorts)
	if id, err := Place(nodes, usage, req); err != nil || id != "a" {
		t.Fatalf("after release: got %q, %v", id, err)
	}
}

func TestHoldReleaseRoundTrip(t *testing.T) {
	usage := map[string]*Usage{}
	req := Request{Service: "web", CPU: 100, Memory: 1 << 20, HostPorts: []string{"80/tcp"}}
	Hold(usage, "a", req)
	Release(usage, "a", req)
	u := usage["a"]
	if u.CPU != 0 || u.Memory != 0 || u.Instances["web"] != 0 || len(u.HostPorts) != 0 {
		t.Fatalf("release left %+v", u)
	}
	Release(usage, "missing", req) // no panic on an unknown node
	// A port held by another service is not released by this one.
	HoldPorts(usage, "a", "db", []string{"80/tcp"})
	ReleasePorts(usage, "a", "web", []string{"80/tcp"})
	if usage["a"].HostPorts["80/tcp"] != "db" {
		t.Fatalf("web released db's port: %v", usage["a"].HostPorts)
	}
}

// TestPlaceNeverSharesAHostPort: whatever is placed, no node ends up with
// two instances publishing the same fixed host port, and a request is
// refused only when no ready node has room and its ports free.
func TestPlaceNeverSharesAHostPort(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 4).Draw(t, "nodes")
		var nodes []Node
		for i := 0; i < n; i++ {
			nodes = append(nodes, Node{ID: fmt.Sprintf("n%d", i), Ready: rapid.Bool().Draw(t, "ready"), CPU: 4000})
		}
		usage := map[string]*Usage{}
		held := map[string]map[string]bool{} // node -> port keys placed there
		steps := rapid.IntRange(1, 20).Draw(t, "steps")
		for i := 0; i < steps; i++ {
			var ports []string
			for _, p := range rapid.SliceOfNDistinct(rapid.IntRange(8000, 8003), 0, 2, rapid.ID).Draw(t, "ports") {
				ports = append(ports, PortKey(p, rapid.SampledFrom([]string{"tcp", "udp"}).Draw(t, "proto")))
			}
			req := Request{Service: rapid.SampledFrom([]string{"web", "api"}).Draw(t, "service"), CPU: 500, HostPorts: ports}
			id, err := Place(nodes, usage, req)
			if err != nil {
				for _, nd := range nodes {
					u := usage[nd.ID]
					room := u == nil || u.CPU+req.CPU <= nd.CPU
					free := true
					for _, k := range ports {
						free = free && !held[nd.ID][k]
					}
					if nd.Ready && room && free {
						t.Fatalf("refused %+v although node %s could take it: %v", req, nd.ID, err)
					}
				}
				continue
			}
			if held[id] == nil {
				held[id] = map[string]bool{}
			}
			for _, k := range ports {
				if held[id][k] {
					t.Fatalf("node %s got a second instance on host port %s", id, k)
				}
				held[id][k] = true
			}
		}
	})
}
