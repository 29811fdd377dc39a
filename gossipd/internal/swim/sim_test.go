package swim

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// simEvent is one scheduled action of the simulation.
type simEvent struct {
	at   time.Time
	seq  uint64
	f    func()
	dead bool
}

type eventHeap []*simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*simEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sim is a virtual clock plus a network of engines with per-link delay,
// loss, partitions and crashed or stalled nodes. Everything runs on the
// test goroutine in virtual time, so runs are fast and repeatable for a
// seed.
type sim struct {
	t    *testing.T
	seed uint64
	rng  *rand.Rand
	mu   sync.Mutex
	now  time.Time
	seq  uint64
	q    eventHeap

	cfg    Config
	nodes  map[string]*simNode
	byID   map[uint64]*simNode
	delay  time.Duration
	jitter time.Duration
	// latency, if set, gives the one-way delay between two addresses.
	latency func(from, to string) time.Duration
	loss    float64
	blocked map[[2]string]bool
	events  []simRecord

	streamPings         int
	streamsIgnoreBlocks bool
}

type simRecord struct {
	at       time.Time
	observer uint64
	ev       Event
}

type simNode struct {
	s       *sim
	id      uint64
	addr    string
	e       *Engine
	crashed bool
	stall   time.Duration // extra inbound processing delay
	// pausedUntil freezes the node (a CPU stall or a long GC pause): its
	// timers and inbound messages wait until then, in their order.
	pausedUntil time.Time
	user        []*gossippb.UserEvent
}

// simSeed is fixed per test (a hash of its name) so runs repeat exactly;
// SWIM_SEED overrides it to explore other schedules.
func simSeed(t *testing.T) uint64 {
	if v := os.Getenv("SWIM_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SWIM_SEED=%q: %v", v, err)
		}
		return seed
	}
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return h.Sum64()
}

func newSim(t *testing.T, cfg Config) *sim {
	seed := simSeed(t)
	t.Logf("sim seed %d (set SWIM_SEED to change)", seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce with SWIM_SEED=%d", seed)
		}
	})
	return &sim{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 1)), now: time.Unix(1_700_000_000, 0),
		cfg: cfg, nodes: map[string]*simNode{}, byID: map[uint64]*simNode{}, delay: time.Millisecond, jitter: 500 * time.Microsecond, blocked: map[[2]string]bool{}}
}

func (s *sim) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *sim) AfterFunc(d time.Duration, f func()) func() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ev := &simEvent{at: s.now.Add(d), seq: s.seq, f: f}
	heap.Push(&s.q, ev)
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		was := !ev.dead
		ev.dead = true
		return was
	}
}

// run advances virtual time by d, running due events in order.
func (s *sim) run(d time.Duration) {
	end := s.Now().Add(d)
	for {
		s.mu.Lock()
		if len(s.q) == 0 || s.q[0].at.After(end) {
			s.now = end
			s.mu.Unlock()
			return
		}
		ev := heap.Pop(&s.q).(*simEvent)
		s.now = ev.at
		s.mu.Unlock()
		if !ev.dead {
			ev.f()
		}
	}
}

// runUntil advances in steps until cond holds or limit passes.
func (s *sim) runUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := s.Now()
	for s.Now().Sub(start) < limit {
		if cond() {
			return s.Now().Sub(start), true
		}
		s.run(50 * time.Millisecond)
	}
	return s.Now().Sub(start), cond()
}

// linkDelay is the one-way delay of one message from one node to another:
// the latency matrix if set, else the uniform delay, plus jitter.
func (s *sim) linkDelay(from, to string) time.Duration {
	d := s.delay
	if s.latency != nil {
		d = s.latency(from, to)
	}
	return d + time.Duration(s.rng.Int64N(int64(s.jitter)+1))
}

func (s *sim) deliverable(from, to string) bool {
	src, dst := s.nodes[from], s.nodes[to]
	if src == nil || dst == nil || src.crashed || dst.crashed || s.blocked[[2]string{from, to}] {
		return false
	}
	return true
}

func (n *simNode) SendPacket(addr string, b []byte) {
	s := n.s
	if len(b) > s.cfg.MaxPacketSize {
		s.t.Errorf("node %d sent %d bytes > %d", n.id, len(b), s.cfg.MaxPacketSize)
	}
	if !s.deliverable(n.addr, addr) || s.rng.Float64() < s.loss {
		return
	}
	dst := s.nodes[addr]
	buf := append([]byte(nil), b...)
	s.AfterFunc(s.linkDelay(n.addr, addr)+dst.stall, dst.gate(func() {
		if !dst.crashed {
			dst.e.Receive(buf)
		}
	}, nil))
}

