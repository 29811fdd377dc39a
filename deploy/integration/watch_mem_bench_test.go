package integration_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// BenchmarkIdleWatchers measures the memory of idle watchers: 10,000
// watches of distinct keys on a one-node in-process raftd (in-memory
// engine, real bus), through one client, each past its first checkpoint
// and then idle. It reports the live heap, goroutine stacks and goroutines they add,
// per watcher: the raftd's side (stream, watch hub entry, checkpoint
// ticker) and the client's (stream, resume state, and the goroutine
// blocked in each Watch call) together, since both run in this process.
//
//	go test ./deploy/integration/ -run '^$' -bench BenchmarkIdleWatchers -benchtime 1x
func BenchmarkIdleWatchers(b *testing.B) {
	const watchers = 10000
	rc := StartRaftd(b, 1)
	tc, err := daemontest.CA(b).Config("client")
	if err != nil {
		b.Fatal(err)
	}
	c, err := kvclient.New(b.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, Logger: daemontest.Logger(b, nil)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	// A put first, so the client's connection and the range's state
	// exist before the baseline.
	if _, err := c.Put(ctx, []byte("w"), []byte("x")); err != nil {
		b.Fatal(err)
	}
	heap := func() (uint64, uint64, int) {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
	}
	for b.Loop() {
		wctx, wcancel := context.WithCancel(ctx)
		heap0, stack0, g0 := heap()
		var ready, wg sync.WaitGroup
		for i := range watchers {
			ready.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				first := true
				_ = c.Watch(wctx, []byte(fmt.Sprintf("w/%05d", i)), nil, kvclient.WatchOptions{CheckpointInterval: time.Second}, func(r kvclient.WatchResponse) error {
					if first && !r.Resolved.IsZero() {
						first = false
						ready.Done()
					}
					return nil
				})
				if first {
					ready.Done()
				}
			}()
		}
		ready.Wait()
		time.Sleep(2 * time.Second) // idle: past a few checkpoints
		heap1, stack1, g1 := heap()
		wcancel()
		wg.Wait()
		b.ReportMetric(float64(int64(heap1)-int64(heap0))/watchers, "heap-bytes/watcher")
		b.ReportMetric(float64(int64(stack1)-int64(stack0))/watchers, "stack-bytes/watcher")
		b.ReportMetric(float64(g1-g0)/watchers, "goroutines/watcher")
	}
}
