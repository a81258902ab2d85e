package state

import "time"

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
