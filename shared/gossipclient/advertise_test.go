package gossipclient_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeMetadata is a gossipd that keeps SetMetadata's merges.
type fakeMetadata struct {
	mu    sync.Mutex
	addrs map[string]string
	// quit ends the subscriptions, as gossipd's stop does.
	quit chan struct{}
}

func (f *fakeMetadata) get(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[key]
}

// serveMetadata registers SetMetadata and Subscribe (a stream that stays
// open until the bus stops) on b.
func serveMetadata(b *bus.Bus, f *fakeMetadata) {
	bus.HandleUnary(b, wire.ProtoGossip, gossipclient.MethodSetMetadata, func(_ context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for k, v := range r.GetMetadata().GetAddresses() {
			f.addrs[k] = v
		}
		return &gossippb.SetMetadataResponse{}, nil
	})
	bus.HandleStream(b, wire.ProtoGossip, gossipclient.MethodSubscribe, func(ctx context.Context, _ *gossippb.SubscribeRequest, _ func(*gossippb.Event) error) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.quit:
			return nil
		}
	})
}

// TestAdvertiseAgainAfterARestart: the address is published, and
// published again to a gossipd restarted on the same address (gossipd
// keeps metadata in memory only).
func TestAdvertiseAgainAfterARestart(t *testing.T) {
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	first := &fakeMetadata{addrs: map[string]string{}, quit: make(chan struct{})}
	g1 := newBus(t, ca, "gossipd")
	serveMetadata(g1, first)
	if err := g1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := g1.Addr().String()
	cli := newBus(t, ca, "raftd")
	if err := cli.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gossipclient.New(cli, addr).Advertise(ctx, "raftd", "10.0.0.1:7402", slog.New(slog.DiscardHandler))
	}()
	defer func() { cancel(); <-done }()
	eventually.True(t, 10*time.Second, "the address published", func() bool { return first.get("raftd") == "10.0.0.1:7402" })

	close(first.quit)
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer scancel()
	if err := g1.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	second := &fakeMetadata{addrs: map[string]string{}, quit: make(chan struct{})}
	tc, err := ca.Config("gossipd")
	if err != nil {
		t.Fatal(err)
	}
	g2, err := bus.New(bus.Config{ListenAddr: addr, TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	serveMetadata(g2, second)
	if err := g2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(second.quit)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = g2.Stop(sctx)
	}()
	eventually.True(t, 20*time.Second, "the address published again", func() bool { return second.get("raftd") == "10.0.0.1:7402" })
}
