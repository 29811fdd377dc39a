package swim

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// Member is one entry of the membership table.
type Member struct {
	ID          uint64
	Addr        string
	Incarnation uint64
	State       gossippb.MemberState
	Metadata    *gossippb.Metadata
	Changed     time.Time
	suspicion   *Suspicion
}

// Event is a membership change produced by State.
type Event struct {
	Type   gossippb.EventType
	Member Member
}

// State is the membership table and the incarnation rules of SWIM:
// alive wins only with a higher incarnation, suspect and dead at a lower
// incarnation are ignored, a node accused about itself refutes with a
// higher incarnation, dead from the node itself is a graceful leave, and a
// dead or left node may come back with a higher incarnation or (after
// Config.DeadNodeReclaim) from a new address. Changes worth spreading are
// pushed to the broadcast queue. Not safe for concurrent use: the engine
// serialises calls.
type State struct {
	cfg       Config
	self      *Member
	members   map[uint64]*Member
	queue     *Queue
	awareness *Awareness
}

// NewState returns a table holding only the local node, alive at
// incarnation 1, and queues the node's alive announcement.
func NewState(cfg Config, id uint64, addr string, md *gossippb.Metadata, q *Queue, a *Awareness, now time.Time) *State {
	self := &Member{ID: id, Addr: addr, Incarnation: 1, State: gossippb.MemberState_MEMBER_STATE_ALIVE, Metadata: md, Changed: now}
	s := &State{cfg: cfg, self: self, members: map[uint64]*Member{id: self}, queue: q, awareness: a}
	// The node announces itself: once it has joined, its own gossip
	// spreads its alive alongside the seed's, instead of leaving that to
	// the seed alone (whose retransmits may all miss some member).
	q.Push(s.aliveBroadcast(self))
	return s
}

// Self returns a copy of the local member.
func (s *State) Self() Member { return *s.self }

// Member returns a copy of a member.
func (s *State) Member(id uint64) (Member, bool) {
	m, ok := s.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Members returns copies of all members ordered by id.
func (s *State) Members() []Member {
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// NumAlive returns the number of alive or suspect members, self included.
func (s *State) NumAlive() int {
	n := 0
	for _, m := range s.members {
		if m.State == gossippb.MemberState_MEMBER_STATE_ALIVE || m.State == gossippb.MemberState_MEMBER_STATE_SUSPECT {
			n++
		}
	}
	return n
}

func (s *State) aliveBroadcast(m *Member) *gossippb.Broadcast {
	return &gossippb.Broadcast{Kind: &gossippb.Broadcast_Alive{Alive: &gossippb.Alive{NodeId: m.ID, Incarnation: m.Incarnation, Addr: m.Addr, Metadata: m.Metadata}}}
}

// refute raises the local incarnation above accused and announces it.
func (s *State) refute(accused uint64) {
	s.self.Incarnation = max(s.self.Incarnation, accused) + 1
	s.awareness.Apply(1)
	s.queue.Push(s.aliveBroadcast(s.self))
}

// answerAccusation handles a suspicion or death of the local node at
// incarnation inc: at or above the local incarnation it is refuted. Below
// it, the node has refuted already but the accuser has not heard yet (the
// refutation ran out of retransmits before reaching it, typically while
// this node was stalled): the current alive is queued again, so the ack to
// the accuser's next probe, which carries the stale suspicion by the buddy
// system, also carries the refutation. Memberlist ignores such stale
// accusations and leaves the accuser to gossip or push-pull.
func (s *State) answerAccusation(inc uint64) {
	if inc >= s.self.Incarnation {
		s.refute(inc)
		return
	}
	s.queue.Push(s.aliveBroadcast(s.self))
}

// SetMetadata replaces the local metadata and announces it with a higher
// incarnation.
func (s *State) SetMetadata(md *gossippb.Metadata) {
	s.self.Metadata = md
	s.self.Incarnation++
	s.queue.Push(s.aliveBroadcast(s.self))
}

// Leave marks the local node left and queues the announcement.
func (s *State) Leave(now time.Time) {
	s.self.State = gossippb.MemberState_MEMBER_STATE_LEFT
	s.self.Changed = now
	s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Dead{Dead: &gossippb.Dead{NodeId: s.self.ID, Incarnation: s.self.Incarnation, FromId: s.self.ID}}})
}

// Apply merges one broadcast and returns the resulting events.
func (s *State) Apply(b *gossippb.Broadcast, now time.Time) []Event {
	switch k := b.GetKind().(type) {
	case *gossippb.Broadcast_Alive:
		return s.applyAlive(k.Alive, now)
	case *gossippb.Broadcast_Suspect:
		return s.applySuspect(k.Suspect, now)
	case *gossippb.Broadcast_Dead:
		return s.applyDead(k.Dead, now)
	}
	return nil
}

func gone(st gossippb.MemberState) bool {
	return st == gossippb.MemberState_MEMBER_STATE_DEAD || st == gossippb.MemberState_MEMBER_STATE_LEFT
}

