package raftd_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestClockSync runs raftd against a fake clockd whose clock is ahead of
// raftd's (within the maximum offset) and whose health verdict the test
// sets: raftd stamps writes at or above clockd's reading, reports its own
// readings to clockd, and serves no lease reads while clockd says its
// clock is unhealthy.
func TestClockSync(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ca := daemontest.CA(t)
	// Leases need ElectionTicks-1 ticks above MaxOffset: 900 ms - 100 ms.
	const maxOffset, ahead = 100 * time.Millisecond, 80 * time.Millisecond
	fake := daemontest.NewUnstartedRuntime(t, "clockd", ca, daemontest.Common(t))
	var updates, observed atomic.Int64
	bus.HandleUnary(fake.Bus, wire.ProtoClock, clockclient.MethodUpdate, func(ctx context.Context, req *clockpb.UpdateRequest) (*clockpb.UpdateResponse, error) {
		observed.Store(req.GetObserved().GetWallTime())
		updates.Add(1)
		// Far ahead in logical time at the wall time of the answer: the
		// fold shows in raftd's next stamps whenever they come.
		return &clockpb.UpdateResponse{Now: hlc.Timestamp{WallTime: time.Now().Add(ahead).UnixNano(), Logical: 1 << 20}.Proto()}, nil
	})
	healthy := make(chan bool, 4)
	bus.HandleStream(fake.Bus, wire.ProtoClock, clockclient.MethodWatchHealth, func(ctx context.Context, _ *clockpb.WatchHealthRequest, send func(*clockpb.Health) error) error {
		for {
			select {
			case h := <-healthy:
				if err := send(&clockpb.Health{Healthy: h}); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
		}
	})
	if err := fake.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := freeAddrs(t, 1)[0]
	_, srv := startServerWith(t, ctx, ca, addr, nil, storage.NewMem(), true, func(c *raftd.Config) {
		c.ClockAddr = fake.Bus.Addr().String()
		c.TickInterval, c.MaxOffset = 100*time.Millisecond, maxOffset
	})
	cli := daemontest.NewRuntime(t, "client")
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addr, wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &kvpb.InitResponse{})
	}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	// raftd reports its readings to clockd, and a write right after an
	// answer is stamped at or above clockd's reading (the sync runs every
	// second; the test writes within ahead of an answer).
	stamped := false
	for i := 0; i < 20 && !stamped; i++ {
		n := updates.Load()
		for updates.Load() == n {
			select {
			case <-ctx.Done():
				t.Fatal("raftd never reported its clock to clockd")
			case <-time.After(time.Millisecond):
			}
		}
		answered := time.Now()
		time.Sleep(5 * time.Millisecond) // the answer is folded in
		var put kvpb.PutResponse
		if err := retryUnavailable(ctx, func() error {
			return cli.Bus.Call(ctx, addr, wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}, &put)
		}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if time.Since(answered) > ahead/2 {
			continue // too slow to tell (a loaded machine): next sync
		}
		ts := put.GetTimestamp()
		if ts.GetWallTime() < answered.Add(ahead/2).UnixNano() && ts.GetLogical() < 1<<20 {
			t.Fatalf("write stamped %v, not above clockd's reading %v ahead of the wall clock", ts, ahead)
		}
		stamped = true
	}
	if !stamped {
		t.Fatal("no write came soon enough after a clock sync to check its stamp")
	}
	if observed.Load() == 0 {
		t.Error("raftd's clock reading did not reach clockd")
	}

	leaseReads := func() bool {
		for range 5 {
			if err := cli.Bus.Call(ctx, addr, wire.ProtoKV, "Get", &kvpb.GetRequest{Key: []byte("k")}, &kvpb.GetResponse{}); err != nil {
				t.Fatalf("Get: %v", err)
			}
		}
		var rr kvpb.RangesResponse
		if err := cli.Bus.Call(ctx, addr, wire.ProtoKV, "Ranges", &kvpb.RangesRequest{}, &rr); err != nil {
			t.Fatalf("Ranges: %v", err)
		}
		for _, r := range rr.GetReplicas() {
			if r.GetDescriptor_().GetRangeId() == 2 {
				return r.GetLeaseValid()
			}
		}
		t.Fatal("no user range listed")
		return false
	}
	for _, h := range []bool{false, true} {
		healthy <- h
		deadline := time.Now().Add(10 * time.Second)
		for leaseReads() != h {
			if time.Now().After(deadline) {
				t.Fatalf("clock healthy %v: lease valid %v", h, !h)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = srv
}
