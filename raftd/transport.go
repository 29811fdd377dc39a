package raftd

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Bus methods of raftd's node-to-node protocol (wire.ProtoRaft).
const (
	methodRaft      = "Raft"
	methodSnapshot  = "Snapshot"
	methodHello     = "Hello"
	methodBootstrap = "Bootstrap"
)

// peerQueueLen bounds the batches queued for one peer; beyond it batches
// are dropped (raft retransmits), so a slow or dead peer holds no one up.
const peerQueueLen = 1024

// busTransport sends raft batches over the bus: one queue and one sender
// goroutine per peer node, each send one frame on the peer's long-lived
// one-way stream; queued batches are coalesced into one frame.
type busTransport struct {
	b      *bus.Bus
	addrOf func(node uint64) string
	log    *slog.Logger
	stopc  chan struct{}
	// ctx is cancelled by close: it aborts sends in flight, so close does
	// not wait on a slow or dead peer.
	ctx    context.Context
	cancel context.CancelFunc
	tasks  daemon.Tasks
	mu     sync.Mutex
	peers  map[uint64]chan *raftmsgpb.MessageBatch
	closed bool

	dropped, sendErrors atomic.Uint64
}

func newBusTransport(b *bus.Bus, addrOf func(uint64) string, log *slog.Logger) *busTransport {
	t := &busTransport{b: b, addrOf: addrOf, log: log, stopc: make(chan struct{}), peers: map[uint64]chan *raftmsgpb.MessageBatch{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

func (t *busTransport) Send(batch *raftmsgpb.MessageBatch) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	ch := t.peers[batch.GetToNode()]
	if ch == nil {
		ch = make(chan *raftmsgpb.MessageBatch, peerQueueLen)
		t.peers[batch.GetToNode()] = ch
		node := batch.GetToNode()
		t.tasks.Go(func() { t.run(node, ch) })
	}
	t.mu.Unlock()
	select {
	case ch <- batch:
	default:
		t.dropped.Add(1)
	}
}

// run sends one peer's batches until close.
func (t *busTransport) run(node uint64, ch chan *raftmsgpb.MessageBatch) {
	var msgs []proto.Message
	for {
		// Stop first: with a full queue the select below would otherwise
		// keep picking batches after close.
		select {
		case <-t.stopc:
			return
		default:
		}
		var b *raftmsgpb.MessageBatch
		select {
		case b = <-ch:
		case <-t.stopc:
			return
		}
		// Coalesce what is queued into frames of at most budget bytes;
		// a batch over it goes in pieces.
		budget := t.b.MaxFrameSize() / 2
		msgs = msgs[:0]
		size := 0
		for b != nil {
			pieces, sizes := splitBatch(b, budget)
			for i, piece := range pieces {
				n := sizes[i]
				if n > t.b.MaxFrameSize()-1024 {
					// One raft message over the frame limit (a command of
					// MaxCommandBytes fits the default limit): never sent.
					t.dropped.Add(1)
					t.log.Warn("raft message over the bus frame limit dropped", slog.Uint64("to_node", node), slog.Int("bytes", n))
					continue
				}
				if len(msgs) > 0 && size+n > budget {
					t.sendBatch(node, msgs)
					msgs, size = msgs[:0], 0
				}
				msgs = append(msgs, piece)
				size += n
			}
			b = nil
			if len(msgs) < 64 {
				select {
				case b = <-ch:
				default:
				}
			}
		}
		if len(msgs) > 0 {
			t.sendBatch(node, msgs)
		}
	}
}

// sendBatch sends msgs to node in one frame.
func (t *busTransport) sendBatch(node uint64, msgs []proto.Message) {
	addr := t.addrOf(node)
	if addr == "" {
		t.dropped.Add(uint64(len(msgs)))
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, 2*time.Second)
	err := t.b.SendBatch(ctx, addr, wire.ProtoRaft, methodRaft, msgs...)
	cancel()
	if err != nil {
		t.sendErrors.Add(1)
		t.log.Debug("raft batch send failed", slog.Uint64("to_node", node), slog.Any("error", err))
	}
}

// splitBatch returns b, or when it is over budget bytes, b's messages in
// several batches of about budget bytes each (heartbeats in the first; a
// message over budget in a batch of its own), with their encoded sizes.
func splitBatch(b *raftmsgpb.MessageBatch, budget int) ([]*raftmsgpb.MessageBatch, []int) {
	if n := proto.Size(b); n <= budget {
		return []*raftmsgpb.MessageBatch{b}, []int{n}
	}
	piece := func() *raftmsgpb.MessageBatch {
		return &raftmsgpb.MessageBatch{FromNode: b.GetFromNode(), ToNode: b.GetToNode(), FromAddr: b.GetFromAddr()}
	}
	cur := piece()
	cur.Heartbeats, cur.HeartbeatResponses = b.GetHeartbeats(), b.GetHeartbeatResponses()
	out := []*raftmsgpb.MessageBatch{cur}
	size := proto.Size(cur)
	for _, m := range b.GetMessages() {
		n := proto.Size(m) + 8
		if len(cur.Messages) > 0 && size+n > budget {
			cur = piece()
			out = append(out, cur)
			size = proto.Size(cur)
		}
		cur.Messages = append(cur.Messages, m)
		size += n
	}
	sizes := make([]int, len(out))
	for i, p := range out {
		sizes[i] = proto.Size(p)
	}
	return out, sizes
}

// SendSnapshotChunk sends one snapshot chunk as a unary call (apart from
// the raft stream; a chunk above 16 KiB goes over the bus's TCP path, or
// a QUIC stream of its own while the peer's TCP cannot be reached) and
// waits for the receiver's acknowledgement.
func (t *busTransport) SendSnapshotChunk(ctx context.Context, to uint64, c *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()
	addr := t.addrOf(to)
	if addr == "" {
		return nil, bus.Errorf(bus.CodeUnavailable, "raftd: no address for node %d", to)
	}
	ack := &raftmsgpb.SnapshotAck{}
	if err := t.b.Call(ctx, addr, wire.ProtoRaft, methodSnapshot, c, ack); err != nil {
		return nil, err
	}
	return ack, nil
}

func (t *busTransport) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.tasks.Close()
	t.mu.Unlock()
	close(t.stopc)
	t.cancel()
	_ = t.tasks.Wait(context.Background())
}

// busForwarder forwards KV requests to other raftds.
type busForwarder struct {
	b      *bus.Bus
	addrOf func(uint64) string
}

func (f busForwarder) Forward(ctx context.Context, to uint64, method string, req, resp proto.Message) error {
	addr := f.addrOf(to)
	if addr == "" {
		return bus.Errorf(bus.CodeUnavailable, "raftd: no address for node %d", to)
	}
	return f.b.Call(ctx, addr, wire.ProtoKV, method, req, resp)
}
