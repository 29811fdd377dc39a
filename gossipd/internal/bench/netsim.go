package bench

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// network is an in-memory datagram network in real time shared by one
// run's nodes: per-datagram loss, crashed nodes (everything to and from
// them is lost) and stalled nodes (a stalled node neither receives nor
// sends until the stall ends; what was sent to it or by it is delivered
// afterwards, in order). Both implementations run over it, so they see the
// same faults. Bytes are counted per node at send time.
type network struct {
	mu    sync.Mutex
	rng   *rand.Rand
	loss  float64
	nodes map[string]*endpoint
	wg    sync.WaitGroup
}

// endpoint is one node's attachment to the network.
type endpoint struct {
	n       *network
	addr    string
	deliver func(from string, b []byte) // datagram handler of the node
	inbox   chan delivery
	done    chan struct{}

	crashed atomic.Bool
	mu      sync.Mutex
	paused  time.Time // stalled until then

	sentBytes   atomic.Int64 // datagrams and stream bytes sent
	sentPackets atomic.Int64
}

type delivery struct {
	from string
	b    []byte
}

var errUnreachable = errors.New("bench network: peer unreachable")

func newNetwork(seed uint64) *network {
	return &network{rng: rand.New(rand.NewPCG(seed, 0x6e6574)), nodes: map[string]*endpoint{}}
}

func (n *network) setLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

func (n *network) lost() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.loss > 0 && n.rng.Float64() < n.loss
}

// attach adds a node; deliver is called on the endpoint's own goroutine,
// one datagram at a time.
func (n *network) attach(addr string, deliver func(from string, b []byte)) *endpoint {
	ep := &endpoint{n: n, addr: addr, deliver: deliver, inbox: make(chan delivery, 4096), done: make(chan struct{})}
	n.mu.Lock()
	n.nodes[addr] = ep
	n.mu.Unlock()
	n.wg.Add(1)
	go ep.loop()
	return ep
}

func (n *network) lookup(addr string) *endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[addr]
}

// close stops every endpoint's goroutine.
func (n *network) close() {
	n.mu.Lock()
	for _, ep := range n.nodes {
		ep.detach()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

func (ep *endpoint) detach() {
	select {
	case <-ep.done:
	default:
		close(ep.done)
	}
}

// waitAwake blocks while the endpoint is stalled; false if it was closed.
func (ep *endpoint) waitAwake() bool {
	for {
		ep.mu.Lock()
		d := time.Until(ep.paused)
		ep.mu.Unlock()
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-ep.done:
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

func (ep *endpoint) stall(d time.Duration) {
	ep.mu.Lock()
	ep.paused = time.Now().Add(d)
	ep.mu.Unlock()
}

func (ep *endpoint) stalled() bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return time.Now().Before(ep.paused)
}

func (ep *endpoint) loop() {
	defer ep.n.wg.Done()
	for {
		select {
		case <-ep.done:
			return
		case d := <-ep.inbox:
			if !ep.waitAwake() {
				return
			}
			if !ep.crashed.Load() {
				ep.deliver(d.from, d.b)
			}
		}
	}
}

// send queues one datagram; it never blocks.
func (ep *endpoint) send(to string, b []byte) {
	ep.sentBytes.Add(int64(len(b)))
	ep.sentPackets.Add(1)
	if ep.crashed.Load() || ep.n.lost() {
		return
	}
	dst := ep.n.lookup(to)
	if dst == nil || dst.crashed.Load() {
		return
	}
	buf := append([]byte(nil), b...)
	if ep.stalled() {
		// A stalled sender's packets leave when it wakes up.
		ep.mu.Lock()
		wait := time.Until(ep.paused)
		ep.mu.Unlock()
		time.AfterFunc(wait, func() { dst.enqueue(ep.addr, buf) })
		return
	}
	dst.enqueue(ep.addr, buf)
}

func (ep *endpoint) enqueue(from string, b []byte) {
	select {
	case <-ep.done:
	case ep.inbox <- delivery{from: from, b: b}:
	default: // receive queue full: dropped, as a socket buffer would
	}
}

// reachable returns to's endpoint if a reliable exchange with it can start
// (neither side crashed); callers wait out stalls themselves.
func (ep *endpoint) reachable(to string) (*endpoint, bool) {
	dst := ep.n.lookup(to)
	if dst == nil || dst.crashed.Load() || ep.crashed.Load() {
		return nil, false
	}
	return dst, true
}

// pausedPast reports whether the endpoint stays stalled beyond t.
func (ep *endpoint) pausedPast(t time.Time) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.paused.After(t)
}
