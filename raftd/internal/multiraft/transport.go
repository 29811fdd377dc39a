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
	// SendSnapshot delivers the chunks of one snapshot to node to, in
	// order, and returns once the receiver accepted the last one.
	SendSnapshot(ctx context.Context, to uint64, chunks []*raftmsgpb.SnapshotChunk) error
}

// Forwarder sends a KV request to another node's raftd (method is a kvpb
// method name such as "Get").
type Forwarder interface {
	Forward(ctx context.Context, toNode uint64, method string, req, resp proto.Message) error
}
