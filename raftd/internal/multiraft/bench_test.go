package multiraft

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// benchCluster returns a 3-node in-process cluster with ranges user ranges
// and the store of the first range's leader.
func benchCluster(b *testing.B, ranges uint32) (*testCluster, []*kvpb.RangeDescriptor) {
	c := newTestCluster(b, 3, nil)
	descs := c.bootstrap(&kvpb.InitRequest{InitialRanges: ranges})
	c.waitLeaders(descs)
	return c, descs
}

// BenchmarkPut measures replicated puts (8-byte keys, 256-byte values)
// from parallel clients through the node holding each range's leader, on
// the in-memory engine: the cost of raft, scheduling and apply without
// disk or network.
func BenchmarkPut(b *testing.B) {
	for _, ranges := range []uint32{1, 16} {
		b.Run(fmt.Sprintf("ranges=%d", ranges), func(b *testing.B) {
			c, descs := benchCluster(b, ranges)
			value := make([]byte, 256)
			var n atomic.Uint64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					d := descs[1+int(i)%(len(descs)-1)]
					key := append(append([]byte(nil), d.GetStartKey()...), fmt.Sprintf("%07d", i%1000000)...)
					if err := c.do(ctx, func(ctx context.Context, s *Store) error {
						_, err := s.Put(ctx, &kvpb.PutRequest{Key: key, Value: value})
						return err
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			var syncs, snaps uint64
			for _, id := range c.ids {
				st := c.store(id).Stats()
				syncs += st.SyncWrites
				snaps += st.SnapshotsSent
			}
			b.ReportMetric(float64(syncs)/float64(b.N), "syncs/op")
			b.ReportMetric(float64(snaps), "snapshots")
			b.ReportMetric(float64(c.net.dropped.Load()), "dropped")
		})
	}
}

// BenchmarkPutSerial measures the latency of one client's puts on the
// leader: a proposal, the leader's and a follower's rounds, the commit
// round and the apply.
func BenchmarkPutSerial(b *testing.B) {
	c, descs := benchCluster(b, 1)
	s := c.store(c.leaderOf(descs[1].GetRangeId()))
	value := make([]byte, 256)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Put(ctx, &kvpb.PutRequest{Key: fmt.Appendf(nil, "\x01%07d", i), Value: value}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet measures linearizable gets on the leader (lease path).
func BenchmarkGet(b *testing.B) {
	c, descs := benchCluster(b, 1)
	ctx := context.Background()
	if err := c.put(ctx, "\x01key", "value"); err != nil {
		b.Fatal(err)
	}
	s := c.store(c.leaderOf(descs[1].GetRangeId()))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, &kvpb.GetRequest{Key: []byte("\x01key")}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.LeaseReads)/float64(st.LeaseReads+st.ReadIndexReads), "lease-fraction")
}
