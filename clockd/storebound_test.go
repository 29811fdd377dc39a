package clockd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeStored serves stored's Get and Write over an in-memory map of
// (column family, key), as the node's stored would for clockd. While down
// it answers Unavailable.
type fakeStored struct {
	addr string

	mu       sync.Mutex
	down     bool
	data     map[storepb.ColumnFamily]map[string][]byte
	writes   int
	unsynced int
}

func newFakeStored(t *testing.T) *fakeStored {
	t.Helper()
	f := &fakeStored{data: map[storepb.ColumnFamily]map[string][]byte{}}
	rt := daemontest.NewUnstartedRuntime(t, "stored", daemontest.CA(t), daemontest.Common(t))
	bus.HandleUnary(rt.Bus, wire.ProtoStore, storeclient.MethodGet, func(_ context.Context, r *storepb.GetRequest) (*storepb.GetResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			return nil, bus.Errorf(bus.CodeUnavailable, "fake stored: down")
		}
		v, ok := f.data[r.GetCf()][string(r.GetKey())]
		return &storepb.GetResponse{Found: ok, Value: v}, nil
	})
	bus.HandleUnary(rt.Bus, wire.ProtoStore, storeclient.MethodWrite, func(_ context.Context, r *storepb.WriteRequest) (*storepb.WriteResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			return nil, bus.Errorf(bus.CodeUnavailable, "fake stored: down")
		}
		// Puts only, as messages or packed; decoded whole before any is
		// applied.
		var puts []storepb.PackedOp
		for _, op := range r.GetOps() {
			p := op.GetPut()
			if p == nil {
				return nil, bus.Errorf(bus.CodeInvalidArgument, "fake stored: only puts")
			}
			puts = append(puts, storepb.PackedOp{Kind: storepb.OpPut, CF: p.GetCf(), Key: p.GetKey(), Value: p.GetValue()})
		}
		for b := r.GetPackedOps(); len(b) > 0; {
			op, rest, err := storepb.NextOp(b)
			if err != nil || op.Kind != storepb.OpPut {
				return nil, bus.Errorf(bus.CodeInvalidArgument, "fake stored: only puts (%v)", err)
			}
			puts, b = append(puts, op), rest
		}
		for _, p := range puts {
			if f.data[p.CF] == nil {
				f.data[p.CF] = map[string][]byte{}
			}
			f.data[p.CF][string(p.Key)] = bytes.Clone(p.Value)
		}
		f.writes++
		if !r.GetSync() {
			f.unsynced++
		}
		return &storepb.WriteResponse{Sequence: uint64(f.writes)}, nil
	})
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.addr = rt.Bus.Addr().String()
	return f
}

func (f *fakeStored) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// bound returns the persisted bound as stored holds it.
func (f *fakeStored) bound(t *testing.T) int64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[storepb.ColumnFamily_COLUMN_FAMILY_LOCAL][clockd.BoundKey]
	if !ok || len(v) != 8 {
		t.Fatalf("stored holds no bound under %q in local: %x", clockd.BoundKey, v)
	}
	if f.unsynced != 0 {
		t.Errorf("%d of %d bound writes were not synced", f.unsynced, f.writes)
	}
	return int64(binary.BigEndian.Uint64(v))
}

// storeBound returns a StoreBound calling the fake through a bus of its own.
func storeBound(t *testing.T, f *fakeStored) *clockd.StoreBound {
	t.Helper()
	rt := daemontest.NewRuntime(t, "clockd-store-client")
	return clockd.NewStoreBound(storeclient.New(rt.Bus, f.addr), nil)
}

