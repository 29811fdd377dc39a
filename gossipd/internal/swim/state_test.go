package swim

import (
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

var t0 = time.Unix(1000, 0)

func newState(t *testing.T, n int) (*State, *Queue) {
	t.Helper()
	q := NewQueue(4, func() int { return n })
	s := NewState(DefaultLANConfig(), 1, "a:1", nil, q, NewAwareness(8), t0)
	for i := 2; i <= n; i++ {
		s.Apply(alive(uint64(i), 1), t0)
	}
	return s, q
}

func suspectB(node, inc, from uint64) *gossippb.Broadcast {
	return &gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: &gossippb.Suspect{NodeId: node, Incarnation: inc, FromId: from}}}
}

func deadB(node, inc, from uint64) *gossippb.Broadcast {
	return &gossippb.Broadcast{Kind: &gossippb.Broadcast_Dead{Dead: &gossippb.Dead{NodeId: node, Incarnation: inc, FromId: from}}}
}

func state(t *testing.T, s *State, id uint64) gossippb.MemberState {
	t.Helper()
	m, ok := s.Member(id)
	if !ok {
		t.Fatalf("member %d unknown", id)
	}
	return m.State
}

func TestIncarnationRules(t *testing.T) {
	s, _ := newState(t, 5)
	if s.NumAlive() != 5 {
		t.Fatalf("NumAlive = %d; want 5", s.NumAlive())
	}
	if evs := s.Apply(suspectB(2, 0, 3), t0); len(evs) != 0 {
		t.Fatalf("suspect at an older incarnation produced %v", evs)
	}
	evs := s.Apply(suspectB(2, 1, 3), t0)
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_SUSPECT {
		t.Fatalf("suspect events %v; want one SUSPECT", evs)
	}
	if s.Apply(alive(2, 1), t0); state(t, s, 2) != gossippb.MemberState_MEMBER_STATE_SUSPECT {
		t.Fatal("alive at the same incarnation cleared a suspicion")
	}
	if s.Apply(alive(2, 2), t0); state(t, s, 2) != gossippb.MemberState_MEMBER_STATE_ALIVE {
		t.Fatal("alive at a higher incarnation did not refute")
	}
	evs = s.Apply(deadB(3, 1, 4), t0)
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_DEAD {
		t.Fatalf("dead events %v; want DEAD", evs)
	}
	evs = s.Apply(deadB(4, 1, 4), t0)
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_LEAVE || state(t, s, 4) != gossippb.MemberState_MEMBER_STATE_LEFT {
		t.Fatalf("self-declared dead events %v; want LEAVE and state left", evs)
	}
	evs = s.Apply(alive(3, 2), t0)
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_JOIN {
		t.Fatalf("rejoin with higher incarnation events %v; want JOIN", evs)
	}
}

func TestRefutation(t *testing.T) {
	for name, b := range map[string]*gossippb.Broadcast{"suspect": suspectB(1, 1, 2), "dead": deadB(1, 1, 2)} {
		s, q := newState(t, 3)
		q.Take(0, 1<<20) // drain the joins
		for q.Len() > 0 {
			q.Take(0, 1<<20)
		}
		s.Apply(b, t0)
		if s.Self().Incarnation != 2 || s.Self().State != gossippb.MemberState_MEMBER_STATE_ALIVE {
			t.Fatalf("%s: self %+v; want alive at incarnation 2", name, s.Self())
		}
		out := q.Take(0, 1<<20)
		if len(out) != 1 || out[0].GetAlive().GetIncarnation() != 2 {
			t.Fatalf("%s: queued %v; want the refuting alive", name, out)
		}
		if s.awareness.Score() != 1 {
			t.Fatalf("%s: awareness %d; want 1 after refuting", name, s.awareness.Score())
		}
	}
}

func TestSuspicionExpiresWithConfirmations(t *testing.T) {
	s, _ := newState(t, 10)
	s.Suspect(5, t0)
	minT := SuspicionMin(4, 10, time.Second)
	if evs := s.Expire(t0.Add(minT)); len(evs) != 0 {
		t.Fatalf("expired at min without confirmations: %v", evs)
	}
	s.Apply(suspectB(5, 1, 2), t0)
	s.Apply(suspectB(5, 1, 3), t0) // k = 2 confirmations
	evs := s.Expire(t0.Add(minT))
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_DEAD {
		t.Fatalf("after k confirmations at min: %v; want DEAD", evs)
	}
	s.Suspect(6, t0)
	maxT := 6 * minT
	if evs := s.Expire(t0.Add(maxT - time.Millisecond)); len(evs) != 0 {
		t.Fatal("expired before max")
	}
	if evs := s.Expire(t0.Add(maxT)); len(evs) != 1 {
		t.Fatal("did not expire at max")
	}
}

