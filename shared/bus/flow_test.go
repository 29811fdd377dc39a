package bus_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// dropCounter is a quic-go tracer that counts the packets quic-go drops
// because a connection's queue of unprocessed packets is full, and the
// packets declared lost.
type dropCounter struct {
	queueFull, lost atomic.Int64
}

func (d *dropCounter) tracer(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return d
}

func (d *dropCounter) AddProducer() qlogwriter.Recorder { return d }

func (d *dropCounter) RecordEvent(e qlogwriter.Event) {
	switch e := e.(type) {
	case qlog.PacketDropped:
		if e.Trigger == qlog.PacketDropDOSPrevention {
			d.queueFull.Add(1)
		}
	case qlog.PacketLost:
		d.lost.Add(1)
	}
}

func (d *dropCounter) Close() error { return nil }

// TestLargeConcurrentCallsDropNothing: 64 callers sending 64 KiB calls at
// once must not overrun quic-go's queue of received packets per connection
// (256 packets; the rest are dropped as if lost, and the sender's
// congestion controller backs off). The bus's flow-control window keeps
// the data in flight to a connection below what that queue holds. With
// 16 MiB windows this test saw hundreds of drops.
func TestLargeConcurrentCallsDropNothing(t *testing.T) {
	var drops dropCounter
	srv := newBus(t, "srv")
	bus.SetQUICTracer(srv, drops.tracer)
	echo(srv)
	addr := start(t, srv)
	cli := newBus(t, "cli")
	bus.SetQUICTracer(cli, drops.tracer)
	start(t, cli)

	const callers, calls = 64, 12
	req := wrapperspb.Bytes(make([]byte, 64<<10))
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			var resp wrapperspb.BytesValue
			for range calls {
				if err := cli.Call(ctx, addr, wire.ProtoKV, "Echo", req, &resp); err != nil {
					t.Error(err)
					return
				}
				if len(resp.Value) != len(req.Value) {
					t.Errorf("echo returned %d bytes, sent %d", len(resp.Value), len(req.Value))
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("packets dropped on a full connection queue: %d, declared lost: %d", drops.queueFull.Load(), drops.lost.Load())
	if n := drops.queueFull.Load(); n != 0 {
		t.Errorf("quic-go dropped %d packets on a full connection queue, want 0", n)
	}
}
