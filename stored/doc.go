// Package stored is the storage daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server): the node's single
// RocksDB instance (package engine), holding node-local state (column
// family local), every range's raft log (raft) and every range's data
// (data), served on the bus as protocol wire.ProtoStore. Its bus endpoint
// binds loopback only: stored serves the daemons of its own host (the
// stored command refuses any other --bus-addr, and --advertise-addr).
// Callers use package shared/storeclient.
//
// # Layout and lifecycle
//
// New registers the bus handlers, the readiness check "stored", the
// /v1/store view and the metrics; Start opens the database in
// <Dir>/db (Dir is <data-dir>/stored) and starts the lease reaper; Stop
// refuses new calls with CodeUnavailable, ends running streams, stops the
// reaper, releases every snapshot and ingest session and closes the
// database after the calls in flight. Calls before Start or after Stop
// fail with CodeUnavailable.
//
// # Protocol
//
// Unary methods (see shared/proto/storepb/store.proto):
//
//   - Get, MultiGet: point reads, at the latest state or at a snapshot.
//   - Scan: one page of a span, forward or reverse, keys only or not,
//     bounded by a limit (at most Config.MaxScanLimit) and bytes (at most
//     Config.MaxScanBytes, 1 MiB by default); it returns a resume key.
//   - Write: one atomic batch of put, delete and delete-range over any
//     families; with sync it answers once the batch is in the fsynced WAL.
//     A batch larger than one bus frame is sent in parts (stage set):
//     stored builds it in memory (at most Engine.MaxBatchBytes, with
//     MaxStagedWrites open at once, dropped by the reaper after
//     IngestLease idle, or by an abort) and writes it whole with the last
//     part; a refused part ends it unwritten.
//   - OpenSnapshot, ReleaseSnapshot: a consistent view held by a lease
//     (Config.SnapshotLease by default, at most MaxSnapshotLease) that
//     every read at it renews. The reaper, a goroutine owned by the server
//     and stopped by Stop, releases expired snapshots every ReapInterval;
//     a read at an unknown, released or expired snapshot fails with
//     CodeFailedPrecondition.
//   - IngestRange: the bus has no client-to-server stream, so a range
//     ingest is a session of unary calls. The first frame names the span
//     and gets an ingest id; chunk frames carry entries in strictly
//     ascending key order within the span, numbered 1, 2, ...; entries
//     are staged in an SST file beside the database (engine.Ingester: the
//     span's deletion, then the entries), so a range of any size is
//     bounded by the disk, not by memory (Config.MaxIngestBytes per
//     session, MaxIngests sessions); the done frame ingests the file in
//     one step, so readers see the old span or the new one. An invalid
//     chunk is refused whole and leaves the session as it was; nothing
//     is written before done, an idle session expires like a snapshot
//     (its file removed), and files a crash left are removed at start.
//   - ApproximateSize (SST bytes of a span), Compact, Checkpoint (a
//     RocksDB checkpoint in a new directory; a relative name goes under
//     <Dir>/checkpoints) and Stats.
//
// Packed forms: Write may carry its operations, Scan and StreamRange their
// entries and IngestRange its chunks as one bytes field in storepb's packed
// encodings (storepb.AppendPut, NextOp, AppendPacked, NextPacked) instead
// of a message per entry; storeclient always uses them, and stored serves
// both forms. They spare a message allocation per key on both sides.
//
// Server stream: StreamRange sends a span in chunks of about chunk_bytes
// at a snapshot (the caller's, whose lease each chunk renews, or one taken
// when the stream starts): what raft snapshots are made of, and the input
// of IngestRange on another node.
//
// # Group commit
//
// Sync writes queue; one of them at a time leads a group, writing every
// batch queued so far as one merged RocksDB batch and fsyncing the WAL
// once for all of them, while the next group queues. A write without sync
// bypasses the queue and never waits for an fsync. Stats and /metrics count writes, sync writes and WAL fsyncs;
// see package engine for the details and the visibility hazard. A failed
// WAL fsync is fatal: writes fail from then on, the readiness check fails
// and the error is delivered on Err, so the daemon exits and a restart
// replays the WAL.
//
// # Validation and limits
//
// Unknown column family, empty key, key over Engine.MaxKeyBytes (64 KiB),
// value over MaxValueBytes (16 MiB), batch over MaxBatchBytes (64 MiB),
// span start > end, a delete range without an end: CodeInvalidArgument,
// and nothing of the request is written. A frame over the bus limit (16
// MiB by default, so values near MaxValueBytes need smaller neighbours)
// is refused by the bus with CodeResourceExhausted before stored sees it.
//
// # Observability
//
// /metrics carries pleiades_stored_request_duration_seconds{method} and,
// read from RocksDB at each scrape, memtable, SST and key estimates, L0
// files and pending compaction bytes per family, block cache usage,
// capacity, hits, misses and hit ratio, write stall time and the
// write-stopped flag, and the write, sync write and WAL fsync counters.
// /v1/store shows the database path, sizes per family and the counters;
// the Stats method returns the same over the bus (pleiades store stats).
package stored