func TestDeadNodeReclaimNewAddress(t *testing.T) {
	s, _ := newState(t, 3)
	s.Apply(deadB(2, 1, 3), t0)
	b := alive(2, 1)
	b.GetAlive().Addr = "new:9"
	evs := s.Apply(b, t0.Add(time.Second))
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_JOIN {
		t.Fatalf("restart at a new address events %v; want JOIN", evs)
	}
	if m, _ := s.Member(2); m.Addr != "new:9" {
		t.Fatalf("addr %q; want new:9", m.Addr)
	}
}

func TestMetadataUpdateEvent(t *testing.T) {
	s, _ := newState(t, 3)
	b := alive(2, 2)
	b.GetAlive().Metadata = &gossippb.Metadata{Labels: map[string]string{"zone": "a"}}
	evs := s.Apply(b, t0)
	if len(evs) != 1 || evs[0].Type != gossippb.EventType_EVENT_TYPE_UPDATE {
		t.Fatalf("metadata change events %v; want UPDATE", evs)
	}
}

// TestLocalSuspectConfirms: a failed probe of a member already suspected
// by someone else counts as a confirmation and is re-broadcast.
func TestLocalSuspectConfirms(t *testing.T) {
	s, q := newState(t, 10)
	s.Apply(suspectB(5, 1, 2), t0)
	for q.Len() > 0 {
		q.Take(0, 1<<20)
	}
	s.Suspect(5, t0)
	m, _ := s.Member(5)
	if m.suspicion.Confirmations() != 1 {
		t.Fatalf("confirmations %d; want 1", m.suspicion.Confirmations())
	}
	out := q.Take(0, 1<<20)
	if len(out) != 1 || out[0].GetSuspect().GetFromId() != 1 {
		t.Fatalf("queued %v; want our own suspect message", out)
	}
}

// TestStaleAccusationReannounces: a suspicion or death of the local node
// at an incarnation it has already refuted queues the current alive
// again, without raising the incarnation.
func TestStaleAccusationReannounces(t *testing.T) {
	for name, b := range map[string]*gossippb.Broadcast{"suspect": suspectB(1, 1, 2), "dead": deadB(1, 1, 2)} {
		s, q := newState(t, 3)
		s.Apply(suspectB(1, 1, 2), t0) // refuted: incarnation 2
		if s.Self().Incarnation != 2 {
			t.Fatalf("%s: incarnation %d after refuting; want 2", name, s.Self().Incarnation)
		}
		q.Take(broadcastOverhead, 1<<20)
		for q.Len() > 0 {
			q.Take(broadcastOverhead, 1<<20)
		}
		s.Apply(b, t0)
		if s.Self().Incarnation != 2 {
			t.Fatalf("%s: stale accusation raised the incarnation to %d", name, s.Self().Incarnation)
		}
		out := q.Take(broadcastOverhead, 1<<20)
		if len(out) != 1 || out[0].GetAlive().GetNodeId() != 1 || out[0].GetAlive().GetIncarnation() != 2 {
			t.Fatalf("%s: queue after a stale accusation = %v; want the current alive of node 1", name, out)
		}
	}
}

func TestPushPullScale(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 30 * time.Second}, {32, 30 * time.Second}, {33, 60 * time.Second}, {64, 60 * time.Second}, {65, 90 * time.Second}, {128, 90 * time.Second}, {1000, 180 * time.Second}} {
		if got := PushPullScale(30*time.Second, tc.n); got != tc.want {
			t.Errorf("PushPullScale(30s, %d) = %v; want %v", tc.n, got, tc.want)
		}
	}
}

func TestNewStateAnnouncesItself(t *testing.T) {
	q := NewQueue(4, func() int { return 1 })
	NewState(DefaultLANConfig(), 7, "a:7", nil, q, NewAwareness(8), t0)
	out := q.Take(broadcastOverhead, 1<<20)
	if len(out) != 1 || out[0].GetAlive().GetNodeId() != 7 || out[0].GetAlive().GetIncarnation() != 1 {
		t.Fatalf("queue of a new state = %v; want its own alive", out)
	}
}
