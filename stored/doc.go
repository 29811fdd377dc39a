// Package stored is the storage daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server): the node's single
// RocksDB instance, holding node-local state (column family local), every
// range's raft log (raft) and every range's data (data).
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), owns its directory <data-dir>/stored and reports readiness
// through the "stored" check once started. Its bus endpoint binds loopback
// by default: stored serves the daemons of its own host only.
//
// Still to come, in its own issue: the RocksDB engine (grocksdb), the store
// protocol on the bus (Get, MultiGet, Scan, Write with group commit,
// snapshots, StreamRange, IngestRange, ApproximateSize, Compact,
// Checkpoint, Stats), the shared client, RocksDB metrics and crash tests.
package stored