func (s *State) applyAlive(a *gossippb.Alive, now time.Time) []Event {
	if a.GetNodeId() == s.self.ID {
		if s.self.State == gossippb.MemberState_MEMBER_STATE_ALIVE && a.GetIncarnation() >= s.self.Incarnation &&
			(a.GetAddr() != s.self.Addr || !proto.Equal(a.GetMetadata(), s.self.Metadata) || a.GetIncarnation() > s.self.Incarnation) {
			s.refute(a.GetIncarnation())
		}
		return nil
	}
	m, ok := s.members[a.GetNodeId()]
	if !ok {
		m = &Member{ID: a.GetNodeId(), Addr: a.GetAddr(), Incarnation: a.GetIncarnation(), State: gossippb.MemberState_MEMBER_STATE_ALIVE, Metadata: a.GetMetadata(), Changed: now}
		s.members[m.ID] = m
		s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Alive{Alive: a}})
		return []Event{{Type: gossippb.EventType_EVENT_TYPE_JOIN, Member: *m}}
	}
	reclaim := gone(m.State) && a.GetAddr() != m.Addr && now.Sub(m.Changed) >= s.cfg.DeadNodeReclaim
	if a.GetIncarnation() <= m.Incarnation && !reclaim {
		return nil
	}
	wasGone := gone(m.State)
	changed := a.GetAddr() != m.Addr || !proto.Equal(a.GetMetadata(), m.Metadata)
	m.Addr, m.Incarnation, m.Metadata = a.GetAddr(), a.GetIncarnation(), a.GetMetadata()
	if m.State != gossippb.MemberState_MEMBER_STATE_ALIVE {
		m.State, m.Changed = gossippb.MemberState_MEMBER_STATE_ALIVE, now
	}
	m.suspicion = nil
	s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Alive{Alive: a}})
	switch {
	case wasGone:
		return []Event{{Type: gossippb.EventType_EVENT_TYPE_JOIN, Member: *m}}
	case changed:
		return []Event{{Type: gossippb.EventType_EVENT_TYPE_UPDATE, Member: *m}}
	}
	return nil
}

func (s *State) applySuspect(sp *gossippb.Suspect, now time.Time) []Event {
	if sp.GetNodeId() == s.self.ID {
		if s.self.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			s.answerAccusation(sp.GetIncarnation())
		}
		return nil
	}
	m, ok := s.members[sp.GetNodeId()]
	if !ok || gone(m.State) || sp.GetIncarnation() < m.Incarnation {
		return nil
	}
	if m.State == gossippb.MemberState_MEMBER_STATE_SUSPECT && m.suspicion != nil {
		if m.suspicion.Confirm(sp.GetFromId()) {
			s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: sp}})
		}
		return nil
	}
	m.Incarnation = sp.GetIncarnation()
	m.State, m.Changed = gossippb.MemberState_MEMBER_STATE_SUSPECT, now
	n := s.NumAlive()
	minT := SuspicionMin(s.cfg.SuspicionMult, n, s.cfg.ProbeInterval)
	k := s.cfg.SuspicionMult - 2
	if n-2 < k {
		k = 0
	}
	m.suspicion = NewSuspicion(now, sp.GetFromId(), k, minT, time.Duration(s.cfg.SuspicionMaxTimeoutMult)*minT)
	s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: sp}})
	return []Event{{Type: gossippb.EventType_EVENT_TYPE_SUSPECT, Member: *m}}
}

func (s *State) applyDead(d *gossippb.Dead, now time.Time) []Event {
	if d.GetNodeId() == s.self.ID {
		if d.GetFromId() != s.self.ID && s.self.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			s.answerAccusation(d.GetIncarnation())
		}
		return nil
	}
	m, ok := s.members[d.GetNodeId()]
	if !ok || gone(m.State) || d.GetIncarnation() < m.Incarnation {
		return nil
	}
	m.Incarnation, m.Changed, m.suspicion = d.GetIncarnation(), now, nil
	ev := gossippb.EventType_EVENT_TYPE_DEAD
	m.State = gossippb.MemberState_MEMBER_STATE_DEAD
	if d.GetFromId() == d.GetNodeId() {
		m.State, ev = gossippb.MemberState_MEMBER_STATE_LEFT, gossippb.EventType_EVENT_TYPE_LEAVE
	}
	s.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Dead{Dead: d}})
	return []Event{{Type: ev, Member: *m}}
}

// Suspect raises a local suspicion of id (a failed probe), or confirms an
// existing one (an independent confirmation that shortens the timeout and
// is re-broadcast), and returns the events.
func (s *State) Suspect(id uint64, now time.Time) []Event {
	m, ok := s.members[id]
	if !ok || gone(m.State) || id == s.self.ID {
		return nil
	}
	return s.applySuspect(&gossippb.Suspect{NodeId: id, Incarnation: m.Incarnation, FromId: s.self.ID}, now)
}

// Expire declares dead every suspect whose suspicion deadline has passed.
func (s *State) Expire(now time.Time) []Event {
	var evs []Event
	for _, m := range s.Members() {
		mm := s.members[m.ID]
		if mm.State == gossippb.MemberState_MEMBER_STATE_SUSPECT && mm.suspicion != nil && !now.Before(mm.suspicion.Deadline()) {
			evs = append(evs, s.applyDead(&gossippb.Dead{NodeId: mm.ID, Incarnation: mm.Incarnation, FromId: s.self.ID}, now)...)
		}
	}
	return evs
}
