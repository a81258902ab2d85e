package state

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterApply measures committed writes per second on a group of
// three servers over mutual TLS on loopback, each with its own raft.db:
// every write is appended and fsynced on the leader and a follower before
// it is acknowledged. "leader" writes go straight to the leader; "follower"
// writes are forwarded to it (in process, as the node RPC would). Writers
// run in parallel, so raft batches entries into shared appends.
func BenchmarkClusterApply(b *testing.B) {
	g := newGroup(b, 3)
	leader := g.leader(nil)
	apply(b, leader.store, PutService{Service: Service{Spec: webSpec("busybox:1", 1)}})
	for _, via := range []string{"leader", "follower"} {
		b.Run(via, func(b *testing.B) {
			s := leader.store
			if via == "follower" {
				s = g.follower(nil).store
			}
			var n atomic.Int64
			b.SetParallelism(8)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					op := PutInstance{Instance: Instance{ID: fmt.Sprintf("web-%s-%d", via, i), Service: "web", Slot: int(i)}}
					if _, err := s.Apply(context.Background(), op); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}
