package multiraft

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// BenchmarkVersionSpace overwrites 100 keys with 256-byte values from 8
// writers for 20 seconds on one node (in-memory engine) with a retention
// window of 1 second (collection threshold 6 seconds back: the window
// plus gcClockSlack) and collection every 500 ms, or none, and logs the
// versions family's entries and bytes every 2 seconds. With collection
// the size levels off at about 6 seconds of writes; without, it grows
// with every write. Reports the figures at the end.
//
//	go test ./raftd/internal/multiraft/ -run '^$' -bench BenchmarkVersionSpace -benchtime 1x -v
func BenchmarkVersionSpace(b *testing.B) {
	for _, gc := range []bool{true, false} {
		b.Run(fmt.Sprintf("gc=%v", gc), func(b *testing.B) {
			for b.Loop() {
				versionSpace(b, gc)
			}
		})
	}
}

func versionSpace(b *testing.B, gc bool) {
	const (
		keys, writers = 100, 8
		run, every    = 20 * time.Second, 2 * time.Second
	)
	c := newTestCluster(b, 1, &kvpb.InitRequest{}, func(cfg *Config) {
		cfg.VersionRetention = time.Second
		cfg.VersionGCInterval = 500 * time.Millisecond
		if !gc {
			cfg.VersionGCInterval = -1
		}
	})
	ctx, cancel := context.WithTimeout(b.Context(), run)
	defer cancel()
	value := string(make([]byte, 256))
	var wg sync.WaitGroup
	var mu sync.Mutex
	writes := 0
	for w := range writers {
		wg.Go(func() {
			n := 0
			for i := w; ctx.Err() == nil; i += writers {
				if err := c.put(ctx, fmt.Sprintf("k%03d", i%keys), value); err == nil {
					n++
				}
			}
			mu.Lock()
			writes += n
			mu.Unlock()
		})
	}
	size := func() (int, int) {
		vs := c.versionsOf(1)
		bytes := 0
		for _, kv := range vs {
			bytes += len(kv.Key) + len(kv.Value)
		}
		return len(vs), bytes
	}
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	var n, bytes int
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		n, bytes = size()
		b.Logf("gc=%v %4.0fs: %7d versions, %6.1f MB", gc, time.Since(start).Seconds(), n, float64(bytes)/1e6)
	}
	wg.Wait()
	st := c.store(1).Stats()
	b.Logf("gc=%v: %d writes; %d versions collected in %d rounds", gc, writes, st.VersionsCollected, st.VersionGCRounds)
	b.ReportMetric(float64(writes), "writes")
	b.ReportMetric(float64(n), "versions-at-end")
	b.ReportMetric(float64(bytes)/1e6, "version-MB-at-end")
	b.ReportMetric(0, "ns/op")
}
