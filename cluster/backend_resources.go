package cluster

import (
	"context"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

var _ mcp.ResourceSource = (*Backend)(nil)

// RecentEvents returns at most limit of the cluster's newest events, oldest
// first.
func (b *Backend) RecentEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error) {
	evs := b.Store.Events(state.EventFilter{Limit: limit})
	out := make([]api.ClusterEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, api.ClusterEvent{Seq: e.Seq, Time: e.Time, Service: e.Service, Instance: e.Instance,
			Node: e.Node, Type: e.Type, Message: e.Message})
	}
	return out, nil
}

// Changed returns a channel that is closed when the next change is applied
// to the state store.
func (b *Backend) Changed() <-chan struct{} { return b.Store.Notify() }
