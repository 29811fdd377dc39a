package swim

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/gossipd/internal/vivaldi"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// Clock is the engine's time source; tests substitute a virtual clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f once after d, on a goroutine of the clock's
	// choosing; Stop cancels it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// WallClock is the Clock of production: the time package.
type WallClock struct{}

// Now returns time.Now().
func (WallClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (WallClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Transport carries the engine's messages. Methods must not block and
// must not call back into the engine synchronously.
type Transport interface {
	// SendPacket sends one datagram (at most Config.MaxPacketSize bytes)
	// to addr; loss is allowed.
	SendPacket(addr string, b []byte)
	// PushPull sends the local state to addr over a reliable stream and
	// calls done with the peer's state or an error.
	PushPull(addr string, req *gossippb.PushPullState, done func(*gossippb.PushPullState, error))
	// PingStream sends a ping over a reliable stream (the fallback probe)
	// and calls done with the ack or an error; it gives up after timeout.
	PingStream(addr string, ping *gossippb.Ping, timeout time.Duration, done func(*gossippb.Ack, error))
}

// EngineDeps are an engine's collaborators.
type EngineDeps struct {
	// Clock drives every timer. Required.
	Clock Clock
	// Transport sends messages. Required.
	Transport Transport
	// Seed seeds the probe order and member choices.
	Seed uint64
	// OnEvent receives membership events. It is called with the engine's
	// lock held: it must not call the engine. Optional.
	OnEvent func(Event)
	// OnUser receives user events (once per event). Same contract as
	// OnEvent. Optional.
	OnUser func(*gossippb.UserEvent)
}

// Engine runs SWIM with Lifeguard over a Transport: a randomized
// round-robin probe per (health-scaled) probe interval, indirect probes
// with nacks after the probe timeout, suspicion at the end of the
// interval, the buddy system (a suspect target hears of its suspicion in
// the ping), piggybacked and periodically gossiped broadcasts, and
// periodic push-pull of the full state. Safe for concurrent use.
type Engine struct {
	cfg     Config
	cluster string
	deps    EngineDeps

	mu struct {
		sync.Mutex
		state     *State
		queue     *Queue
		awareness *Awareness
		viv       *vivaldi.Client
		coords    map[uint64]*gossippb.Coordinate
		rng       *rand.Rand
		seq       uint64
		order     []uint64
		next      int
		pending   map[uint64]*pendingProbe
		userSeq   uint64
		seenUser  map[[2]uint64]struct{}
		stops     []func() bool
		running   bool
	}
}

type pendingProbe struct {
	target   uint64
	sent     time.Time
	acked    bool
	nacks    int
	relayTo  string // set for probes done on behalf of another node
	relaySeq uint64
}

// NewEngine returns an engine for node id at addr. Start begins probing.
func NewEngine(cfg Config, cluster string, id uint64, addr string, md *gossippb.Metadata, deps EngineDeps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, fmt.Errorf("swim: node id must not be 0")
	}
	viv, err := vivaldi.New(vivaldi.DefaultConfig(), deps.Seed^id)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, cluster: cluster, deps: deps}
	e.mu.awareness = NewAwareness(cfg.AwarenessMaxMultiplier)
	e.mu.queue = NewQueue(cfg.RetransmitMult, func() int { return e.mu.state.NumAlive() })
	e.mu.state = NewState(cfg, id, addr, md, e.mu.queue, e.mu.awareness, deps.Clock.Now())
	e.mu.viv = viv
	e.mu.coords = map[uint64]*gossippb.Coordinate{}
	e.mu.rng = rand.New(rand.NewPCG(deps.Seed, id))
	e.mu.pending = map[uint64]*pendingProbe{}
	e.mu.seenUser = map[[2]uint64]struct{}{}
	return e, nil
}

