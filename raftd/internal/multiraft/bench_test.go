package multiraft

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	for _, ranges := range []uint32{1, 16, 256} {
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

// BenchmarkIdleRanges measures what idle ranges cost once quiesced: heap
// bytes per replica and scheduler rounds and process CPU per second of
// idleness, on 3 in-process nodes (so each range has 3 replicas here).
// b.N is ignored: it sets up 2,000 ranges once.
func BenchmarkIdleRanges(b *testing.B) {
	const ranges = 2000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newTestCluster(b, 3, nil, func(c *Config) { c.TickInterval = 50 * time.Millisecond })
	var splits [][]byte
	for i := 1; i < ranges; i++ {
		splits = append(splits, []byte{byte(2 + i>>8), byte(i)})
	}
	c.bootstrap(&kvpb.InitRequest{SplitPoints: splits})
	b.StopTimer()
	allQuiet := func() bool {
		for _, id := range c.ids {
			for _, r := range c.store(id).Replicas() {
				if !r.quiesced.Load() {
					return false
				}
			}
		}
		return true
	}
	waitFor(b, 120*time.Second, "quiescence", allQuiet)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	replicas := 0
	for _, id := range c.ids {
		replicas += len(c.store(id).Replicas())
	}
	var ru0, ru1 syscall.Rusage
	rounds0 := c.store(1).Stats().Rounds
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	time.Sleep(2 * time.Second)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / 2
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(replicas), "heap-B/replica")
	b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/s")
	b.ReportMetric(float64(c.store(1).Stats().Rounds-rounds0)/2, "rounds/s")
	b.ReportMetric(float64(replicas), "replicas")
}

// BenchmarkPutLatencyDuringSplit measures put latency at 64 clients on one
// range (3 replicas of 4 nodes), steady, while the range splits (one
// split every 20 ms at a key among those written, so the writes land on
// both sides), and while a replica is added and removed in turn (a
// learner, its snapshot, its promotion, its removal), on the in-memory
// engine: what each adds to the tail (p50 and p99 in microseconds).
func BenchmarkPutLatencyDuringSplit(b *testing.B) {
	for _, mode := range []string{"steady", "split", "replica-add"} {
		b.Run("during="+mode, func(b *testing.B) {
			c := newTestCluster(b, 4, nil)
			descs := c.bootstrap(&kvpb.InitRequest{ReplicationFactor: 3})
			c.waitLeaders(descs)
			value := make([]byte, 256)
			ctx := context.Background()
			stop := make(chan struct{})
			changesDone := make(chan int)
			go func() {
				n := 0
				defer func() { changesDone <- n }()
				if mode == "steady" {
					return
				}
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					var err error
					if mode == "split" {
						// Keys "k" + 7 digits: split at ever finer points.
						_, err = c.split(ctx, fmt.Sprintf("k%07d", (i*7919)%1000000))
					} else {
						var d *kvpb.RangeDescriptor
						if l := c.leaderOf(2); l != 0 {
							d = c.store(l).Replica(2).Descriptor()
						}
						if d == nil {
							continue
						}
						req := &kvpb.ChangeReplicasRequest{RangeId: 2}
						if len(d.GetReplicas()) == 3 {
							for _, id := range c.ids {
								if replicaOf(d, id) == nil {
									req.Add = []uint64{id}
								}
							}
						} else {
							for _, r := range d.GetReplicas() {
								if r.GetNodeId() != c.leaderOf(2) {
									req.Remove = []uint64{r.GetNodeId()}
								}
							}
						}
						_, err = c.changeReplicas(ctx, req)
					}
					if err == nil {
						n++
					}
				}
			}()
			var seq atomic.Uint64
			lat := make([][]time.Duration, 64)
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N/64 + 1
			for w := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						key := []byte(fmt.Sprintf("k%07d", seq.Add(1)*104729%1000000))
						t0 := time.Now()
						if err := c.do(ctx, func(ctx context.Context, s *Store) error {
							_, err := s.Put(ctx, &kvpb.PutRequest{Key: key, Value: value})
							return err
						}); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(stop)
			changes := <-changesDone
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
			b.ReportMetric(float64(changes), "changes")
		})
	}
}
