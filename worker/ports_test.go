package worker

import (
	"net"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/network"
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
