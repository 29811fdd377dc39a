package integration_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

// Raftd is a cluster of real raftd servers in this process, each on its
// own daemon runtime (real bus, test CA) with a volatile in-memory engine
// (no stored), knowing the others through Config.Peers. It is not
// initialized: call Init through a client.
type Raftd struct {
	rts   []*daemon.Runtime
	srvs  []*raftd.Server
	addrs []string
}

// StartRaftd starts n raftd servers with a fast raft tick and waits until
// each is ready; they stop at test cleanup.
func StartRaftd(tb testing.TB, n int) *Raftd {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	c := &Raftd{}
	// Each node's peers are known before any starts: reserve the ports.
	for range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		c.addrs = append(c.addrs, pc.LocalAddr().String())
		pc.Close()
	}
	for i := range n {
		common := daemontest.Common(tb)
		common.BusAddr = c.addrs[i]
		rt := daemontest.NewUnstartedRuntime(tb, raftd.Name, daemontest.CA(tb), common)
		cfg := raftd.DefaultConfig()
		cfg.StoredAddr, cfg.GossipAddr = "", ""
		cfg.TickInterval = 20 * time.Millisecond
		for j, a := range c.addrs {
			if j != i {
				cfg.Peers = append(cfg.Peers, a)
			}
		}
		srv, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
		if err != nil {
			tb.Fatal(err)
		}
		if err := rt.Start(ctx); err != nil {
			tb.Fatal(err)
		}
		if err := srv.Start(ctx); err != nil {
			_ = srv.Stop(context.Background())
			tb.Fatal(err)
		}
		c.rts, c.srvs = append(c.rts, rt), append(c.srvs, srv)
	}
	// Registered after every runtime's cleanup, so every server stops
	// before any bus does (a bus waits for the handlers of streams from
	// servers still running).
	tb.Cleanup(func() {
		var wg sync.WaitGroup
		for _, srv := range c.srvs {
			wg.Go(func() { _ = srv.Stop(context.Background()) })
		}
		wg.Wait()
	})
	for _, srv := range c.srvs {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			tb.Fatal("integration: raftd not ready")
		}
	}
	return c
}

// Addrs returns the servers' bus addresses.
func (c *Raftd) Addrs() []string { return append([]string(nil), c.addrs...) }

// Stop stops server i and its bus, as if the node died.
func (c *Raftd) Stop(tb testing.TB, i int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.srvs[i].Stop(ctx); err != nil {
		tb.Errorf("clienttest: stop raftd %d: %v", i, err)
	}
	if err := c.rts[i].Stop(ctx); err != nil {
		tb.Errorf("clienttest: stop runtime %d: %v", i, err)
	}
}
