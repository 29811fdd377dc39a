// Package storage is the storage contract raftd consumes: an Engine with
// atomic batch writes (optionally synced), point reads and ordered scans
// per column family, plus the key layout raftd uses in each family and
// the value envelope of range data.
//
// Column families follow stored (shared/proto/storepb): Local for node
// state, Raft for per-range raft state (hard state, log entries, truncated
// and applied state), Data for the latest record of each key of range
// data, keyed by the user key itself, and Versions for every version of
// range data (MVCC).
//
// # Versions (MVCC)
//
// A write of key at HLC timestamp ts (its command's apply timestamp, the
// same on every replica) puts two entries in one atomic write:
//
//   - Data, key -> EncodeRecord: kind 2, modify timestamp (ts), create
//     timestamp, version count (uvarint), value. A delete removes the
//     Data entry (a DeleteRange one range delete), so Data holds exactly
//     the live keys: a latest-value read is one point read, as before
//     versions, and scans need no filtering. Records of kind 1 (timestamp
//     and value only) were written before versions; they read as version
//     1 created at their timestamp.
//   - Versions, VersionKey(key, ts) -> the same record, or for a delete
//     (a DeleteRange: one per live key) EncodeTombstone: kind 3 and ts.
//     (A DeleteRange of many keys writes its tombstones in several
//     writes, ahead of the one that deletes the Data entries: see
//     raftd's doc.)
//
// VersionKey(key, ts) is escape(key) + 0x00 0x01 + ^ts, where escape
// writes each 0x00 byte of key as 0x00 0xff, and ^ts is ts's 12-byte
// big-endian encoding (wall time, logical) with every bit inverted. It
// sorts right:
//
//   - escape(key)+0x00 0x01 preserves the order of user keys and is never
//     a prefix of another key's: where two keys first differ, a 0x00 byte
//     becomes 0x00 0xff and compares below any other byte (0x00 < c), or
//     two 0x00 bytes compare on what follows (0xff = 0xff); where one key
//     ends, its terminator 0x00 0x01 compares below the other's next
//     byte (c > 0x00, or 0x00 0xff > 0x00 0x01). The terminator cannot
//     occur inside escape(key), since a 0x00 there is always followed by
//     0xff.
//   - so all versions of a key are contiguous, in key order, and within
//     them ^ts sorts the newest first: a read at t seeks to
//     VersionKey(key, t) and the first entry before VersionKeyEnd(key) is
//     the newest version at or before t.
//   - the versions of the user span [s, e) are exactly
//     [VersionPrefix(s), VersionPrefix(e)) (VersionSpan): a range's
//     versions are a span of the family, streamed and ingested with its
//     data by snapshots, and split with it.
//
// Mem is an in-memory Engine for tests. It models durability the way a
// write-ahead log does: a synced write makes itself and every earlier write
// durable; Crash drops everything that was not yet durable.
package storage
