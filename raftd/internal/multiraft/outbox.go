package multiraft

import (
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// outbox collects one round's outgoing messages per destination node, so
// each peer gets one frame per round; heartbeats and their responses are
// coalesced into compact Heartbeat records.
type outbox struct {
	s  *Store
	mu sync.Mutex
	m  map[uint64]*raftmsgpb.MessageBatch
	// toPeers counts the messages added for other nodes.
	toPeers int
}

func newOutbox(s *Store) *outbox { return &outbox{s: s, m: map[uint64]*raftmsgpb.MessageBatch{}} }

func (o *outbox) batch(node uint64) *raftmsgpb.MessageBatch {
	b := o.m[node]
	if b == nil {
		b = &raftmsgpb.MessageBatch{FromNode: o.s.d.NodeID, ToNode: node, FromAddr: o.s.d.Addr}
		o.m[node] = b
	}
	return b
}

// add queues msg of rangeID for node. Messages are marshalled here, inside
// the round, as raft requires.
func (o *outbox) add(node, rangeID uint64, msg *raftpb.Message, quiesce bool) {
	var rm *raftmsgpb.RaftMessage
	var hb *raftmsgpb.Heartbeat
	switch msg.GetType() {
	case raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp:
		hb = &raftmsgpb.Heartbeat{RangeId: rangeID, FromReplica: msg.GetFrom(), ToReplica: msg.GetTo(),
			Term: msg.GetTerm(), Commit: msg.GetCommit(), Context: msg.GetContext(), Quiesce: quiesce}
	default:
		b, err := proto.Marshal(msg)
		if err != nil {
			return
		}
		rm = &raftmsgpb.RaftMessage{RangeId: rangeID, Message: b}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if node != o.s.d.NodeID {
		o.toPeers++
	}
	b := o.batch(node)
	switch {
	case rm != nil:
		b.Messages = append(b.Messages, rm)
	case msg.GetType() == raftpb.MsgHeartbeat:
		b.Heartbeats = append(b.Heartbeats, hb)
	default:
		b.HeartbeatResponses = append(b.HeartbeatResponses, hb)
	}
}

// peerMessages is how many messages for other nodes were added to o.
func (o *outbox) peerMessages() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.toPeers
}

func (o *outbox) flush() {
	o.mu.Lock()
	m := o.m
	o.m = map[uint64]*raftmsgpb.MessageBatch{}
	o.mu.Unlock()
	for node, b := range m {
		if node == o.s.d.NodeID {
			o.s.HandleBatch(b)
			continue
		}
		o.s.send(b)
	}
}

func decodeMessage(b []byte) (*raftpb.Message, error) {
	m := &raftpb.Message{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

func heartbeatToMsg(h *raftmsgpb.Heartbeat, resp bool) *raftpb.Message {
	t := raftpb.MsgHeartbeat
	if resp {
		t = raftpb.MsgHeartbeatResp
	}
	m := &raftpb.Message{Type: t.Enum(), From: proto.Uint64(h.GetFromReplica()), To: proto.Uint64(h.GetToReplica()),
		Term: proto.Uint64(h.GetTerm()), Context: h.GetContext()}
	if !resp {
		m.Commit = proto.Uint64(h.GetCommit())
	}
	return m
}
