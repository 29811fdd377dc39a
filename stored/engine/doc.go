// Package engine is stored's storage engine: one RocksDB instance
// (github.com/linxGnu/grocksdb on the system's librocksdb 7.8) with the
// column families local, raft and data. It is importable so that tools
// and benchmarks can run it in-process; stored serves it on the bus.
//
//	e, err := engine.Open(dir, engine.DefaultOptions())
//	b := e.NewBatch()
//	b.Put(engine.Raft, key, entry)
//	b.DeleteRange(engine.Span{CF: engine.Data, Start: s, End: end})
//	seq, err := e.Write(b, true) // durable once it returns
//	b.Close()
//
// # Reads
//
// Get, MultiGet and Scan read the latest state or, given a *Snapshot, a
// consistent earlier view (NewSnapshot; Release when done, an open
// snapshot pins old versions). Scan returns one page bounded by entries
// and bytes with a resume key; Stream walks a whole span in chunks at a
// snapshot. Values returned are copies owned by the caller. Scans read
// entries with one cgo call each (cursor.go), which reads grocksdb's
// iterator handle through unsafe: HAZARD when upgrading grocksdb (pinned
// at v1.7.15; the scan tests catch a layout change).
//
// # Group commit
//
// Sync writes go through a commit queue: a sync writer queues its batch,
// and the first queued writer finding no leader leads one group. It takes
// every batch queued so far (up to 16 MiB), writes them to RocksDB as one
// merged batch (concatenating their encodings), fsyncs the WAL once
// (FlushWAL(true); write and fsync are one cgo call, commitc.go, which
// reads grocksdb's DB and WriteOptions handles through unsafe like the
// cursor) and wakes the group; writers queueing meanwhile form
// the next group. One RocksDB write and one fsync so serve many sync
// writes. Writes without sync bypass the queue and never wait for an
// fsync. Counters reports writes, sync writes and WAL fsyncs (sync writes
// per fsync is the group commit factor). A failed fsync is sticky: later
// writes fail until the engine is reopened.
//
// A merged batch is one WAL record, so each batch in it stays atomic, and
// crash recovery (RocksDB's point-in-time WAL recovery) restores a record
// whole or not at all.
//
// HAZARD: a sync write is visible to readers from the moment its group is
// applied, slightly before the group's fsync ends; a crash in that window
// loses a write a reader may have seen, never one whose Write returned.
//
// # Validation and limits
//
// A Batch is encoded in Go memory in RocksDB's WriteBatch format (checked
// byte for byte against RocksDB's own encoder in the tests) and handed over
// in one call by Write; building one costs no cgo calls.
//
// Every operation is checked before RocksDB sees it: a known column family
// (the default family is internal), a non-empty key of at most
// Options.MaxKeyBytes (64 KiB), a value of at most MaxValueBytes (16 MiB),
// a batch of at most MaxBatchBytes (64 MiB), span start <= end, and an end
// for DeleteRange. Failures wrap ErrInvalid; a batch with an invalid
// operation is refused whole, so a rejected batch leaves no trace. Reads
// at a released snapshot fail with ErrReleased; every call after Close
// with ErrClosed.
//
// A write, flush or ingest that fails because the filesystem is full
// wraps ErrNoSpace (RocksDB reports it as text: "IO error: No space left
// on device"); RocksDB then refuses writes until it has recovered by
// itself, which it retries every 5 seconds. stored keeps its writes clear
// of that (see package stored, Disk space).
//
// # Tuning
//
// DefaultOptions suits a small machine: a 128 MiB LRU block cache shared
// by the families (index and filter blocks cached and L0's pinned), full
// bloom filters at 10 bits per key, 16 KiB blocks, 32 MiB memtables (3 per
// family), dynamic level sizes with no compression on L0-L1, lz4 on L2-L4
// and zstd below, 2 background jobs, incremental file syncs (1 MiB, WAL
// 512 KiB), a 256 MiB WAL cap and RocksDB's LOG at "fatal" (see
// Options.InfoLogLevel: Debian's build, assertions on, defaults to a line
// per WAL sync, and aborts on a LOG write after one failed for want of
// space). stored exposes each as a flag. Writers
// queued in RocksDB's write thread block instead of spinning (adaptive
// yield off): with a few cores and many writers, spinning steals the CPU
// the group's leader needs.
//
// # Concurrency
//
// Every Engine method is safe for concurrent use. Close waits for the
// operations in flight (they hold a shared lock), releases open snapshots
// and closes RocksDB; a Snapshot's Release likewise waits for reads in
// flight at it. Lock order: the engine's close lock, then a snapshot's.
// A Batch is for one goroutine at a time.
package engine
