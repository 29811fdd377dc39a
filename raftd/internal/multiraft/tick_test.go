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

// TestLeaderTickDeferral checks, on an unstarted store, that a leader
// with traffic since the last tick leaves that tick for its next pass,
// that a deferred tick no pass took goes with the next one (two ticks in
// one pass), and that followers and idle leaders never defer.
func TestLeaderTickDeferral(t *testing.T) {
	net := NewLocalNetwork(1)
	defer net.Close()
	s, err := NewStore(testConfig(), Deps{NodeID: 1, Addr: "node-1", Engine: storage.NewMem(), Transport: net.Transport(1),
		Clock: hlc.NewClock(hlc.Config{}), Logger: daemontest.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	descs, err := PlanCluster(&kvpb.InitRequest{InitialRanges: 1}, []uint64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bootstrap(context.Background(), &raftmsgpb.BootstrapRequest{Descriptors: descs}); err != nil {
		t.Fatal(err)
	}
	r := s.Replica(descs[len(descs)-1].GetRangeId())
	r.holdTicks = 0
	live := map[uint64]bool{1: true}
	take := func() { // what a pass does with the inbox's ticks
		r.in.Lock()
		r.in.ticks, r.in.tickDeferred = 0, false
		r.in.Unlock()
	}
	pending := func() int {
		r.in.Lock()
		defer r.in.Unlock()
		return r.in.ticks
	}
	steps := []struct {
		name           string
		leader, active bool
		pass           bool // a pass took the inbox before this tick
		wantSchedule   bool
		wantTicks      int
	}{
		{name: "follower with traffic", active: true, wantSchedule: true, wantTicks: 1},
		{name: "idle leader", leader: true, pass: true, wantSchedule: true, wantTicks: 1},
		{name: "busy leader defers", leader: true, active: true, pass: true, wantTicks: 1},
		{name: "deferred tick taken by a pass", leader: true, active: true, pass: true, wantTicks: 1},
		{name: "no pass came: both ticks go", leader: true, wantSchedule: true, wantTicks: 2},
		{name: "a round still behind: no pile-up", leader: true, wantSchedule: true, wantTicks: 2},
		{name: "busy, but the last tick is still pending", leader: true, active: true, wantSchedule: true, wantTicks: 2},
	}
	deferred := s.Stats().TicksDeferred
	for _, st := range steps {
		if st.pass {
			take()
		}
		r.isLeader.Store(st.leader)
		r.leaderActive.Store(st.active)
		if got := r.tick(live); got != st.wantSchedule {
			t.Errorf("%s: tick scheduled a pass: %v, want %v", st.name, got, st.wantSchedule)
		}
		if got := pending(); got != st.wantTicks {
			t.Errorf("%s: %d ticks pending, want %d", st.name, got, st.wantTicks)
		}
	}
	if got := s.Stats().TicksDeferred - deferred; got != 2 {
		t.Errorf("TicksDeferred grew by %d, want 2", got)
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
	lr := c.store(leader).Replica(2)
	raftTicks := func() uint64 {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		return lr.mu.ticks
	}
	deferred, ticks0, storeTicks0 := lr.ticksDeferred.Load(), raftTicks(), c.store(leader).ticks.Load()
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
	// The leader leaves ticks to the passes its traffic brings, and its
	// raft clock keeps the store's pace (a deferred tick is never lost:
	// at most the last one is still pending, plus one a round may hold).
	if lr.ticksDeferred.Load() == deferred {
		t.Errorf("the leader deferred no tick while taking writes")
	}
	if got, want := raftTicks()-ticks0, c.store(leader).ticks.Load()-storeTicks0; got+2 < want {
		t.Errorf("the leader's raft clock took %d ticks while the store ticked %d", got, want)
	}
	c.stop(leader)
	waitFor(t, 10*time.Second, "a follower to take over the range", func() bool {
		l := c.leaderOf(2)
		return l != 0 && l != leader
	})
}
