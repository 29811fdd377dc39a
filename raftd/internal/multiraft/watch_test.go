package multiraft

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// BenchmarkIdleWatchers measures what 10,000 idle watches of distinct
// keys cost one store: the live heap, goroutine stacks and goroutines they
// add, per watcher, past their first checkpoint (the Watch call's goroutine, its
// hub entry, channel and checkpoint ticker; not the bus stream serving
// it, which BenchmarkIdleWatchers in deploy/integration includes).
//
//	go test ./raftd/internal/multiraft/ -run '^$' -bench BenchmarkIdleWatchers -benchtime 1x
func BenchmarkIdleWatchers(b *testing.B) {
	const watchers = 10000
	c := newTestCluster(b, 1, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	if err := c.put(ctx, "w", "x"); err != nil {
		b.Fatal(err)
	}
	s := c.store(1)
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
				key := []byte(fmt.Sprintf("w/%05d", i))
				req := &kvpb.WatchRequest{Start: key, End: append(key, 0), CheckpointMillis: 1000}
				first := true
				err := s.Watch(wctx, req, func(*kvpb.WatchResponse) error {
					if first {
						first = false
						ready.Done()
					}
					return nil
				})
				if first {
					b.Errorf("watch %d: %v", i, err)
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

// TestWatcherFallingBehindIsCut has a watcher take nothing after its
// first checkpoint while more than watchBuffer changes are published:
// its watch ends with Unavailable, telling it to resume.
func TestWatcherFallingBehindIsCut(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.put(ctx, "k", "0"); err != nil {
		t.Fatal(err)
	}
	s := c.store(1)
	first, stuck := make(chan struct{}), make(chan struct{})
	defer close(stuck)
	done := make(chan error, 1)
	go func() {
		calls := 0
		done <- s.Watch(ctx, &kvpb.WatchRequest{Start: []byte("k"), End: []byte("k\x00"), CheckpointMillis: 50}, func(*kvpb.WatchResponse) error {
			if calls++; calls == 1 {
				close(first)
				return nil
			}
			<-stuck // the watcher takes nothing more
			return nil
		})
	}()
	<-first
	for i := range watchBuffer + 10 {
		if err := c.put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("watch ended after %d puts: %v", i, err)
		default:
		}
	}
	// The watch is cut (lost) but its goroutine is stuck in send: the
	// hub has dropped it.
	waitFor(t, 10*time.Second, "the watcher to be cut off", func() bool { return s.watches.count.Load() == 0 })
}
