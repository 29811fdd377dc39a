package swim

import (
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// RetransmitLimit is how many times a broadcast is sent in a cluster of n
// members: mult * ceil(log10(n+1)).
func RetransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n)+1)))
}

// PushPullScale stretches the push-pull interval above 32 members by
// ceil(log2(n) - log2(32)) + 1, as memberlist does, so that the full-state
// traffic per member grows with log n rather than n.
func PushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}

// Queue holds broadcasts waiting to be piggybacked. A membership message
// about a node replaces any older queued message about the same node; user
// events are kept until sent enough times. The least-sent messages go
// first. Safe for concurrent use.
type Queue struct {
	mult    int
	members func() int

	mu struct {
		sync.Mutex
		seq   uint64
		items []*queued
	}
}

type queued struct {
	b         *gossippb.Broadcast
	node      uint64 // 0 for user events
	size      int
	transmits int
	seq       uint64 // insertion order; newer first among equals
}

// NewQueue returns a queue with retransmit multiplier mult; members
// returns the current cluster size.
func NewQueue(mult int, members func() int) *Queue {
	return &Queue{mult: mult, members: members}
}

// broadcastNode returns the node a membership broadcast is about, or 0.
func broadcastNode(b *gossippb.Broadcast) uint64 {
	switch k := b.GetKind().(type) {
	case *gossippb.Broadcast_Alive:
		return k.Alive.GetNodeId()
	case *gossippb.Broadcast_Suspect:
		return k.Suspect.GetNodeId()
	case *gossippb.Broadcast_Dead:
		return k.Dead.GetNodeId()
	}
	return 0
}

// Push queues b, replacing an older message about the same node.
func (q *Queue) Push(b *gossippb.Broadcast) {
	q.mu.Lock()
	defer q.mu.Unlock()
	node := broadcastNode(b)
	if node != 0 {
		q.mu.items = slices.DeleteFunc(q.mu.items, func(it *queued) bool { return it.node == node })
	}
	q.mu.seq++
	q.mu.items = append(q.mu.items, &queued{b: b, node: node, size: proto.Size(b), seq: q.mu.seq})
}

// Len returns the number of queued broadcasts.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.mu.items)
}

// Take returns queued broadcasts whose encoded sizes (each plus overhead
// bytes of framing) fit in limit bytes, least-sent first, counts one
// transmission for each and drops those that reached the retransmit limit.
func (q *Queue) Take(overhead, limit int) []*gossippb.Broadcast {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.mu.items) == 0 {
		return nil
	}
	maxSends := RetransmitLimit(q.mult, q.members())
	slices.SortFunc(q.mu.items, func(a, b *queued) int {
		if a.transmits != b.transmits {
			return a.transmits - b.transmits
		}
		if a.seq > b.seq {
			return -1
		}
		return 1
	})
	var out []*gossippb.Broadcast
	used := 0
	for _, it := range q.mu.items {
		need := it.size + overhead
		if used+need > limit {
			continue
		}
		used += need
		out = append(out, it.b)
		it.transmits++
	}
	q.mu.items = slices.DeleteFunc(q.mu.items, func(it *queued) bool { return it.transmits >= maxSends })
	return out
}
