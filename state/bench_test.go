package state

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApply measures single small writes, one at a time: each is a Raft
// entry appended and fsynced to raft.db, then applied to memdb. This is the
// state part of submit-to-running latency.
func BenchmarkApply(b *testing.B) {
	s := openStore(b, b.TempDir())
	apply(b, s, PutInstance{Instance: Instance{ID: "web-0", Service: "web", Node: "node-1"}})
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Apply(ctx, SetInstanceStatus{ID: "web-0", Status: InstanceStatus{State: StateRunning, PID: i}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "applies/s")
}

// BenchmarkApplyParallel measures many writers at once: raft batches their
// entries into shared appends and fsyncs.
func BenchmarkApplyParallel(b *testing.B) {
	s := openStore(b, b.TempDir())
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id := fmt.Sprintf("web-%d", i)
			if _, err := s.Apply(context.Background(), PutInstance{Instance: Instance{ID: id, Service: "web", Slot: int(i)}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "applies/s")
}

// BenchmarkEncodeDecode is the cost of the JSON log format for one small op.
func BenchmarkEncodeDecode(b *testing.B) {
	ops := []Op{SetInstanceStatus{ID: "web-0-3f9a2c", Status: InstanceStatus{State: StateRunning, PID: 4242, IP: "10.88.0.7", Ports: map[string]int{"http": 30001}, Healthy: true}}}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		data, err := encodeCommand(now, ops)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := decodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}
