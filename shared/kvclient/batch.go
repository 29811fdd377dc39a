package kvclient

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// Batch collects operations to apply atomically, all or none, within one
// range. Build it with NewBatch and the chained methods, then pass it to
// Client.Batch. A Batch is not safe for concurrent use.
type Batch struct {
	ops []*kvpb.BatchOp
	// key is the first op's key, for routing.
	key []byte
}

// NewBatch returns an empty batch.
func NewBatch() *Batch { return &Batch{} }

// Len returns the number of operations.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) add(key []byte, op *kvpb.BatchOp) *Batch {
	if b.key == nil {
		b.key = key
	}
	b.ops = append(b.ops, op)
	return b
}

// Put adds a write of value under key.
func (b *Batch) Put(key, value []byte) *Batch {
	return b.add(key, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: key, Value: value}}})
}

// Delete adds a deletion of key.
func (b *Batch) Delete(key []byte) *Batch {
	return b.add(key, &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: key}}})
}

// CompareAndSwap adds a conditional write; if its comparison fails, the
// whole batch fails.
func (b *Batch) CompareAndSwap(x CAS) *Batch {
	return b.add(x.Key, &kvpb.BatchOp{Op: &kvpb.BatchOp_Cas{Cas: x.proto(nil)}})
}

// BatchResult is the outcome of a Batch.
type BatchResult struct {
	// Succeeded is false when a comparison failed; nothing was applied.
	Succeeded bool
	// FailedOp is the index of the first failed comparison.
	FailedOp int
	// Timestamp is the HLC timestamp of the batch's writes.
	Timestamp hlc.Timestamp
}

// Batch applies b atomically. Keys in more than one range fail with an
// error matching bus.ErrInvalidArgument; a failed comparison is not an
// error (see BatchResult).
func (c *Client) Batch(ctx context.Context, b *Batch) (BatchResult, error) {
	if b == nil || len(b.ops) == 0 {
		return BatchResult{}, errors.New("client: Batch: no operations")
	}
	w, err := c.beginWrite(ctx)
	if err != nil {
		return BatchResult{}, fmt.Errorf("client: %s: %w", MethodBatch, err)
	}
	defer w.end()
	h := w.header()
	req := &kvpb.BatchRequest{Header: h, Ops: b.ops}
	var resp kvpb.BatchResponse
	if err := c.invoke(ctx, MethodBatch, pointRoute(b.key, proto.Size(req)).with(w), h, req, &resp); err != nil {
		return BatchResult{}, err
	}
	res := BatchResult{Succeeded: resp.GetSucceeded(), FailedOp: int(resp.GetFailedOp()), Timestamp: timestamp(resp.GetTimestamp())}
	c.observeClock(res.Timestamp, false)
	return res, nil
}
