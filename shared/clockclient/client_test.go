package clockclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve registers a minimal clock protocol over c on a fresh runtime's bus
// and returns a client of it from a second runtime.
func serve(tb testing.TB, c *hlc.Clock) *clockclient.Client {
	tb.Helper()
	rt := daemontest.NewUnstartedRuntime(tb, "clockd", daemontest.CA(tb), daemontest.Common(tb))
	bus.HandleUnary(rt.Bus, wire.ProtoClock, clockclient.MethodNow, func(context.Context, *clockpb.NowRequest) (*clockpb.NowResponse, error) {
		return &clockpb.NowResponse{Now: c.Now().Proto()}, nil
	})
	bus.HandleUnary(rt.Bus, wire.ProtoClock, clockclient.MethodUpdate, func(_ context.Context, req *clockpb.UpdateRequest) (*clockpb.UpdateResponse, error) {
		ts, err := hlc.FromProto(req.GetObserved())
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "%v", err)
		}
		now, err := c.Update(ts)
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "%v", err)
		}
		return &clockpb.UpdateResponse{Now: now.Proto()}, nil
	})
	bus.HandleUnary(rt.Bus, wire.ProtoClock, clockclient.MethodProbe, func(_ context.Context, req *clockpb.ProbeRequest) (*clockpb.ProbeResponse, error) {
		t2 := c.PhysicalNow()
		return &clockpb.ProbeResponse{SentNs: req.GetSentNs(), ReceivedNs: t2, RepliedNs: c.PhysicalNow(), NodeId: 7}, nil
	})
	if err := rt.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	client := daemontest.NewRuntime(tb, "client")
	return clockclient.New(client.Bus, rt.Bus.Addr().String())
}

func TestNowUpdateProbe(t *testing.T) {
	c := hlc.NewClock(hlc.Config{MaxOffset: 500 * time.Millisecond})
	cl := serve(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	a, err := cl.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Less(b) {
		t.Errorf("Now went from %v to %v", a, b)
	}

	ahead := hlc.Timestamp{WallTime: b.WallTime + int64(100*time.Millisecond), Logical: 3}
	u, err := cl.Update(ctx, ahead)
	if err != nil {
		t.Fatal(err)
	}
	if !ahead.Less(u) {
		t.Errorf("Update(%v) = %v; want above it", ahead, u)
	}

	before := c.Peek()
	if _, err := cl.Update(ctx, hlc.Timestamp{WallTime: hlc.SystemTime() + int64(2*time.Second)}); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("Update 2s ahead: %v; want InvalidArgument", err)
	}
	if got := c.Peek(); got != before {
		t.Errorf("refused Update moved the clock from %v to %v", before, got)
	}

	t1 := hlc.SystemTime()
	p, err := cl.Probe(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetSentNs() != t1 || p.GetNodeId() != 7 || p.GetRepliedNs() < p.GetReceivedNs() {
		t.Errorf("Probe = %v", p)
	}
}

func TestUnknownAddress(t *testing.T) {
	client := daemontest.NewRuntime(t, "client")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := clockclient.New(client.Bus, "127.0.0.1:1").Now(ctx); err == nil {
		t.Fatal("Now of a missing clockd succeeded")
	}
}

// BenchmarkBusNow measures clock Now calls over the bus between two
// in-process runtimes (QUIC on loopback, mutual TLS); it reports calls/s.
func BenchmarkBusNow(b *testing.B) {
	cl := serve(b, hlc.NewClock(hlc.Config{}))
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
