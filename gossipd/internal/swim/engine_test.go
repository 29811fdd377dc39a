package swim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

func without(nodes []*simNode, x *simNode) []*simNode {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *simNode) bool { return n == x })
}

func TestJoinConvergence(t *testing.T) {
	for _, n := range []int{2, 8, 32} {
		s := newSim(t, DefaultLANConfig())
		start := s.Now()
		s.cluster(n)
		t.Logf("%d nodes converged in %v of virtual time", n, s.Now().Sub(start))
	}
}

func TestCrashDetectedByAll(t *testing.T) {
	cfg := DefaultLANConfig()
	for _, loss := range []float64{0, 0.05, 0.10} {
		s := newSim(t, cfg)
		nodes := s.cluster(16)
		s.loss = loss
		victim := nodes[5]
		victim.crashed = true
		// Bound: a full probe round over 15 members under worst health
		// scaling is far below this; the suspicion maximum for n=16 is
		// 6 * 4 * log10(16) s = 28.9 s.
		bound := 60 * time.Second
		took, ok := s.runUntil(bound, func() bool {
			return s.allSee(without(nodes, victim), []*simNode{victim}, gossippb.MemberState_MEMBER_STATE_DEAD)
		})
		if !ok {
			t.Fatalf("loss %.0f%%: crashed node not dead everywhere within %v", loss*100, bound)
		}
		t.Logf("loss %.0f%%: crash seen dead by all in %v", loss*100, took)
		for _, r := range s.events {
			if r.ev.Type == gossippb.EventType_EVENT_TYPE_DEAD && r.ev.Member.ID != victim.id {
				t.Errorf("loss %.0f%%: node %d falsely declared %d dead", loss*100, r.observer, r.ev.Member.ID)
			}
		}
	}
}

func TestLeaveVersusFailure(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(8)
	leaver := nodes[3]
	leaver.e.Leave()
	// Gossip spreads it in about a second; a node the retransmit-limited
	// gossip missed learns it from the next push-pull.
	took, ok := s.runUntil(2*s.cfg.PushPullInterval, func() bool {
		return s.allSee(without(nodes, leaver), []*simNode{leaver}, gossippb.MemberState_MEMBER_STATE_LEFT)
	})
	if !ok {
		t.Fatal("leave not seen as left by all within two push-pull intervals")
	}
	t.Logf("leave seen by all in %v", took)
	leaver.e.Stop()
	s.run(40 * time.Second)
	if !s.allSee(without(nodes, leaver), []*simNode{leaver}, gossippb.MemberState_MEMBER_STATE_LEFT) {
		t.Fatal("a left node turned into another state after it stopped")
	}
}

