package state

import (
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// stampDownSince sets n.DownSince when n is put as down: the time of an
// earlier down record of the same node is kept (so repeated down writes
// do not restart a service's disconnect tolerance), else the time given in
// the op, else the entry's time. A node put in any other status has none.
func stampDownSince(n, old *Node, now time.Time) {
	if n.Status != NodeDown {
		n.DownSince = time.Time{}
		return
	}
	switch {
	case old != nil && old.Status == NodeDown && !old.DownSince.IsZero():
		n.DownSince = old.DownSince
	case n.DownSince.IsZero():
		n.DownSince = now
	}
}

// SameSpecForInstances reports whether instances running spec a can go on
// running spec b unchanged: the two differ at most in replicas and in
// disconnect, which only the controller reads. A deploy that changes only
// those (say, a longer replace_after) makes a new version but moves the
// live instances to it instead of rolling them.
func SameSpecForInstances(a, b spec.Service) bool {
	a.Disconnect, b.Disconnect = spec.Disconnect{}, spec.Disconnect{}
	return sameSpecBesidesReplicas(a, b)
}
