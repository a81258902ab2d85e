package worker

import (
	"net"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/network"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// A fixed host_port that a host program listens on (sshd, gantry's own
// endpoint) is refused instead of being hijacked by the instance's DNAT
// rule; a port the instance published before is kept without a probe.
func TestAllocPortsRefusesPortsInUse(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	w := &Worker{ports: map[string]string{}, cfg: Config{PortMin: 40000, PortMax: 40999}}
	want := []network.PortMapping{{Name: "http", ContainerPort: 80, HostPort: busy}}
	if _, err := w.allocPorts("web-0-000001", want, nil); !errdefs.IsConflict(err) {
		t.Errorf("host_port %d with a listener: err = %v, want a conflict", busy, err)
	}
	got, err := w.allocPorts("web-0-000001", want, map[string]int{"http": busy})
	if err != nil || len(got) != 1 || got[0].HostPort != busy {
		t.Errorf("port the instance already published: %v, %v", got, err)
	}
}

// A dynamic port never takes a fixed host_port of another instance placed
// on this node that has not published it yet.
func TestAllocPortsSkipsReservedFixedPorts(t *testing.T) {
	ctx := t.Context()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fixed := state.Service{Name: "fixed", Version: 1, Spec: spec.Service{Name: "fixed", Image: "busybox:1", Replicas: 1,
		Ports: []spec.Port{{Name: "http", Port: 80, HostPort: 40000}}}}
	if _, err := st.Apply(ctx, state.PutService{Service: fixed}, state.PutInstance{Instance: state.Instance{
		ID: "fixed-0-000001", Service: "fixed", SpecVersion: 1, Node: "n1", Desired: state.DesiredRun}}); err != nil {
		t.Fatal(err)
	}
	w := &Worker{ports: map[string]string{}, cfg: Config{NodeID: "n1", Store: st, PortMin: 40000, PortMax: 40001}}
	got, err := w.allocPorts("dyn-0-000001", []network.PortMapping{{Name: "http", ContainerPort: 8080}}, nil)
	if err != nil || len(got) != 1 || got[0].HostPort != 40001 {
		t.Fatalf("dynamic port = %v, %v; want 40001, skipping 40000 (fixed-0's host_port)", got, err)
	}
	if _, err := w.allocPorts("dyn-0-000002", []network.PortMapping{{Name: "http", ContainerPort: 8080}}, nil); err == nil {
		t.Error("a third port from a range of two, one of them reserved: no error")
	}
}
