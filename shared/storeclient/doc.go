// Package storeclient is the typed client of stored's bus protocol
// (wire.ProtoStore, messages in package storepb). raftd, clockd and the
// tools of services use it; none of them builds store protobuf by hand.
//
//	c := storeclient.New(b, "127.0.0.1:7401")
//	var wb storeclient.Batch
//	wb.Put(storeclient.Raft, key, entry).Delete(storeclient.Local, old)
//	seq, err := c.Write(ctx, &wb, true) // durable once it returns
//	wb.Reset()                           // reuse the batch's memory
//
// Reads: Get, MultiGet, Scan (one page) and Iterator (every page of a
// span); each also exists on a Snapshot, a consistent view opened with
// OpenSnapshot and held by a lease that every read renews. Release it when
// done; an expired snapshot fails with bus.ErrFailedPrecondition.
//
// Spans are half-open [Start, End) within one column family; an empty End
// means the end of the family, an empty Start its beginning.
//
// StreamRange delivers a span in chunks (what raft snapshots are made of)
// and IngestRange atomically replaces a span with streamed entries: Begin
// an Ingest, Add entries in ascending key order, Finish. Nothing is
// written before Finish, and Finish replaces the span in one synced batch.
// Add sends a chunk per MiB; when stored offers a window, up to 4 chunks
// are in flight (stored takes them in order), and a chunk's failure is
// returned by a later Add or by Finish.
//
// Write takes a batch of any size up to stored's batch limit: one larger
// than half a bus frame (at most WritePartBytes a part) goes in parts that
// stored stages and writes as one batch with the last, so atomicity and
// durability do not depend on the size.
//
// On the wire, batches, scan pages, stream chunks and ingest chunks
// travel in storepb's packed encodings (one bytes field, not a message
// per key).
//
// Memory: a Batch copies the keys and values passed to it into one
// packed buffer (storepb's packed operations), which Reset keeps for
// reuse; results returned by the client are owned by the caller. A Client is safe for concurrent use; a Batch, an
// Iterator and an Ingest are not.
//
// A full disk: stored refuses writes and ingests below its free-space
// floor with bus.ErrResourceExhausted, reason storepb.ReasonDiskFull
// (nothing changed; it may succeed once space returns). WriteReserve
// writes the small records safety and recovery need (raft votes and hard
// state, truncation, the clock bound) from the space stored keeps below
// the floor. WatchDisk follows stored's disk status: the current one,
// then each change.
//
// Errors are wrapped *bus.Error values: test them with errors.Is against
// bus.ErrInvalidArgument (bad input, nothing changed),
// bus.ErrFailedPrecondition (unknown or expired snapshot or ingest
// session), bus.ErrResourceExhausted (disk full, see above),
// bus.ErrUnavailable and so on.
package storeclient
