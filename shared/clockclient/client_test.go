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

// exchange runs one four-timestamp probe of cl with the local system
// clock and returns the offset estimate and its uncertainty, computed as
// clockd's monitor does: offset = ((t2-t1)+(t3-t4))/2, rtt = (t4-t1)-(t3-t2),
// uncertainty = rtt/2 (+ clockd's small read error, left out here).
func exchange(ctx context.Context, cl *clockclient.Client) (offset, uncertainty int64, err error) {
	t1 := hlc.SystemTime()
	p, err := cl.Probe(ctx, t1)
	t4 := hlc.SystemTime()
	if err != nil {
		return 0, 0, err
	}
	t2, t3 := p.GetReceivedNs(), p.GetRepliedNs()
	rtt := max((t4-t1)-(t3-t2), 0)
	return ((t2 - t1) + (t3 - t4)) / 2, rtt/2 + rtt%2, nil
}

func skewed(skew time.Duration) *hlc.Clock {
	return hlc.NewClock(hlc.Config{Physical: func() int64 { return hlc.SystemTime() + int64(skew) }})
}

func TestProbeOffsetWithinUncertainty(t *testing.T) {
	// readErr covers reading the two clocks around the exchange.
	const readErr = int64(50 * time.Microsecond)
	for _, skew := range []time.Duration{200 * time.Millisecond, -300 * time.Millisecond} {
		cl := serve(t, skewed(skew))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		for i := range 20 {
			off, unc, err := exchange(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if d := off - int64(skew); d > unc+readErr || -d > unc+readErr {
				t.Errorf("skew %v probe %d: offset %v, error %v beyond uncertainty %v", skew, i, time.Duration(off), time.Duration(d), time.Duration(unc))
			}
		}
		cancel()
	}
}

// BenchmarkProbeOffsetError reports the error of the four-timestamp
// offset estimate over the bus on loopback against a peer skewed by
// +200ms: mean and max |estimate - skew|, the mean uncertainty, and the
// largest error minus its sample's uncertainty (negative when every
// estimate was within its uncertainty).
func BenchmarkProbeOffsetError(b *testing.B) {
	const skew = 200 * time.Millisecond
	cl := serve(b, skewed(skew))
	ctx := context.Background()
	if _, _, err := exchange(ctx, cl); err != nil {
		b.Fatal(err)
	}
	var sumErr, maxErr, sumUnc, n int64
	maxExcess := int64(-1 << 62)
	for b.Loop() {
		off, unc, err := exchange(ctx, cl)
		if err != nil {
			b.Fatal(err)
		}
		d := off - int64(skew)
		if d < 0 {
			d = -d
		}
		sumErr += d
		maxExcess = max(maxExcess, d-unc)
		maxErr = max(maxErr, d)
		sumUnc += unc
		n++
	}
	b.ReportMetric(float64(sumErr)/float64(n), "mean-err-ns")
	b.ReportMetric(float64(maxErr), "max-err-ns")
	b.ReportMetric(float64(sumUnc)/float64(n), "mean-uncertainty-ns")
	// Negative: every estimate was within its uncertainty.
	b.ReportMetric(float64(maxExcess), "max-err-minus-uncertainty-ns")
}
