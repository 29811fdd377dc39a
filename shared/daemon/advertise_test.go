package daemon_test

import (
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestRunAdvertises: a daemon whose Spec asks for it keeps its bus
// address in its gossipd's metadata while it runs.
func TestRunAdvertises(t *testing.T) {
	dataDir := t.TempDir()
	// A gossipd stand-in with the node's dev certificates, keeping the
	// metadata it is given.
	c := daemontest.Common(t)
	c.DataDir, c.CertsDir, c.Dev = dataDir, filepath.Join(dataDir, "certs"), true
	g, err := daemon.NewRuntime("gossipd", c, daemontest.Logger(t, c.LogLevel))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	addrs := map[string]string{}
	quit := make(chan struct{})
	bus.HandleUnary(g.Bus, wire.ProtoGossip, gossipclient.MethodSetMetadata, func(_ context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range r.GetMetadata().GetAddresses() {
			addrs[k] = v
		}
		return &gossippb.SetMetadataResponse{}, nil
	})
	bus.HandleStream(g.Bus, wire.ProtoGossip, gossipclient.MethodSubscribe, func(ctx context.Context, _ *gossippb.SubscribeRequest, _ func(*gossippb.Event) error) error {
		select {
		case <-ctx.Done():
		case <-quit:
		}
		return nil
	})
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(quit)
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = g.Stop(sctx)
	}()

	svc := newFake()
	spec := testSpec(svc)
	spec.Advertise = true
	spec.Flags = append(spec.Flags, &cli.StringFlag{Name: "gossip-addr"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- daemon.Run(ctx, spec, []string{"testd", "--dev", "--data-dir", dataDir, "--gossip-addr", g.Bus.Addr().String()}, io.Discard, &lockedWriter{})
	}()
	select {
	case <-svc.started:
	case code := <-done:
		t.Fatalf("Run exited early with %d", code)
	}
	want := svc.rt.Bus.Addr().String()
	eventually.True(t, 20*time.Second, "testd's address in gossip", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return addrs["testd"] == want
	})
	cancel()
	if code := <-done; code != daemon.ExitOK {
		t.Fatalf("Run = %d; want 0", code)
	}
}
