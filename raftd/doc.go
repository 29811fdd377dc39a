// Package raftd is the replication daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server): every replica of every
// key range on this node, and the client KV API.
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), validates its configuration (the stored, gossipd and clockd
// addresses and the static peer list it will use) and reports readiness
// through the "raftd" check once started.
//
// Still to come, in its own issue: the multi-raft engine on etcd raft (one
// host-wide scheduler, log and state machine in stored, batched transport,
// quiescence, truncation and snapshots), range descriptors in a meta range,
// the KV protocol (Get, Put, Delete, Scan, DeleteRange, CompareAndSwap,
// Batch) and /v1/ranges.
package raftd