// Start schedules the probe, gossip and push-pull loops.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.running {
		return
	}
	e.mu.running = true
	// The first tick of each loop comes at a random point of its
	// interval, as in memberlist: members started together would otherwise
	// gossip in lockstep, and a message received just after a member's
	// gossip round would always wait a whole interval there.
	e.afterLocked(e.staggerLocked(e.cfg.ProbeInterval), e.probeTick)
	e.afterLocked(e.staggerLocked(e.cfg.GossipInterval), e.gossipTick)
	if e.cfg.PushPullInterval > 0 {
		e.afterLocked(e.staggerLocked(e.cfg.PushPullInterval), e.pushPullTick)
	}
}

// staggerLocked returns a random duration in (0, d].
func (e *Engine) staggerLocked(d time.Duration) time.Duration {
	return time.Duration(e.mu.rng.Int64N(int64(d))) + 1
}

// Stop cancels every timer; the engine then stays silent (a crash, from
// the cluster's point of view, unless Leave was gossiped first).
func (e *Engine) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.running = false
	for _, s := range e.mu.stops {
		s()
	}
	e.mu.stops = nil
}

func (e *Engine) afterLocked(d time.Duration, f func()) {
	if !e.mu.running {
		return
	}
	e.mu.stops = append(e.mu.stops, e.deps.Clock.AfterFunc(d, f))
	if len(e.mu.stops) > 64 {
		e.mu.stops = e.mu.stops[len(e.mu.stops)-32:]
	}
}

func (e *Engine) emitLocked(evs []Event) {
	if e.deps.OnEvent == nil {
		return
	}
	for _, ev := range evs {
		e.deps.OnEvent(ev)
	}
}

// Members returns the membership table.
func (e *Engine) Members() []Member {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.state.Members()
}

// Member returns one member of the table.
func (e *Engine) Member(id uint64) (Member, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.state.Member(id)
}

// Self returns the local member.
func (e *Engine) Self() Member {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.state.Self()
}

// HealthScore returns Lifeguard's local health score.
func (e *Engine) HealthScore() int { return e.mu.awareness.Score() }

// Coordinate returns the local Vivaldi coordinate.
func (e *Engine) Coordinate() *vivaldi.Coordinate {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.viv.Coordinate()
}

// PeerCoordinate returns the last coordinate a member sent, if any.
func (e *Engine) PeerCoordinate(id uint64) (*vivaldi.Coordinate, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id == e.mu.state.Self().ID {
		return e.mu.viv.Coordinate(), true
	}
	c, ok := e.mu.coords[id]
	if !ok {
		return nil, false
	}
	return CoordinateFromProto(c), true
}

// SetMetadata replaces the local metadata and announces it.
func (e *Engine) SetMetadata(md *gossippb.Metadata) error {
	if n := sizeOf(md); n > e.cfg.MaxMetadataSize {
		return fmt.Errorf("metadata of %d bytes exceeds %d: %w", n, e.cfg.MaxMetadataSize, ErrMetadataTooLarge)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.state.SetMetadata(md)
	return nil
}

// Leave announces a graceful leave; keep the engine running a few gossip
// intervals so that the announcement spreads, then Stop it.
func (e *Engine) Leave() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.state.Leave(e.deps.Clock.Now())
	e.gossipLocked()
}

// Broadcast queues a cluster-wide user event and returns its id.
func (e *Engine) Broadcast(name string, payload []byte) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.userSeq++
	ev := &gossippb.UserEvent{Origin: e.mu.state.Self().ID, Id: e.mu.userSeq, Name: name, Payload: payload}
	e.mu.seenUser[[2]uint64{ev.Origin, ev.Id}] = struct{}{}
	e.mu.queue.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_User{User: ev}})
	return ev.Id
}

// Join exchanges state with each address; done gets the number that
// answered.
func (e *Engine) Join(addrs []string, done func(int)) {
	e.mu.Lock()
	req := e.pushPullStateLocked(true)
	e.mu.Unlock()
	var mu sync.Mutex
	left, ok := len(addrs), 0
	if left == 0 {
		if done != nil {
			done(0)
		}
		return
	}
	for _, a := range addrs {
		e.deps.Transport.PushPull(a, req, func(resp *gossippb.PushPullState, err error) {
			if err == nil {
				e.MergeState(resp)
			}
			mu.Lock()
			if err == nil {
				ok++
			}
			left--
			finished, n := left == 0, ok
			mu.Unlock()
			if finished && done != nil {
				done(n)
			}
		})
	}
}

