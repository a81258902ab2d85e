package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/state"
)

// ConsistencyHeader on a request to a server's MCP endpoint, with the value
// ConsistencyLinearizable, makes the reads of that request linearizable:
// they see every write acknowledged before the request arrived, on any
// server. Without it a server reads its own state, which on a follower may
// lag the leader by a few milliseconds.
const (
	ConsistencyHeader       = "Gantry-Consistency"
	ConsistencyLinearizable = "linearizable"
)

// readBarrierName is a service name no spec can have: the no-op write a
// follower's consistent read sends through the leader checks it is absent.
const readBarrierName = " read barrier "

// consistentReads wraps the MCP handler: a request that asks for
// linearizable reads waits for a read barrier first.
func (s *serverNode) consistentReads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get(ConsistencyHeader) == ConsistencyLinearizable {
			if err := s.readBarrier(r.Context()); err != nil {
				w.Header().Set("Retry-After", "1")
				http.Error(w, fmt.Sprintf("linearizable read: %v (retry, or send the request to another server)", err), http.StatusServiceUnavailable)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// readBarrier returns once this server has applied every write
// acknowledged before the call: on the leader through Barrier (it checks
// it still leads and waits for everything before it to be applied); on a
// follower by a no-op write committed through the leader, which orders
// after every acknowledged write, then waiting until it is applied here.
func (s *serverNode) readBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.st.IsLeader() {
		err := s.st.Barrier(ctx)
		if err == nil || !errors.Is(err, state.ErrNotLeader) {
			return err
		}
	}
	idx, err := s.st.Apply(ctx, state.ServiceAbsent{Name: readBarrierName})
	if err != nil {
		return err
	}
	for {
		ch := s.st.Notify()
		if s.st.Index() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("this server has not applied index %d yet (at %d): %w", idx, s.st.Index(), errdefs.ErrUnavailable)
		}
	}
}
