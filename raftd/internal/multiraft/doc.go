// Package multiraft is raftd's engine: a Store hosts every replica of one
// node (one etcd raft RawNode each) and drives them with one scheduler
// whose rounds batch the log writes of every active range into one engine
// write (see package raftd for the round, lease and storage contracts).
//
// Files by concern: store.go (Store, scheduler rounds, ticker, bootstrap),
// replica.go (Replica: inbox, Ready handling, proposals, reads, leases,
// quiescence, truncation), apply.go (state machine), session.go (client
// sessions: exactly-once writes, their expiry and limits), snapshot.go
// (snapshot streaming, ingest, crash-safe install and its recovery), raftlog.go
// (raft.Storage over the engine with an entry cache), outbox.go (per-node
// batching and heartbeat coalescing), kv.go (the kvpb methods: routing,
// forwarding, cross-range Scan and DeleteRange), plan.go (initial range
// layout), split.go (splits, meta updates, range id allocation,
// RangeKeyMismatch, leader transfer), autosplit.go (splits by size and
// load), confchange.go (replica changes: learners, promotion, joint
// configurations, empty replicas for snapshots), gc.go (replica GC,
// tombstones, meta reconciliation), valuecache.go (the read cache of
// engine values), disk.go (a full disk: proposals refused, refused round
// writes held or written from stored's reserve), mvccapply.go and mvcc.go
// (versions: the records a write builds on, read into the value cache
// after the round that appended it, one MultiGet for the round's ranges,
// so its apply a round later finds them without a stored round trip;
// reads at a timestamp, the background collection of old versions), watch.go (Watch
// streams fed by the rounds' writes). The tests' doubles live in test
// files:
// localnet_test.go (LocalNetwork, the fault-injecting in-process
// transport, and testConfig's fast timers).
//
// Concurrency: a Replica's raft state (mu) is touched only by scheduler
// rounds, one round at a time; API callers hand work in through the inbox
// (its own lock) and wait on channels. Lock order: Replica.mu, then
// Replica.in, then Store locks; Store.enqueue takes only the scheduler
// lock and may be called anywhere.
//
// Errors: NotLeaderError from a replica that does not lead; the KV methods
// return bus errors (InvalidArgument for bad input, NotLeader with the
// leader's address as hint, Unavailable for "retry later, nothing done",
// ResourceExhausted with reason disk_full for a write refused because the
// leader's disk is full (nothing done), FailedPrecondition with reason
// range_key_mismatch and the current descriptors as detail for a request
// whose range split or changed (nothing done), DeadlineExceeded when a
// forwarded request's outcome is unknown).
package multiraft