func (n *simNode) PushPull(addr string, req *gossippb.PushPullState, done func(*gossippb.PushPullState, error)) {
	s := n.s
	fail := func() { s.AfterFunc(time.Second, func() { done(nil, fmt.Errorf("sim: %s unreachable", addr)) }) }
	if !s.deliverable(n.addr, addr) || !s.deliverable(addr, n.addr) {
		fail()
		return
	}
	dst := s.nodes[addr]
	s.AfterFunc(s.linkDelay(n.addr, addr)+dst.stall, dst.gate(func() {
		if dst.crashed {
			fail()
			return
		}
		resp, err := dst.e.HandlePushPull(req)
		s.AfterFunc(s.linkDelay(addr, n.addr)+n.stall, n.gate(func() { done(resp, err) }, nil))
	}, nil))
}

func (n *simNode) PingStream(addr string, ping *gossippb.Ping, timeout time.Duration, done func(*gossippb.Ack, error)) {
	s := n.s
	fail := func() { s.AfterFunc(timeout, func() { done(nil, fmt.Errorf("sim: %s unreachable", addr)) }) }
	s.streamPings++
	if !s.streamsIgnoreBlocks && (!s.deliverable(n.addr, addr) || !s.deliverable(addr, n.addr)) {
		fail()
		return
	}
	dst := s.nodes[addr]
	if dst == nil || dst.crashed || n.crashed {
		fail()
		return
	}
	s.AfterFunc(s.linkDelay(n.addr, addr)+dst.stall, dst.gate(func() {
		if dst.crashed {
			return
		}
		ack, err := dst.e.HandlePing(ping)
		s.AfterFunc(s.linkDelay(addr, n.addr)+n.stall, n.gate(func() { done(ack, err) }, nil))
	}, nil))
}

// gate wraps f so that it waits while the node is paused; stopped, if
// not nil, cancels a postponed call.
func (n *simNode) gate(f func(), stopped *bool) func() {
	var g func()
	g = func() {
		if stopped != nil && *stopped {
			return
		}
		if now := n.s.Now(); now.Before(n.pausedUntil) {
			n.s.AfterFunc(n.pausedUntil.Sub(now), g)
			return
		}
		f()
	}
	return g
}

// nodeClock is the node's view of the virtual clock: its timers wait
// while the node is paused.
type nodeClock struct{ n *simNode }

func (c nodeClock) Now() time.Time { return c.n.s.Now() }

func (c nodeClock) AfterFunc(d time.Duration, f func()) func() bool {
	stopped := new(bool)
	stop := c.n.s.AfterFunc(d, c.n.gate(f, stopped))
	return func() bool {
		was := !*stopped
		*stopped = true
		stop()
		return was
	}
}

// pause freezes the node for d from now.
func (n *simNode) pause(d time.Duration) { n.pausedUntil = n.s.Now().Add(d) }

func (s *sim) add(id uint64, md *gossippb.Metadata) *simNode {
	s.t.Helper()
	return s.addAt(id, fmt.Sprintf("10.0.0.%d:7403", id), md)
}

func (s *sim) addAt(id uint64, addr string, md *gossippb.Metadata) *simNode {
	s.t.Helper()
	n := &simNode{s: s, id: id, addr: addr}
	e, err := NewEngine(s.cfg, "test", id, n.addr, md, EngineDeps{Clock: nodeClock{n}, Transport: n, Seed: s.seed + id,
		OnEvent: func(ev Event) { s.events = append(s.events, simRecord{at: s.now, observer: id, ev: ev}) },
		OnUser:  func(u *gossippb.UserEvent) { n.user = append(n.user, u) }})
	if err != nil {
		s.t.Fatal(err)
	}
	n.e = e
	s.nodes[n.addr] = n
	s.byID[id] = n
	e.Start()
	return n
}

// cluster starts n nodes, each joining node 1, and waits for convergence.
func (s *sim) cluster(n int) []*simNode {
	s.t.Helper()
	var nodes []*simNode
	for i := 1; i <= n; i++ {
		node := s.add(uint64(i), nil)
		if i > 1 {
			node.e.Join([]string{nodes[0].addr}, nil)
		}
		nodes = append(nodes, node)
	}
	if took, ok := s.runUntil(60*time.Second, func() bool { return s.allSee(nodes, nodes, gossippb.MemberState_MEMBER_STATE_ALIVE) }); !ok {
		s.t.Fatalf("%d nodes did not converge within %v", n, took)
	}
	return nodes
}

// allSee reports whether every live observer sees every target in state.
func (s *sim) allSee(observers, targets []*simNode, st gossippb.MemberState) bool {
	for _, o := range observers {
		if o.crashed {
			continue
		}
		for _, tg := range targets {
			m, ok := o.e.Member(tg.id)
			if !ok || m.State != st {
				return false
			}
		}
	}
	return true
}
