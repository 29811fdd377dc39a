package clockd_test

import (
	"context"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

// BenchmarkBusNow measures clockd's Now over the bus: a clockd server on
// one in-process runtime (in-memory bound store), calls from a second
// runtime through clockclient. It reports calls/s.
func BenchmarkBusNow(b *testing.B) {
	rt := daemontest.NewUnstartedRuntime(b, clockd.Name, daemontest.CA(b), daemontest.Common(b))
	srv, err := clockd.New(baseCfg(), clockd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin,
		Bound: &memoryBound{}, NodeID: rt.NodeID})
	if err != nil {
		b.Fatal(err)
	}
	if err := rt.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			b.Errorf("stop: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		b.Fatal("clockd never served")
	}
	client := daemontest.NewRuntime(b, "client")
	cl := clockclient.New(client.Bus, rt.Bus.Addr().String())
	ctx := context.Background()
	if _, err := cl.Now(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if _, err := cl.Now(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cl.Now(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	})
}
