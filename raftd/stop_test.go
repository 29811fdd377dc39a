package raftd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestStopHonoursContext: Stop cancels a storage write in progress instead
// of waiting for it (StorageTimeout is 10 s); when something it waits for
// does not give way, Stop returns its context's error, and a later Stop
// waits for the rest.
func TestStopHonoursContext(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ignoreCtx bool
	}{
		{"cancellable write", false},
		{"stuck write", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			fe := &faultEngine{Engine: storage.NewMem(), entered: make(chan struct{}, 1)}
			rt, srv := startServerWith(t, ctx, daemontest.CA(t), freeAddrs(t, 1)[0], nil, fe, false)
			cli := daemontest.NewRuntime(t, "client")
			addr := rt.Bus.Addr().String()
			if err := retryUnavailable(ctx, func() error {
				return cli.Bus.Call(ctx, addr, wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &kvpb.InitResponse{})
			}); err != nil {
				t.Fatalf("Init: %v", err)
			}
			checkServes(t, ctx, cli, []string{addr})
			hold := make(chan struct{})
			fe.mu.Lock()
			fe.hold, fe.ignoreCtx = hold, tc.ignoreCtx
			fe.mu.Unlock()
			putDone := make(chan error, 1)
			go func() {
				putDone <- cli.Bus.Call(ctx, addr, wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("k2"), Value: []byte("v")}, &kvpb.PutResponse{})
			}()
			select {
			case <-fe.entered:
			case <-ctx.Done():
				t.Fatal("the put's write never started")
			}
			if tc.ignoreCtx {
				sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
				err := srv.Stop(sctx)
				scancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Stop with a stuck write = %v; want its context's deadline", err)
				}
				close(hold)
				if err := srv.Stop(ctx); err != nil {
					t.Errorf("second Stop = %v", err)
				}
			} else {
				// Well below the 10 s StorageTimeout the write would
				// otherwise take to give up.
				sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
				err := srv.Stop(sctx)
				scancel()
				if err != nil {
					t.Errorf("Stop = %v; want it to cancel the write and finish", err)
				}
				close(hold)
			}
			if err := <-putDone; err == nil {
				t.Log("the held put was answered before the stop")
			}
		})
	}
}