func TestRejoinWithHigherIncarnation(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(6)
	victim := nodes[2]
	victim.crashed = true
	if _, ok := s.runUntil(60*time.Second, func() bool {
		return s.allSee(without(nodes, victim), []*simNode{victim}, gossippb.MemberState_MEMBER_STATE_DEAD)
	}); !ok {
		t.Fatal("victim not declared dead")
	}
	// The node comes back (same id, same address, fresh process): it
	// learns it was declared dead and refutes with a higher incarnation.
	victim.crashed = false
	victim.e.Stop()
	delete(s.nodes, victim.addr)
	back := s.add(victim.id, nil)
	back.e.Join([]string{nodes[0].addr}, nil)
	rest := append(without(nodes, victim), back)
	if _, ok := s.runUntil(30*time.Second, func() bool { return s.allSee(rest, rest, gossippb.MemberState_MEMBER_STATE_ALIVE) }); !ok {
		t.Fatal("restarted node not alive everywhere")
	}
	if inc := back.e.Self().Incarnation; inc < 2 {
		t.Fatalf("restarted node at incarnation %d; want a refutation above 1", inc)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(8)
	a, b := nodes[:4], nodes[4:]
	for _, x := range a {
		for _, y := range b {
			s.blocked[[2]string{x.addr, y.addr}] = true
			s.blocked[[2]string{y.addr, x.addr}] = true
		}
	}
	if _, ok := s.runUntil(90*time.Second, func() bool {
		return s.allSee(a, b, gossippb.MemberState_MEMBER_STATE_DEAD) && s.allSee(b, a, gossippb.MemberState_MEMBER_STATE_DEAD)
	}); !ok {
		t.Fatal("the two sides did not declare each other dead")
	}
	s.blocked = map[[2]string]bool{}
	// Heal: an operator (or the daemon's retry of its join list) joins
	// across the former partition.
	b[0].e.Join([]string{a[0].addr}, nil)
	if _, ok := s.runUntil(60*time.Second, func() bool { return s.allSee(nodes, nodes, gossippb.MemberState_MEMBER_STATE_ALIVE) }); !ok {
		t.Fatal("cluster did not heal")
	}
}

func TestStalledNodeNotFalselyDead(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(16)
	slow := nodes[7]
	// The slow node processes every inbound message 700 ms late: its acks
	// miss the probe timeout, so it gets suspected, but it refutes.
	slow.stall = 700 * time.Millisecond
	s.run(120 * time.Second)
	for _, r := range s.events {
		if r.ev.Type == gossippb.EventType_EVENT_TYPE_DEAD {
			t.Errorf("node %d declared %d dead at %v", r.observer, r.ev.Member.ID, r.at)
		}
	}
}

func TestMetadataPropagation(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(8)
	md := &gossippb.Metadata{Addresses: map[string]string{"raftd": "10.0.0.3:7402"}, Labels: map[string]string{"zone": "a"}, Capacity: map[string]float64{"ranges": 12}}
	if err := nodes[2].e.SetMetadata(md); err != nil {
		t.Fatal(err)
	}
	// Gossip carries it to most nodes within a second; a node the
	// retransmit-limited gossip missed gets it from the next push-pull.
	took, ok := s.runUntil(2*s.cfg.PushPullInterval, func() bool {
		for _, n := range nodes {
			m, _ := n.e.Member(nodes[2].id)
			if m.Metadata.GetLabels()["zone"] != "a" {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatal("metadata did not reach every node")
	}
	t.Logf("metadata reached all 8 nodes in %v", took)
	big := &gossippb.Metadata{Labels: map[string]string{"x": string(make([]byte, 600))}}
	before := nodes[2].e.Self()
	if err := nodes[2].e.SetMetadata(big); !errors.Is(err, ErrMetadataTooLarge) {
		t.Fatalf("SetMetadata of 600 bytes: %v; want ErrMetadataTooLarge", err)
	}
	if after := nodes[2].e.Self(); after.Incarnation != before.Incarnation || after.Metadata.GetLabels()["zone"] != "a" {
		t.Fatal("a refused SetMetadata changed the local member")
	}
}

func TestUserEventReachesAll(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(16)
	s.loss = 0.1
	nodes[0].e.Broadcast("hello", []byte("x"))
	s.run(10 * time.Second)
	// User events are not part of push-pull: like memberlist, a node the
	// retransmit-limited gossip misses never gets the event, which happens
	// in a few percent of runs at this size. Require all but one and no
	// duplicates.
	got := 0
	for _, n := range nodes[1:] {
		if len(n.user) > 1 {
			t.Fatalf("node %d got the event %d times", n.id, len(n.user))
		}
		got += len(n.user)
	}
	t.Logf("user event reached %d of %d nodes at 10%% loss", got, len(nodes)-1)
	if got < len(nodes)-2 {
		t.Fatalf("user event reached %d of %d nodes", got, len(nodes)-1)
	}
}

func TestVivaldiFromProbes(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	s.delay = 5 * time.Millisecond
	nodes := s.cluster(8)
	s.run(120 * time.Second)
	var ds []time.Duration
	for _, n := range nodes[1:] {
		est, ok := nodes[0].e.PeerCoordinate(n.id)
		if !ok {
			t.Fatalf("no coordinate of node %d learned from acks", n.id)
		}
		ds = append(ds, nodes[0].e.Coordinate().DistanceTo(est))
	}
	slices.Sort(ds)
	d := ds[len(ds)/2]
	// True RTT is 2 * (5 ms + up to 0.5 ms jitter).
	if d < 6*time.Millisecond || d > 16*time.Millisecond {
		t.Fatalf("median estimated RTT %v (all %v); want within 6-16 ms of a true 10-11 ms", d, ds)
	}
}

// TestStreamFallbackAvoidsSuspicion: with all datagrams to one node lost,
// the stream fallback probe still reaches it, so no one suspects it.
func TestStreamFallbackAvoidsSuspicion(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(6)
	deaf := nodes[4]
	for _, n := range nodes {
		s.blocked[[2]string{n.addr, deaf.addr}] = true
	}
	// Streams are modelled as a separate, reliable path: unblock them by
	// letting PingStream ignore datagram blocks.
	s.streamsIgnoreBlocks = true
	s.run(30 * time.Second)
	for _, r := range s.events {
		if r.ev.Type == gossippb.EventType_EVENT_TYPE_DEAD {
			t.Errorf("node %d declared %d dead", r.observer, r.ev.Member.ID)
		}
	}
	if s.streamPings == 0 {
		t.Fatal("no stream fallback probe was sent")
	}
}

// deaths returns the dead and left events about any member of ids (all
// members when ids is empty).
func (s *sim) deaths(ids ...uint64) []simRecord {
	var out []simRecord
	for _, r := range s.events {
		if r.ev.Type != gossippb.EventType_EVENT_TYPE_DEAD && r.ev.Type != gossippb.EventType_EVENT_TYPE_LEAVE {
			continue
		}
		if len(ids) == 0 || slices.Contains(ids, r.ev.Member.ID) {
			out = append(out, r)
		}
	}
	return out
}

func (s *sim) count(typ gossippb.EventType, id uint64) int {
	n := 0
	for _, r := range s.events {
		if r.ev.Type == typ && r.ev.Member.ID == id {
			n++
		}
	}
	return n
}

// TestNoFalseDeathUnderLoss: a healthy cluster runs for five virtual
// minutes at 0, 5 and 10% datagram loss, with and without the stream
// fallback probe, and no member is ever declared dead.
func TestNoFalseDeathUnderLoss(t *testing.T) {
	for _, tc := range []struct {
		loss     float64
		fallback bool
	}{{0, true}, {0.05, true}, {0.10, true}, {0.05, false}, {0.10, false}} {
		t.Run(fmt.Sprintf("loss=%.0f%%/fallback=%v", tc.loss*100, tc.fallback), func(t *testing.T) {
			cfg := DefaultLANConfig()
			cfg.StreamFallback = tc.fallback
			s := newSim(t, cfg)
			nodes := s.cluster(16)
			s.loss = tc.loss
			s.run(5 * time.Minute)
			suspects := 0
			for _, r := range s.events {
				if r.ev.Type == gossippb.EventType_EVENT_TYPE_SUSPECT {
					suspects++
				}
			}
			t.Logf("%d suspect events (summed over observers) in 5 min of 16 nodes; deaths are failures", suspects)
			for _, r := range s.deaths() {
				t.Errorf("node %d declared %d %v at %v", r.observer, r.ev.Member.ID, r.ev.Type, r.at)
			}
			if !s.allSee(nodes, nodes, gossippb.MemberState_MEMBER_STATE_ALIVE) {
				t.Error("not every node sees every node alive at the end")
			}
		})
	}
}

// TestCPUStallSuspectedAndRefutes: a node that stops processing anything
// (timers and messages) for 3 s, three times, is suspected while frozen,
// refutes when it wakes up, and is never declared dead; nor does it
// declare anyone dead on waking with stale probe timers.
func TestCPUStallSuspectedAndRefutes(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(16)
	frozen := nodes[9]
	for range 3 {
		frozen.pause(3 * time.Second)
		s.run(20 * time.Second)
	}
	got := s.count(gossippb.EventType_EVENT_TYPE_SUSPECT, frozen.id)
	if got == 0 {
		t.Fatal("the stalled node was never suspected: the stall was not seen")
	}
	t.Logf("three 3 s stalls: %d suspect events about the stalled node, which ends at incarnation %d", got, frozen.e.Self().Incarnation)
	for _, r := range s.deaths() {
		t.Errorf("node %d declared %d %v at %v", r.observer, r.ev.Member.ID, r.ev.Type, r.at)
	}
	if inc := frozen.e.Self().Incarnation; inc < 2 {
		t.Errorf("stalled node at incarnation %d; want a refutation", inc)
	}
	if !s.allSee(nodes, nodes, gossippb.MemberState_MEMBER_STATE_ALIVE) {
		t.Error("not every node sees every node alive after the stalls")
	}
}

// TestLongStallIsDeathThenRejoin: a node frozen for far longer than the
// suspicion timeout is declared dead (that is a failure), and on waking it
// learns of it, refutes with a higher incarnation and is alive again
// everywhere.
func TestLongStallIsDeathThenRejoin(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(8)
	frozen := nodes[2]
	frozen.pause(60 * time.Second)
	if _, ok := s.runUntil(59*time.Second, func() bool {
		return s.allSee(without(nodes, frozen), []*simNode{frozen}, gossippb.MemberState_MEMBER_STATE_DEAD)
	}); !ok {
		t.Fatal("a node frozen for 60 s was not declared dead by all")
	}
	s.run(frozen.pausedUntil.Sub(s.Now()))
	// Gossip to the dead (30 s) has run out; the woken node hears of its
	// death through push-pull at the latest.
	took, ok := s.runUntil(2*s.cfg.PushPullInterval, func() bool { return s.allSee(nodes, nodes, gossippb.MemberState_MEMBER_STATE_ALIVE) })
	if !ok {
		t.Fatal("woken node not alive again everywhere")
	}
	t.Logf("woken node alive everywhere again after %v at incarnation %d", took, frozen.e.Self().Incarnation)
}

// TestDeadNodeReclaimAtNewAddress: a crashed node restarts with the same
// id at another address; every member takes the new address.
func TestDeadNodeReclaimAtNewAddress(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	nodes := s.cluster(8)
	victim := nodes[4]
	victim.crashed = true
	if _, ok := s.runUntil(60*time.Second, func() bool {
		return s.allSee(without(nodes, victim), []*simNode{victim}, gossippb.MemberState_MEMBER_STATE_DEAD)
	}); !ok {
		t.Fatal("victim not declared dead")
	}
	victim.e.Stop()
	back := s.addAt(victim.id, "10.0.1.5:7403", nil)
	back.e.Join([]string{nodes[0].addr}, nil)
	rest := append(without(nodes, victim), back)
	took, ok := s.runUntil(30*time.Second, func() bool {
		if !s.allSee(rest, rest, gossippb.MemberState_MEMBER_STATE_ALIVE) {
			return false
		}
		for _, n := range rest {
			if m, _ := n.e.Member(back.id); m.Addr != back.addr {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatal("restarted node not alive at its new address everywhere")
	}
	t.Logf("reclaimed at the new address everywhere in %v", took)
}

// TestVivaldiOnLatencyMatrix: 16 members in two regions (one-way 0.5 ms
// plus a per-member access delay of 0-2 ms at each end, plus 10 ms
// between regions) learn coordinates from probe round trips alone; after
// five virtual minutes the median relative error of the estimated RTT over
// all pairs is reported and bounded, and each member's nearest peer by
// estimate is in its own region.
func TestVivaldiOnLatencyMatrix(t *testing.T) {
	s := newSim(t, DefaultLANConfig())
	s.jitter = 100 * time.Microsecond
	const n = 16
	access := map[string]time.Duration{}
	region := map[string]int{}
	rng := rand.New(rand.NewPCG(s.seed, 2))
	for i := 1; i <= n; i++ {
		a := fmt.Sprintf("10.0.0.%d:7403", i)
		access[a] = time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
		region[a] = i % 2
	}
	oneWay := func(from, to string) time.Duration {
		d := 500*time.Microsecond + access[from] + access[to]
		if region[from] != region[to] {
			d += 10 * time.Millisecond
		}
		return d
	}
	s.latency = oneWay
	nodes := s.cluster(n)
	s.run(5 * time.Minute)
	var rel []float64
	nearestOK := 0
	for _, a := range nodes {
		best, bestD := (*simNode)(nil), time.Duration(math.MaxInt64)
		for _, b := range nodes {
			if a == b {
				continue
			}
			est := a.e.Coordinate().DistanceTo(b.e.Coordinate())
			truth := 2*oneWay(a.addr, b.addr) + s.jitter/2
			rel = append(rel, math.Abs(float64(est-truth))/float64(truth))
			if est < bestD {
				best, bestD = b, est
			}
		}
		if region[best.addr] == region[a.addr] {
			nearestOK++
		}
	}
	slices.Sort(rel)
	med, p90 := rel[len(rel)/2], rel[len(rel)*9/10]
	t.Logf("after 5 min of probes: median relative RTT error %.1f%%, p90 %.1f%%; nearest peer in own region for %d/%d",
		100*med, 100*p90, nearestOK, n)
	if med > 0.25 {
		t.Errorf("median relative error %.3f; want <= 0.25", med)
	}
	if nearestOK < n-1 {
		t.Errorf("nearest peer in own region for %d/%d members", nearestOK, n)
	}
}
