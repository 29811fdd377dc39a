package multiraft

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Transport carries raft traffic between nodes. Implementations must not
// block the caller of Send on a slow or dead peer: a batch that cannot be
// queued is dropped (raft retransmits).
type Transport interface {
	// Send queues one batch for batch.ToNode.
	Send(batch *raftmsgpb.MessageBatch)
	// SendSnapshotChunk delivers one chunk of a snapshot to node to and
	// returns the receiver's answer once it accepted it
	// (Store.HandleSnapshot returned). Several chunks of a snapshot may be
	// in flight (numbered; see SnapshotAck.window).
	SendSnapshotChunk(ctx context.Context, to uint64, chunk *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error)
}

// Forwarder sends a KV request to another node's raftd (method is a kvpb
// method name such as "Get").
type Forwarder interface {
	Forward(ctx context.Context, toNode uint64, method string, req, resp proto.Message) error
}
