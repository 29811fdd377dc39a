// Package stored is the storage daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server): the node's single
// RocksDB instance (package engine), holding node-local state (column
// family local), every range's raft log (raft) and every range's data
// (data), served on the bus as protocol wire.ProtoStore. Its bus endpoint
// binds loopback only: stored serves the daemons of its own host (the
// stored command refuses any other --bus-addr, and --advertise-addr).
// With Config.LocalSocket (the stored command's --local-socket, default
// <data-dir>/stored/stored.sock) it serves the same calls on a Unix
// domain socket too, which raftd's --stored-socket names: a call over it
// skips QUIC's goroutine handoffs (see "Local sockets" in package bus).
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
//     ascending key order within the span, numbered 1, 2, ...; the
//     answer to the first frame offers a window (4): a chunk up to 3
//     ahead of the next one waits for the ones before it (so a client
//     may have 4 in flight), one further ahead is refused, and one whose
//     turn has not come when its caller gives up is refused; entries
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
//     <Dir>/checkpoints, an absolute one must lie under <Dir>, outside
//     <Dir>/db) and Stats.
//
// Authorization (authz.go): the engine serves the daemons of its own host
// alone, i.e. node certificates carrying this node's id (Deps.NodeID);
// ApproximateSize, Compact, Checkpoint, Stats and WatchDisk also admin
// certificates. Everything else is refused with PermissionDenied,
// whatever address stored is bound to.
//
// Server streams: StreamRange (below) and WatchDisk (see Disk space).
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
// # Disk space
//
// A goroutine of the server reads the free space of Dir's filesystem
// (statfs f_bavail) every Config.DiskCheckInterval (100ms), and a write
// reads it again first when the last read is over a millisecond old and
// the free space is within twice the floor; writes admitted since the
// last periodic read count against it (RocksDB preallocates its log, so
// statfs moves in steps). The policy (disk.go, decide):
//
//   - below the floor, Config.MinFreeBytes (by default 2% of the
//     filesystem, at least 64 MiB, at most 2 GiB and at most a quarter of
//     it), Write, staged writes and IngestRange fail at once with
//     RESOURCE_EXHAUSTED, reason storepb.ReasonDiskFull, "stored: disk
//     full on node N (free X of Y, floor Z ...)", and change nothing. The
//     floor is checked before RocksDB runs short: its flushes and
//     compactions need room, and it preallocates its files. Reads, scans,
//     snapshots and streams go on.
//   - reserve writes (WriteRequest.reserve: raft hard state and votes,
//     log truncation, start-up records, clockd's bound) go on down to half
//     the floor; an IngestRange's last frame, whose data is staged in a
//     file already, counts as one.
//   - the ballast file, Dir/ballast (Config.BallastBytes, by default 1% of
//     the filesystem up to 1 GiB, allocated with fallocate), is released
//     when the floor is reached, with a log line, so RocksDB's flushes and
//     compactions (which may win space back) and the reserve writes have
//     room; an operator may delete it too, to the same end. A missing
//     ballast counts as used: writes resume once the free space less the
//     ballast is back above the floor plus an eighth (so releasing it
//     never lets writes in by itself, and they do not flap), and the
//     ballast is re-created first. The first check runs before RocksDB
//     opens: on a full disk the ballast makes room for the open.
//   - RocksDB's own out-of-space errors (a floor too low, or another
//     process taking the last bytes) give the same refusal and refuse
//     reserve writes too, for at least a second and until a check finds
//     room; RocksDB recovers by itself (it retries every 5 seconds).
//   - writes are accepted again, with no restart, once space returns
//     (files deleted, the filesystem grown, compactions).
//
// HAZARD: Debian's librocksdb has assertions on: a write to RocksDB's
// write-ahead log or LOG file that fails for want of space leaves that
// file's writer failed, and the next use of it aborts the process. The
// floor and the reserve keep RocksDB's own writes clear of a full disk,
// and RocksDB's LOG is at "fatal" (engine.Options.InfoLogLevel), where it
// logs nothing on its way through one; only another process filling the
// disk faster than the per-write check can still bring that about (the
// supervisor then restarts stored; every acknowledged write is in the
// synced log).
//
// The state is the "disk" condition of readiness (stored stays ready:
// it serves reads; /readyz lists "[!]disk degraded: disk full on node
// ..."), the disk section of /v1/store and of Stats (pleiades store
// stats), the pleiades_stored_disk_* metrics, and the WatchDisk stream
// (the current storepb.DiskStatus, then each change of full, reserve_full
// or the ballast), which raftd follows to refuse proposals and msgd
// publishes as disk.space events.
//
// # Observability
//
// /metrics carries pleiades_stored_request_duration_seconds{method}, the
// disk gauges (free, total and floor bytes, full, reserve_full, ballast
// held) and pleiades_stored_disk_refusals_total{class} and,
// read from RocksDB at each scrape, memtable, SST and key estimates, L0
// files and pending compaction bytes per family, block cache usage,
// capacity, hits, misses and hit ratio, write stall time and the
// write-stopped flag, and the write, sync write and WAL fsync counters.
// /v1/store shows the database path, sizes per family and the counters;
// the Stats method returns the same over the bus (pleiades store stats).
package stored
