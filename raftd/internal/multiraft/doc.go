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
// while the round that appends it writes, one MultiGet for the round's ranges,
// so its apply a round later finds them without a stored round trip;
// reads at a timestamp, the background collection of old versions), watch.go (Watch
// streams fed by the rounds' writes), closedts.go (closed timestamps: the
// log's, the leaders' side channel, bounded-staleness reads). The tests' doubles live in test
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
// # Closed timestamps
//
// A replica's closed timestamp C is a promise: every write at or below C
// is in its published state, and none will ever be applied there. A
// bounded-staleness read (kvpb.Header.max_staleness_nanos) is then served
// by any replica, leader, follower or learner, at a timestamp at or below
// C, with no round to the leader, and answers exactly what the history
// holds there. Watches take C as their idle ranges' resolved timestamp.
// C is the higher of two promises.
//
// The log's. Every command carries its builder's closed timestamp:
// ClosedTimestampLag (3s) behind its clock, and never below any closed
// timestamp that replica promised or heard of. The apply raises the
// applied state's closed timestamp to it and applies the command, and
// every later one, above that (and above the highest write timestamp):
// a write stamped at or below it is applied just above instead, and its
// answer carries the timestamp it was applied at. This is deterministic
// and in the log: every replica, and every later leader (which applied
// the same prefix), keeps it. A replica that published applied entry i
// with log-closed C has every write at or below C (those before i are
// applied, those after apply above C), so reading at C is exact.
//
// The side channel, for ranges without writes. Every
// ClosedTimestampInterval (200ms) a leader holding its lease promises a
// timestamp T, with I its applied index and t its term, and sends (T, I,
// t) to the range's other replicas in one batch per node. T is the
// target, kept below the timestamp of every command it built that has
// not applied on it (a re-proposal may land after I), and at least its
// last promise; the commands it builds afterwards carry at least T. A
// replica uses T once its published applied entry is at or after I and
// of term t. Why no command after I applies at or below T:
//   - a command of term t after I was built by this leader (only a leader
//     builds or re-proposes commands; a former leader answers its pending
//     ones as of unknown outcome instead of forwarding them, their
//     sessions making the retry apply once): either after the promise,
//     carrying at least T, or before it and not yet applied, stamped
//     above T;
//   - a replica whose applied entry at or after I is of term t holds the
//     leader's log up to there (an entry of term t is the term-t leader's,
//     and raft's log matching gives the prefix), so entries of other terms
//     at or before I were applied already;
//   - a command of a later term is built by a later leader. That leader
//     was elected after the promising leader's lease expired (leases are
//     wall-clock and end MaxOffset early; see Replica.leaseHeldLocked),
//     so after T was promised; it stamps commands from its clock, at
//     least real time - MaxOffset, while T is at most real time +
//     MaxOffset - ClosedTimestampLag: above T as long as
//     ClosedTimestampLag > 2 MaxOffset (NewStore refuses less). A later
//     leader that heard T itself carries it in its commands whatever its
//     clock says.
//
// A leader whose lease lapsed (an idle range stops renewing it) promises
// nothing on the side channel; a replica asked for a bounded-staleness
// read or a watch marks the range wanted, a follower tells the leader so
// (MessageBatch.closed_wanted), and a leader of a wanted range renews its
// lease with a ReadIndex round; with no leases at all (DisableLeaseReads,
// or timers too short for one), it proposes an empty command instead,
// whose closed timestamp the log carries. Splits: the new range's applied state
// starts with the left side's log-closed timestamp and highest write
// timestamp; its commands come after the split command, which its leader
// built carrying its promises (or, pending when a later promise was made,
// stamped above it), so they apply above every promise of the left range
// that a replica could have used for its keys; a replica serves a read at
// its closed timestamp only for keys its applied descriptor holds.
// Snapshots carry the applied state, closed timestamp included; a
// restarted replica starts from its durable applied state's.
//
// Errors: NotLeaderError from a replica that does not lead; the KV methods
// return bus errors (InvalidArgument for bad input, NotLeader with the
// leader's address as hint, Unavailable for "retry later, nothing done",
// ResourceExhausted with reason disk_full for a write refused because the
// leader's disk is full (nothing done), FailedPrecondition with reason
// range_key_mismatch and the current descriptors as detail for a request
// whose range split or changed (nothing done), DeadlineExceeded when a
// request's outcome is unknown: a forwarded request whose answer was
// lost, a write in flight at a replica that stopped leading, was
// destroyed, or whose node stopped).
package multiraft
