// Package storage is the storage contract raftd consumes: an Engine with
// atomic batch writes (optionally synced), point reads and ordered scans
// per column family, plus the key layout raftd uses in each family and
// the value envelope of range data.
//
// Column families follow stored (shared/proto/storepb): Local for node
// state, Raft for per-range raft state (hard state, log entries, truncated
// and applied state), Data for range data keyed by the user key itself.
//
// Mem is an in-memory Engine for tests. It models durability the way a
// write-ahead log does: a synced write makes itself and every earlier write
// durable; Crash drops everything that was not yet durable.
package storage
