package bus_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// newBusReg is newBus returning the bus's metrics registry too.
func newBusReg(t testing.TB, name string, opts ...opt) (*bus.Bus, *prometheus.Registry) {
	t.Helper()
	cfg := bus.Config{ListenAddr: "127.0.0.1:0", TLS: tlsConfig(t, name), DialTimeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	b, err := bus.New(cfg, bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	return b, reg
}

// handshakes counts the client's TLS handshakes, full and resumed.
type handshakes struct{ full, resumed atomic.Int64 }

func (h *handshakes) opt(c *bus.Config) {
	c.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.DidResume {
			h.resumed.Add(1)
		} else {
			h.full.Add(1)
		}
		return nil
	}
}

// idleServer starts a server with a unary Echo, a Msgs batch handler and a
// gossip datagram handler; it returns its address, registry and the count
// of batch messages and datagrams received.
func idleServer(t *testing.T) (string, *prometheus.Registry, *atomic.Int64) {
	t.Helper()
	srv, reg := newBusReg(t, "srv")
	echo(srv)
	var got atomic.Int64
	bus.HandleBatch(srv, wire.ProtoRaft, "Msgs", func(ctx context.Context, p bus.Peer, batch []*wrapperspb.Int32Value) {
		got.Add(int64(len(batch)))
	})
	srv.HandleDatagram(wire.ProtoGossip, func(bus.Peer, []byte) { got.Add(1) })
	bus.HandleUnary(srv, wire.ProtoKV, "Wait", func(ctx context.Context, r *wrapperspb.Int64Value) (*wrapperspb.Int64Value, error) {
		time.Sleep(time.Duration(r.Value))
		return r, nil
	})
	return start(t, srv), reg, &got
}

// uses are the kinds of application traffic that keep a connection open.
var uses = []struct {
	name string
	use  func(ctx context.Context, b *bus.Bus, addr string) error
}{
	{"call", func(ctx context.Context, b *bus.Bus, addr string) error {
		return b.Call(ctx, addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{})
	}},
	{"batch", func(ctx context.Context, b *bus.Bus, addr string) error {
		return b.SendBatch(ctx, addr, wire.ProtoRaft, "Msgs", wrapperspb.Int32(1))
	}},
	{"datagram", func(ctx context.Context, b *bus.Bus, addr string) error {
		return b.SendDatagram(ctx, addr, wire.ProtoGossip, []byte("d"))
	}},
}

// TestIdleConnectionCloses: a dialed connection nobody uses closes after
// IdleTimeout on both ends, and the next use redials, resuming TLS. A batch
// stream idle that long is closed with it and reopened by the next send.
func TestIdleConnectionCloses(t *testing.T) {
	for _, u := range uses {
		t.Run(u.name, func(t *testing.T) {
			t.Parallel()
			addr, sreg, got := idleServer(t)
			var hs handshakes
			cli, creg := newBusReg(t, "cli", hs.opt, func(c *bus.Config) { c.IdleTimeout = 200 * time.Millisecond })
			start(t, cli)
			if err := u.use(ctxT(t), cli, addr); err != nil {
				t.Fatal(err)
			}
			if hs.full.Load() != 1 {
				t.Fatalf("%d full handshakes, want 1", hs.full.Load())
			}
			eventually.True(t, 10*time.Second, "the idle connection closed on both sides", func() bool {
				return metricValue(t, creg, "pleiades_bus_idle_closes_total", nil) == 1 &&
					metricValue(t, creg, "pleiades_bus_connections", nil) == 0 &&
					metricValue(t, sreg, "pleiades_bus_connections", nil) == 0
			})
			before := got.Load()
			// The first use after the close redials at once; datagrams are
			// unreliable, so send until one arrives.
			eventually.True(t, 10*time.Second, "a use after the idle close", func() bool {
				if err := u.use(ctxT(t), cli, addr); err != nil {
					t.Fatal(err)
				}
				return u.name != "datagram" || got.Load() > before
			})
			if u.name == "batch" {
				eventually.True(t, 10*time.Second, "the second batch delivered", func() bool { return got.Load() == 2 })
			}
			if hs.full.Load() != 1 || hs.resumed.Load() != 1 {
				t.Fatalf("after the redial: %d full and %d resumed handshakes, want 1 and 1", hs.full.Load(), hs.resumed.Load())
			}
		})
	}
}

// TestUsedConnectionStaysOpen: uses more frequent than IdleTimeout keep
// the connection open.
func TestUsedConnectionStaysOpen(t *testing.T) {
	for _, u := range uses {
		t.Run(u.name, func(t *testing.T) {
			t.Parallel()
			addr, _, _ := idleServer(t)
			var hs handshakes
			cli, creg := newBusReg(t, "cli", hs.opt, func(c *bus.Config) { c.IdleTimeout = 500 * time.Millisecond })
			start(t, cli)
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(25 * time.Millisecond) {
				if err := u.use(ctxT(t), cli, addr); err != nil {
					t.Fatal(err)
				}
			}
			if n := metricValue(t, creg, "pleiades_bus_idle_closes_total", nil); n != 0 {
				t.Fatalf("%v idle closes of a connection in use", n)
			}
			if n := hs.full.Load() + hs.resumed.Load(); n != 1 {
				t.Fatalf("%d handshakes, want 1", n)
			}
		})
	}
}

// TestLongStreamNotCut: a server stream in progress keeps its connection
// open however long it is silent.
func TestLongStreamNotCut(t *testing.T) {
	srv := newBus(t, "srv")
	bus.HandleStream(srv, wire.ProtoStore, "Slow", func(ctx context.Context, r *wrapperspb.Int32Value, send func(*wrapperspb.Int32Value) error) error {
		for i := range r.Value {
			if i > 0 {
				select {
				case <-time.After(400 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := send(wrapperspb.Int32(i)); err != nil {
				return err
			}
		}
		return nil
	})
	addr := start(t, srv)
	cli, creg := newBusReg(t, "cli", func(c *bus.Config) { c.IdleTimeout = 100 * time.Millisecond })
	start(t, cli)
	s, err := cli.Stream(ctxT(t), addr, wire.ProtoStore, "Slow", wrapperspb.Int32(3))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range int32(3) {
		var m wrapperspb.Int32Value
		if err := s.Recv(&m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.Value != i {
			t.Fatalf("got %d, want %d", m.Value, i)
		}
	}
	if err := s.Recv(&wrapperspb.Int32Value{}); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if n := metricValue(t, creg, "pleiades_bus_idle_closes_total", nil); n != 0 {
		t.Fatalf("%v idle closes during the stream", n)
	}
	// Once the stream is over the connection is idle.
	eventually.True(t, 10*time.Second, "one idle close counted", func() bool { return metricValue(t, creg, "pleiades_bus_idle_closes_total", nil) == 1 })
}

// TestUsesRacingReaper: callers whose pauses straddle IdleTimeout race
// with the reaper closing their connections; none sees an error.
func TestUsesRacingReaper(t *testing.T) {
	idle := 60 * time.Millisecond
	cli, creg := newBusReg(t, "cli", func(c *bus.Config) { c.IdleTimeout = idle })
	start(t, cli)
	// One user per server, so that each connection goes idle between uses.
	var addrs []string
	for range 6 {
		addr, _, _ := idleServer(t)
		addrs = append(addrs, addr)
	}
	end := time.Now().Add(1500 * time.Millisecond)
	// Slow calls widen the window in which the reaper finds a connection
	// idle since before the call started.
	racing := append(uses[1:len(uses):len(uses)], struct {
		name string
		use  func(ctx context.Context, b *bus.Bus, addr string) error
	}{"slow call", func(ctx context.Context, b *bus.Bus, addr string) error {
		return b.Call(ctx, addr, wire.ProtoKV, "Wait", wrapperspb.Int64(int64(10*time.Millisecond)), &wrapperspb.Int64Value{})
	}})
	var wg sync.WaitGroup
	for i, addr := range addrs {
		u := racing[i%len(racing)]
		wg.Go(func() {
			for time.Now().Before(end) {
				if err := u.use(ctxT(t), cli, addr); err != nil {
					t.Errorf("%s: %v", u.name, err)
					return
				}
				time.Sleep(idle - 10*time.Millisecond + rand.N(40*time.Millisecond))
			}
		})
	}
	wg.Wait()
	if metricValue(t, creg, "pleiades_bus_idle_closes_total", nil) == 0 {
		t.Fatal("no connection closed as idle: the race was not exercised")
	}
}
