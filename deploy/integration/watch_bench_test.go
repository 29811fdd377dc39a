package integration_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// BenchmarkWatchLatency measures the time from a put's acknowledgement to
// its delivery to every watcher of its key (a delivery before the
// acknowledgement counts 0), with 1 and 1,000 watchers on one key of a
// three-node in-process raftd cluster (in-memory engines), puts one at a
// time. It reports the p50 and p99 over every (put, watcher) pair.
//
//	go test ./deploy/integration/ -run '^$' -bench BenchmarkWatchLatency -benchtime 200x
func BenchmarkWatchLatency(b *testing.B) {
	for _, watchers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) { benchWatchLatency(b, watchers) })
	}
}

func benchWatchLatency(b *testing.B, watchers int) {
	rc := StartRaftd(b, 3)
	tc, err := daemontest.CA(b).Config("client")
	if err != nil {
		b.Fatal(err)
	}
	newClient := func() *kvclient.Client {
		c, err := kvclient.New(b.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, Logger: daemontest.Logger(b, nil)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	c := newClient()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{}); err != nil {
		b.Fatal(err)
	}
	key := []byte("watched")
	n := b.N
	recv := make([][]time.Time, watchers) // watcher -> put seq -> delivery
	var ready sync.WaitGroup
	var wg sync.WaitGroup
	// lastSeen closes once every watcher received the last put; recv is
	// read only after wg.Wait, when the watchers have stopped writing it.
	var last sync.WaitGroup
	last.Add(watchers)
	lastSeen := make(chan struct{})
	go func() { last.Wait(); close(lastSeen) }()
	wc := newClient() // the watchers share one client (one connection per node)
	for w := range watchers {
		recv[w] = make([]time.Time, n)
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, gotLast := true, false
			_ = wc.Watch(ctx, key, nil, kvclient.WatchOptions{}, func(r kvclient.WatchResponse) error {
				now := time.Now()
				if first && !r.Resolved.IsZero() {
					first = false
					ready.Done()
				}
				for _, ev := range r.Events {
					if i, err := strconv.Atoi(string(ev.Value.Value)); err == nil && i < n {
						recv[w][i] = now
						if i == n-1 && !gotLast {
							gotLast = true
							last.Done()
						}
					}
				}
				return nil
			})
			if first {
				ready.Done()
			}
			if !gotLast {
				last.Done()
			}
		}()
	}
	ready.Wait()
	acked := make([]time.Time, n)
	b.ResetTimer()
	for i := range n {
		if _, err := c.Put(ctx, key, []byte(strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		acked[i] = time.Now()
	}
	// Let the last deliveries arrive.
	select {
	case <-lastSeen:
	case <-time.After(10 * time.Second):
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	var lat []time.Duration
	missing := 0
	for w := range watchers {
		for i := range n {
			if recv[w][i].IsZero() {
				missing++
				continue
			}
			lat = append(lat, max(recv[w][i].Sub(acked[i]), 0))
		}
	}
	if missing > 0 {
		b.Fatalf("%d of %d deliveries missing", missing, n*watchers)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
