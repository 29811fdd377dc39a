package multiraft

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// testConfig returns fast timers for in-process tests.
func testConfig() Config {
	c := Config{TickInterval: 10 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1, Workers: 4,
		LogTruncateEntries: 50, LogKeepEntries: 20, EntryCacheEntries: 4, ReplicaGCInterval: 100 * time.Millisecond,
		SplitCheckInterval: 50 * time.Millisecond, SplitBytes: -1,
		ClosedTimestampLag: 300 * time.Millisecond, ClosedTimestampInterval: 50 * time.Millisecond}
	c.fill()
	return c
}

// LocalNetwork connects in-process stores for tests, with injectable
// faults: one-way drops between node pairs (partitions), random loss and
// delivery delay. Each directed link delivers in order on its own
// goroutine, so a slow link never holds up others.
type LocalNetwork struct {
	mu      sync.Mutex
	stores  map[uint64]*Store
	blocked map[[2]uint64]bool
	// refuseSnaps are the nodes whose snapshots fail (RefuseSnapshots).
	refuseSnaps map[uint64]bool
	// snapHook, if set, sees (and may change, delay or fail) every
	// snapshot chunk before it is delivered.
	snapHook func(ctx context.Context, to uint64, c *raftmsgpb.SnapshotChunk) error
	loss     float64
	delay    time.Duration
	rng      *rand.Rand
	links    map[[2]uint64]chan *raftmsgpb.MessageBatch
	stopc    chan struct{}
	wg       sync.WaitGroup
	closed   bool
	dropped  atomic.Uint64
}

// NewLocalNetwork returns an empty network; seed makes loss reproducible.
func NewLocalNetwork(seed uint64) *LocalNetwork {
	return &LocalNetwork{stores: map[uint64]*Store{}, blocked: map[[2]uint64]bool{}, refuseSnaps: map[uint64]bool{},
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), links: map[[2]uint64]chan *raftmsgpb.MessageBatch{}, stopc: make(chan struct{})}
}

// Register attaches (or re-attaches after a restart) node's store.
func (n *LocalNetwork) Register(node uint64, s *Store) {
	n.mu.Lock()
	n.stores[node] = s
	n.mu.Unlock()
}

// Unregister detaches node: traffic to it is dropped.
func (n *LocalNetwork) Unregister(node uint64) {
	n.mu.Lock()
	delete(n.stores, node)
	n.mu.Unlock()
}

// SetBlocked drops (or restores) traffic from one node to another.
func (n *LocalNetwork) SetBlocked(from, to uint64, blocked bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if blocked {
		n.blocked[[2]uint64{from, to}] = true
	} else {
		delete(n.blocked, [2]uint64{from, to})
	}
}

// RefuseSnapshots makes (or stops making) every snapshot sent to node
// fail, as a node whose disk cannot take one refuses it; its other
// traffic passes.
func (n *LocalNetwork) RefuseSnapshots(node uint64, refuse bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refuseSnaps[node] = refuse
}

// SetSnapshotHook sets a function that sees every snapshot chunk (a
// copy) before it is delivered: it may change or delay it, or fail its
// send with an error (nil: none).
func (n *LocalNetwork) SetSnapshotHook(f func(ctx context.Context, to uint64, c *raftmsgpb.SnapshotChunk) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.snapHook = f
}

// Isolate cuts node off from every other node, both ways.
func (n *LocalNetwork) Isolate(node uint64, others []uint64) {
	for _, o := range others {
		if o != node {
			n.SetBlocked(node, o, true)
			n.SetBlocked(o, node, true)
		}
	}
}

// Heal removes every partition.
func (n *LocalNetwork) Heal() {
	n.mu.Lock()
	clear(n.blocked)
	n.mu.Unlock()
}

// SetLoss drops each batch with probability p.
func (n *LocalNetwork) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetDelay delays every batch by up to d (random, order kept per link).
func (n *LocalNetwork) SetDelay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

// Close stops every link goroutine.
func (n *LocalNetwork) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	close(n.stopc)
	n.wg.Wait()
}

func (n *LocalNetwork) pass(from, to uint64) (*Store, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.blocked[[2]uint64{from, to}] {
		return nil, false
	}
	if n.loss > 0 && n.rng.Float64() < n.loss {
		return nil, false
	}
	s := n.stores[to]
	return s, s != nil
}

func (n *LocalNetwork) link(from, to uint64) chan *raftmsgpb.MessageBatch {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := [2]uint64{from, to}
	ch := n.links[k]
	if ch == nil && !n.closed {
		ch = make(chan *raftmsgpb.MessageBatch, 4096)
		n.links[k] = ch
		n.wg.Add(1)
		go n.run(from, to, ch)
	}
	return ch
}

// run delivers one link's batches until Close.
func (n *LocalNetwork) run(from, to uint64, ch chan *raftmsgpb.MessageBatch) {
	defer n.wg.Done()
	for {
		select {
		case b := <-ch:
			n.mu.Lock()
			d := n.delay
			var wait time.Duration
			if d > 0 {
				wait = time.Duration(n.rng.Int64N(int64(d)))
			}
			n.mu.Unlock()
			if wait > 0 {
				select {
				case <-time.After(wait):
				case <-n.stopc:
					return
				}
			}
			if s, ok := n.pass(from, to); ok {
				s.HandleBatch(b)
			}
		case <-n.stopc:
			return
		}
	}
}

// Transport returns node's view of the network.
func (n *LocalNetwork) Transport(node uint64) Transport { return localTransport{n, node} }

// Forwarder returns node's KV forwarder over the network.
func (n *LocalNetwork) Forwarder(node uint64) Forwarder { return localTransport{n, node} }

type localTransport struct {
	n    *LocalNetwork
	from uint64
}

func (t localTransport) Send(b *raftmsgpb.MessageBatch) {
	ch := t.n.link(t.from, b.GetToNode())
	if ch == nil {
		return
	}
	select {
	case ch <- proto.Clone(b).(*raftmsgpb.MessageBatch):
	default: // queue full: drop, as a congested network would
		t.n.dropped.Add(1)
	}
}

func (t localTransport) SendSnapshotChunk(ctx context.Context, to uint64, c *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error) {
	s, ok := t.n.pass(t.from, to)
	if !ok {
		return nil, bus.Errorf(bus.CodeUnavailable, "node %d unreachable", to)
	}
	t.n.mu.Lock()
	refused, hook := t.n.refuseSnaps[to], t.n.snapHook
	t.n.mu.Unlock()
	if refused {
		return nil, bus.Errorf(bus.CodeResourceExhausted, "node %d refuses snapshots (test)", to)
	}
	c = proto.Clone(c).(*raftmsgpb.SnapshotChunk)
	if hook != nil {
		if err := hook(ctx, to, c); err != nil {
			return nil, err
		}
	}
	return s.HandleSnapshot(ctx, c)
}

func (t localTransport) Forward(ctx context.Context, to uint64, method string, req, resp proto.Message) error {
	s, ok := t.n.pass(t.from, to)
	if !ok {
		return bus.Errorf(bus.CodeUnavailable, "node %d unreachable", to)
	}
	out, err := s.HandleKV(ctx, method, proto.Clone(req))
	if err != nil {
		return err
	}
	if _, ok := t.n.pass(to, t.from); !ok {
		// The request ran; only its answer is lost.
		return bus.Errorf(bus.CodeDeadlineExceeded, "answer from node %d lost", to)
	}
	proto.Merge(resp, out)
	return nil
}
