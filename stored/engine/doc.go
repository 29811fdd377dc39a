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
// Write applies a batch through RocksDB unsynced, so it reaches the WAL
// file (the OS page cache) and the memtable at once. A sync write then
// waits for a WAL fsync that began after it: the first such writer with
// no fsync in progress runs one (FlushWAL(true)) on behalf of every sync
// write already in the WAL, and writers arriving during it are served by
// the next one. Concurrent sync writers so share fsyncs; a write without
// sync never waits for one. Counters reports writes, sync writes and WAL
// fsyncs (sync writes per fsync is the group commit factor). A failed
// fsync is sticky: later writes fail until the engine is reopened.
//
// HAZARD: a sync write is visible to readers from the moment it is
// applied, slightly before its fsync ends; a crash in that window loses a
// write a reader may have seen, never one whose Write returned. Crash
// recovery uses RocksDB's point-in-time WAL recovery: a batch is one WAL
// record, recovered whole or not at all.
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
// # Tuning
//
// DefaultOptions suits a small machine: a 128 MiB LRU block cache shared
// by the families (index and filter blocks cached and L0's pinned), full
// bloom filters at 10 bits per key, 16 KiB blocks, 32 MiB memtables (3 per
// family), dynamic level sizes with no compression on L0-L1, lz4 on L2-L4
// and zstd below, 2 background jobs, incremental file syncs (1 MiB, WAL
// 512 KiB) and a 256 MiB WAL cap. stored exposes each as a flag. Writers
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
