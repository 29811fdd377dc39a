package kvclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// BenchmarkPut measures the client's own cost per Put against the
// in-memory fake (one bus round trip on loopback, routed to the cached
// leader): the floor under any raftd figure.
func BenchmarkPut(b *testing.B) {
	fc := kvclienttest.Start(b, kvclienttest.Options{})
	tc, err := daemontest.CA(b).Config("client")
	if err != nil {
		b.Fatal(err)
	}
	c, err := kvclient.New(b.Context(), kvclient.Config{Addrs: fc.Addrs(), TLS: tc})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	key, val := []byte("bench-key"), make([]byte, 256)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Put(b.Context(), key, val); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGet measures a linearizable Get's client cost against the fake,
// with hedging armed (the default) and off: the hedge timer is the
// difference when no hedge fires.
func BenchmarkGet(b *testing.B) {
	for _, bc := range []struct {
		name  string
		hedge time.Duration
	}{{"hedge-armed", 0}, {"hedge-off", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			fc := kvclienttest.Start(b, kvclienttest.Options{})
			tc, err := daemontest.CA(b).Config("client")
			if err != nil {
				b.Fatal(err)
			}
			c, err := kvclient.New(b.Context(), kvclient.Config{Addrs: fc.Addrs(), TLS: tc, HedgeAfter: bc.hedge})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close(context.Background()) })
			key := []byte("bench-key")
			if _, err := c.Put(b.Context(), key, make([]byte, 256)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := c.Get(b.Context(), key); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