func (e *Engine) nextSeqLocked() uint64 {
	e.mu.seq++
	return e.mu.seq
}

// probeTargetLocked picks the next member in a shuffled round-robin order.
func (e *Engine) probeTargetLocked() (Member, bool) {
	self := e.mu.state.Self().ID
	for range 2 {
		for e.mu.next < len(e.mu.order) {
			id := e.mu.order[e.mu.next]
			e.mu.next++
			m, ok := e.mu.state.Member(id)
			if ok && id != self && !gone(m.State) {
				return m, true
			}
		}
		e.mu.order = e.mu.order[:0]
		for _, m := range e.mu.state.Members() {
			if m.ID != self && !gone(m.State) {
				e.mu.order = append(e.mu.order, m.ID)
			}
		}
		e.mu.rng.Shuffle(len(e.mu.order), func(i, j int) { e.mu.order[i], e.mu.order[j] = e.mu.order[j], e.mu.order[i] })
		e.mu.next = 0
	}
	return Member{}, false
}

func (e *Engine) probeTick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mu.running {
		return
	}
	e.afterLocked(e.mu.awareness.Scale(e.cfg.ProbeInterval), e.probeTick)
	if e.mu.state.Self().State != gossippb.MemberState_MEMBER_STATE_ALIVE {
		return
	}
	e.emitLocked(e.mu.state.Expire(e.deps.Clock.Now()))
	target, ok := e.probeTargetLocked()
	if !ok {
		return
	}
	seq := e.nextSeqLocked()
	p := &pendingProbe{target: target.ID, sent: e.deps.Clock.Now()}
	e.mu.pending[seq] = p
	self := e.mu.state.Self()
	pkt := &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_Ping{Ping: &gossippb.Ping{Seq: seq, Target: target.ID, SourceId: self.ID, SourceAddr: self.Addr}}}
	if target.State == gossippb.MemberState_MEMBER_STATE_SUSPECT {
		// Buddy system: tell the suspect at once so it can refute.
		pkt.Broadcasts = append(pkt.Broadcasts, &gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: &gossippb.Suspect{NodeId: target.ID, Incarnation: target.Incarnation, FromId: self.ID}}})
	}
	e.sendLocked(target.Addr, pkt)
	timeout := e.mu.awareness.Scale(e.cfg.ProbeTimeout)
	interval := e.mu.awareness.Scale(e.cfg.ProbeInterval)
	expectedNacks := 0
	e.afterLocked(timeout, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if p.acked || !e.mu.running {
			return
		}
		expectedNacks = e.indirectLocked(seq, target)
		if e.cfg.StreamFallback {
			ping := &gossippb.Ping{Seq: seq, Target: target.ID, SourceId: self.ID, SourceAddr: self.Addr}
			e.deps.Transport.PingStream(target.Addr, ping, interval-timeout, func(ack *gossippb.Ack, err error) {
				if err != nil || ack.GetFromId() != target.ID {
					return
				}
				e.mu.Lock()
				defer e.mu.Unlock()
				p.acked = true
			})
		}
	})
	e.afterLocked(interval, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.mu.pending, seq)
		if !e.mu.running {
			return
		}
		if p.acked {
			e.mu.awareness.Apply(-1)
			return
		}
		if expectedNacks > 0 {
			e.mu.awareness.Apply(expectedNacks - p.nacks)
		} else {
			e.mu.awareness.Apply(1)
		}
		e.emitLocked(e.mu.state.Suspect(target.ID, e.deps.Clock.Now()))
	})
}

// indirectLocked asks up to IndirectChecks other members to probe target
// and returns how many were asked.
func (e *Engine) indirectLocked(seq uint64, target Member) int {
	self := e.mu.state.Self()
	var cands []Member
	for _, m := range e.mu.state.Members() {
		if m.ID != self.ID && m.ID != target.ID && m.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			cands = append(cands, m)
		}
	}
	e.mu.rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	n := min(len(cands), e.cfg.IndirectChecks)
	for _, m := range cands[:n] {
		e.sendLocked(m.Addr, &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_IndirectPing{IndirectPing: &gossippb.IndirectPing{
			Seq: seq, Target: target.ID, TargetAddr: target.Addr, WantNack: true, SourceId: self.ID, SourceAddr: self.Addr}}})
	}
	return n
}