func TestStoreBoundRoundTrip(t *testing.T) {
	f := newFakeStored(t)
	sb := storeBound(t, f)
	ctx := t.Context()
	if b, err := sb.LoadBound(ctx); err != nil || b != 0 {
		t.Fatalf("LoadBound of an empty store = %d, %v; want 0", b, err)
	}
	for _, v := range []int64{1, 1_700_000_000_123_456_789, 5} {
		if err := sb.SaveBound(ctx, v); err != nil {
			t.Fatal(err)
		}
		if b, err := sb.LoadBound(ctx); err != nil || b != v {
			t.Fatalf("LoadBound = %d, %v; want %d", b, err, v)
		}
	}
	if got := f.bound(t); got != 5 {
		t.Errorf("stored holds %d; want 5", got)
	}
	if err := sb.SaveBound(ctx, -1); err == nil {
		t.Error("negative bound saved")
	}
	// A corrupt value is an error, not a zero bound.
	f.mu.Lock()
	f.data[storepb.ColumnFamily_COLUMN_FAMILY_LOCAL][clockd.BoundKey] = []byte{1, 2, 3}
	f.mu.Unlock()
	if _, err := sb.LoadBound(ctx); err == nil {
		t.Error("3-byte bound accepted")
	}
	f.setDown(true)
	if _, err := sb.LoadBound(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("LoadBound with stored down = %v; want Unavailable", err)
	}
	if err := sb.SaveBound(ctx, 9); !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("SaveBound with stored down = %v; want Unavailable", err)
	}
}

func TestStoreBoundReadsLegacyFile(t *testing.T) {
	f := newFakeStored(t)
	rt := daemontest.NewRuntime(t, "clockd-store-client")
	file := clockd.NewFileBound(t.TempDir())
	ctx := t.Context()
	sb := clockd.NewStoreBound(storeclient.New(rt.Bus, f.addr), file)
	for _, tt := range []struct {
		name         string
		file, stored int64
		want         int64
	}{
		{"neither", 0, 0, 0},
		{"file only", 500, 0, 500},
		{"file above stored", 500, 300, 500},
		{"stored above file", 500, 900, 900},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := file.SaveBound(ctx, tt.file); err != nil {
				t.Fatal(err)
			}
			if tt.stored != 0 {
				if err := sb.SaveBound(ctx, tt.stored); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := sb.LoadBound(ctx); err != nil || got != tt.want {
				t.Errorf("LoadBound = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if b, _ := file.LoadBound(ctx); b != 500 {
		t.Errorf("the file bound changed to %d; stored alone is written", b)
	}
}

// TestRestartMonotonicWithStoredBound: a clockd hands out timestamps with
// its bound in stored, stops, the machine's clock is set back, and the
// restarted clockd (a new StoreBound over the same stored) does not serve
// until physical time has passed the bound stored holds; its readings
// then follow every earlier one.
func TestRestartMonotonicWithStoredBound(t *testing.T) {
	f := newFakeStored(t)
	var phys atomic.Int64
	phys.Store(int64(1_700_000_000) * 1e9)
	cfg := baseCfg()
	cfg.StoredAddr = f.addr
	cfg.BoundWindow = 200 * time.Millisecond

	first := startNode(t, cfg, storeBound(t, f), phys.Load)
	waitReady(t, first.srv)
	var last hlc.Timestamp
	for range 100 {
		phys.Add(int64(time.Millisecond))
		ts, err := first.srv.Now(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		last = ts
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := first.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	saved := f.bound(t)
	if saved <= last.WallTime {
		t.Fatalf("stored bound %d not above handed-out %v", saved, last)
	}

	// Set back ten seconds; stored is also down for a while at restart.
	phys.Add(-int64(10 * time.Second))
	f.setDown(true)
	second := startNode(t, cfg, storeBound(t, f), phys.Load)
	eventually.True(t, 10*time.Second, "the ready check to name stored", func() bool {
		_, failed := second.rt.Admin.Ready(ctx)
		return failed[clockd.ReadyCheck] != nil && errors.Is(failed[clockd.ReadyCheck], bus.ErrUnavailable)
	})
	f.setDown(false)
	if _, err := second.srv.Now(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Now before the bound passed = %v; want Unavailable", err)
	}
	select {
	case <-second.srv.Ready():
		t.Fatal("served before physical time passed the stored bound")
	default:
	}
	phys.Store(saved + 1)
	waitReady(t, second.srv)
	ts, err := second.srv.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Less(ts) || ts.WallTime <= saved {
		t.Fatalf("after restart Now = %v; want after %v and past bound %d", ts, last, saved)
	}
	if nb := f.bound(t); nb <= ts.WallTime {
		t.Errorf("stored bound %d after restart not above %v", nb, ts)
	}
}
