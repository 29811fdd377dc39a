package multiraft

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// TestBootstrapStaggerAndTickCoalescing checks, on an unstarted store (no
// ticker, no rounds), that range i of a new layout holds its ticks for
// i/BootstrapCampaignsPerTick ticks and that ticks never pile up.
func TestBootstrapStaggerAndTickCoalescing(t *testing.T) {
	for _, tc := range []struct {
		perTick int
		ranges  uint32
	}{{perTick: 100, ranges: 4}, {perTick: 2, ranges: 5}, {perTick: 1, ranges: 3}} {
		net := NewLocalNetwork(1)
		cfg := testConfig()
		cfg.BootstrapCampaignsPerTick = tc.perTick
		s, err := NewStore(cfg, Deps{NodeID: 1, Addr: "node-1", Engine: storage.NewMem(), Transport: net.Transport(1),
			Clock: hlc.NewClock(hlc.Config{}), Logger: daemontest.Logger(t, slog.LevelWarn)})
		if err != nil {
			t.Fatal(err)
		}
		descs, err := PlanCluster(&kvpb.InitRequest{InitialRanges: tc.ranges}, []uint64{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Bootstrap(context.Background(), &raftmsgpb.BootstrapRequest{Descriptors: descs}); err != nil {
			t.Fatal(err)
		}
		live := map[uint64]bool{1: true}
		for i, d := range descs {
			r := s.Replica(d.GetRangeId())
			if want := i / tc.perTick; r.holdTicks != want {
				t.Errorf("perTick %d: range %d holds %d ticks, want %d", tc.perTick, d.GetRangeId(), r.holdTicks, want)
			}
			if want := d.GetReplicas()[0].GetNodeId() == 1; r.campaignOnTick != want {
				t.Errorf("perTick %d: range %d campaignOnTick %v, want %v", tc.perTick, d.GetRangeId(), r.campaignOnTick, want)
			}
			for k := range i / tc.perTick {
				if r.tick(live) {
					t.Errorf("perTick %d: range %d ticked during its hold (tick %d)", tc.perTick, d.GetRangeId(), k)
				}
			}
			for range 3 {
				if !r.tick(live) {
					t.Errorf("perTick %d: range %d not ticked after its hold", tc.perTick, d.GetRangeId())
				}
			}
			if r.in.ticks != 1 {
				t.Errorf("perTick %d: range %d has %d ticks pending after 3 ticks, want 1", tc.perTick, d.GetRangeId(), r.in.ticks)
			}
		}
		s.Stop()
		net.Close()
	}
}

// TestStaggeredBootstrapElects checks that a layout whose elections are
// spread over several ticks still elects a leader for every range.
func TestStaggeredBootstrapElects(t *testing.T) {
	c := newTestCluster(t, 3, nil, func(c *Config) { c.BootstrapCampaignsPerTick = 2 })
	descs := c.bootstrap(&kvpb.InitRequest{InitialRanges: 8})
	c.waitLeaders(descs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.put(ctx, "\xf0key", "v"); err != nil {
		t.Fatal(err)
	}
}

// TestFollowersSkipTicksWhileHearingFromLeader checks that followers
// that hear from their leader skip their ticks (the leader never does),
// and that once the leader is gone they tick again and elect another.
func TestFollowersSkipTicksWhileHearingFromLeader(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	skipped := map[uint64]uint64{}
	for _, id := range c.ids {
		skipped[id] = c.store(id).Replica(2).ticksSkipped.Load()
	}
	// Writes for 30 ticks or more: appends and heartbeats keep coming.
	for i := 0; c.store(leader).ticks.Load() < 30 || i < 10; i++ {
		if err := c.put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range c.ids {
		n := c.store(id).Replica(2).ticksSkipped.Load() - skipped[id]
		switch {
		case id == leader && n != 0:
			t.Errorf("leader node %d skipped %d ticks; want none", id, n)
		case id != leader && n == 0:
			t.Errorf("follower node %d skipped no tick while hearing from its leader", id)
		}
	}
	c.stop(leader)
	waitFor(t, 10*time.Second, "a follower to take over the range", func() bool {
		l := c.leaderOf(2)
		return l != 0 && l != leader
	})
}