func (e *Engine) sendLocked(addr string, pkt *gossippb.Packet) {
	b, err := EncodePacket(pkt, e.mu.queue, e.cfg.MaxPacketSize)
	if err != nil {
		return
	}
	e.deps.Transport.SendPacket(addr, b)
}

func (e *Engine) gossipTick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mu.running {
		return
	}
	e.afterLocked(e.cfg.GossipInterval, e.gossipTick)
	if e.mu.state.Self().State == gossippb.MemberState_MEMBER_STATE_ALIVE {
		e.emitLocked(e.mu.state.Expire(e.deps.Clock.Now()))
	}
	e.gossipLocked()
}

func (e *Engine) gossipLocked() {
	if e.mu.queue.Len() == 0 {
		return
	}
	self := e.mu.state.Self()
	now := e.deps.Clock.Now()
	var cands []Member
	for _, m := range e.mu.state.Members() {
		if m.ID == self.ID {
			continue
		}
		if !gone(m.State) || (m.State == gossippb.MemberState_MEMBER_STATE_DEAD && now.Sub(m.Changed) < e.cfg.GossipToTheDead) {
			cands = append(cands, m)
		}
	}
	e.mu.rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, m := range cands[:min(len(cands), e.cfg.GossipNodes)] {
		e.sendLocked(m.Addr, &gossippb.Packet{Cluster: e.cluster})
	}
}

func (e *Engine) pushPullTick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mu.running {
		return
	}
	e.afterLocked(PushPullScale(e.cfg.PushPullInterval, e.mu.state.NumAlive()), e.pushPullTick)
	self := e.mu.state.Self()
	var cands []Member
	for _, m := range e.mu.state.Members() {
		if m.ID != self.ID && m.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return
	}
	peer := cands[e.mu.rng.IntN(len(cands))]
	e.deps.Transport.PushPull(peer.Addr, e.pushPullStateLocked(false), func(resp *gossippb.PushPullState, err error) {
		if err == nil {
			e.MergeState(resp)
		}
	})
}

func (e *Engine) pushPullStateLocked(join bool) *gossippb.PushPullState {
	st := &gossippb.PushPullState{Cluster: e.cluster, Join: join}
	for _, m := range e.mu.state.Members() {
		st.Members = append(st.Members, MemberToProto(m, nil))
	}
	return st
}

// HandlePushPull merges a peer's state and returns the local state.
func (e *Engine) HandlePushPull(req *gossippb.PushPullState) (*gossippb.PushPullState, error) {
	if req.GetCluster() != e.cluster {
		return nil, ErrWrongCluster
	}
	e.mu.Lock()
	resp := e.pushPullStateLocked(false)
	e.mu.Unlock()
	e.MergeState(req)
	return resp, nil
}

// HandlePing answers a stream ping: an ack if the ping is meant for this
// node, else an error.
func (e *Engine) HandlePing(ping *gossippb.Ping) (*gossippb.Ack, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	self := e.mu.state.Self()
	if !e.mu.running || (ping.GetTarget() != 0 && ping.GetTarget() != self.ID) {
		return nil, fmt.Errorf("swim: ping for node %d reached node %d", ping.GetTarget(), self.ID)
	}
	return &gossippb.Ack{Seq: ping.GetSeq(), FromId: self.ID}, nil
}

// MergeState merges a peer's full state: alive and suspect entries as
// such; a remote dead is only a suspicion here, a remote left is a leave.
func (e *Engine) MergeState(st *gossippb.PushPullState) {
	if st.GetCluster() != e.cluster {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.deps.Clock.Now()
	for _, m := range st.GetMembers() {
		var b *gossippb.Broadcast
		switch m.GetState() {
		case gossippb.MemberState_MEMBER_STATE_ALIVE:
			b = &gossippb.Broadcast{Kind: &gossippb.Broadcast_Alive{Alive: &gossippb.Alive{NodeId: m.GetNodeId(), Incarnation: m.GetIncarnation(), Addr: m.GetAddr(), Metadata: m.GetMetadata()}}}
		case gossippb.MemberState_MEMBER_STATE_SUSPECT, gossippb.MemberState_MEMBER_STATE_DEAD:
			if _, known := e.mu.state.Member(m.GetNodeId()); !known {
				continue
			}
			b = &gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: &gossippb.Suspect{NodeId: m.GetNodeId(), Incarnation: m.GetIncarnation(), FromId: 0}}}
		case gossippb.MemberState_MEMBER_STATE_LEFT:
			b = &gossippb.Broadcast{Kind: &gossippb.Broadcast_Dead{Dead: &gossippb.Dead{NodeId: m.GetNodeId(), Incarnation: m.GetIncarnation(), FromId: m.GetNodeId()}}}
		default:
			continue
		}
		e.emitLocked(e.mu.state.Apply(b, now))
	}
}

// Receive handles one datagram from the transport.
func (e *Engine) Receive(b []byte) {
	pkt, err := DecodePacket(b, e.cluster)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mu.running {
		return
	}
	now := e.deps.Clock.Now()
	for _, br := range pkt.GetBroadcasts() {
		if u := br.GetUser(); u != nil {
			key := [2]uint64{u.GetOrigin(), u.GetId()}
			if _, seen := e.mu.seenUser[key]; seen {
				continue
			}
			e.mu.seenUser[key] = struct{}{}
			e.mu.queue.Push(br)
			if e.deps.OnUser != nil {
				e.deps.OnUser(u)
			}
			continue
		}
		e.emitLocked(e.mu.state.Apply(br, now))
	}
	self := e.mu.state.Self()
	switch pr := pkt.GetProbe().(type) {
	case *gossippb.Packet_Ping:
		ping := pr.Ping
		if ping.GetTarget() != 0 && ping.GetTarget() != self.ID {
			return
		}
		e.sendLocked(ping.GetSourceAddr(), &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_Ack{Ack: &gossippb.Ack{
			Seq: ping.GetSeq(), FromId: self.ID, Coordinate: CoordinateToProto(e.mu.viv.Coordinate())}}})
	case *gossippb.Packet_IndirectPing:
		ip := pr.IndirectPing
		seq := e.nextSeqLocked()
		p := &pendingProbe{target: ip.GetTarget(), sent: now, relayTo: ip.GetSourceAddr(), relaySeq: ip.GetSeq()}
		e.mu.pending[seq] = p
		e.sendLocked(ip.GetTargetAddr(), &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_Ping{Ping: &gossippb.Ping{
			Seq: seq, Target: ip.GetTarget(), SourceId: self.ID, SourceAddr: self.Addr}}})
		e.afterLocked(e.cfg.ProbeTimeout, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			delete(e.mu.pending, seq)
			if !p.acked && ip.GetWantNack() && e.mu.running {
				e.sendLocked(ip.GetSourceAddr(), &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_Nack{Nack: &gossippb.Nack{Seq: ip.GetSeq()}}})
			}
		})
	case *gossippb.Packet_Ack:
		ack := pr.Ack
		p, ok := e.mu.pending[ack.GetSeq()]
		if !ok || p.acked {
			return
		}
		p.acked = true
		if p.relayTo != "" {
			e.sendLocked(p.relayTo, &gossippb.Packet{Cluster: e.cluster, Probe: &gossippb.Packet_Ack{Ack: &gossippb.Ack{Seq: p.relaySeq, FromId: ack.GetFromId()}}})
			return
		}
		if c := ack.GetCoordinate(); c != nil && ack.GetFromId() == p.target {
			e.mu.coords[p.target] = c
			_, _ = e.mu.viv.Update(p.target, CoordinateFromProto(c), now.Sub(p.sent))
		}
	case *gossippb.Packet_Nack:
		if p, ok := e.mu.pending[pr.Nack.GetSeq()]; ok {
			p.nacks++
		}
	}
}
