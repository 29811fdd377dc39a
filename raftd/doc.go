// Package raftd is the replication daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server): every replica of every
// key range on this node, and the client KV API.
//
// # Engine
//
// internal/multiraft hosts one etcd raft RawNode (go.etcd.io/raft/v3
// v3.7.0) per replica, with CheckQuorum, PreVote and StepDownOnRemoval on
// and ReadIndex reads. No goroutine per range: one scheduler runs rounds.
// A round takes every range with pending work (inbound messages, ticks,
// proposals, reads, snapshot reports), and on a bounded worker pool
//
//  1. steps the inbox into raft, ticks and takes the Ready; a leader's
//     messages are sent at once (raft allows the leader to send appends in
//     parallel with its own write); committed entries are applied in
//     memory into the same batch (data, then the applied index), and
//     their proposers are answered (the entries are committed and applying
//     is deterministic, so the results are final);
//  2. writes the hard states, log entries, received snapshots and applied
//     data of every range of the round in one engine write, synced when any
//     range needs it (atomic for each range: a crash keeps all of a range's
//     writes or none, and a restart replays from the durable applied
//     index; a round over MaxRoundWriteBytes is cut into several writes
//     between ranges);
//  3. then sends the followers' messages (never before their entries are
//     durable), publishes the applied index, answers reads waiting for it,
//     truncates logs, and calls Advance.
//
// Flow control (multiraft.Config): MaxSizePerMsg 1 MiB, MaxInflightMsgs
// 256, MaxInflightBytes 32 MiB, MaxUncommittedEntriesSize 64 MiB (further
// proposals are dropped by raft and proposed again after ReproposeTicks),
// MaxCommittedSizePerReady 8 MiB. A range takes at most MaxRangeRoundBytes
// (8 MiB) of proposals and of appended entries into one round, the rest
// waiting for the next; a round's write over MaxRoundWriteBytes (32 MiB)
// goes to stored as several batches cut between ranges; and stored takes a
// batch over one bus frame in parts, staged and written as one. So many
// large values at once never make a write stored must refuse. Nor does a
// DeleteRange of many keys: its data is one range delete, and its
// tombstone versions (about 50 bytes a key) beyond DeleteRangeBatchBytes
// (8 MiB) are written ahead of the round's write in batches of that size
// (idempotent: a crash between has the committed command apply again at
// the same timestamp and write the same ones; see applier.delRange).
//
// Ticks and first elections: the ticker gives each unquiesced replica at
// most one pending tick; a replica whose last tick no round has taken yet
// gets no second one, so when rounds fall behind the tick interval raft's
// timers slow down with them instead of firing a backlog of ticks (and
// elections, CheckQuorum step-downs) at once. Slower timers only delay
// elections and step-downs, so leases stay safe (they count wall time).
// A new cluster's ranges start their raft timers staggered: range i of the
// layout after i/BootstrapCampaignsPerTick ticks (default 1000 per tick),
// the same on every node; its first replica campaigns on its first tick
// and the others' election timeouts start then too.
//
// # Storage
//
// internal/storage defines the Engine raftd consumes (atomic batch writes
// with a sync flag, Get, Scan per column family, consistent snapshots with
// chunked StreamRange, and IngestRange sessions that replace a span in one
// synced write). Production uses the
// node's stored through shared/storeclient; Config.StoredAddr "" uses a
// volatile in-memory engine (tests). Raft CF keys: 'r' + range id +
// h (hard state) | t (truncated state) | a (applied state: index, term,
// highest write timestamp, last sweep of client sessions) | l + index
// (entries) | s (snapshot install in progress, see below) | c + session
// id (a client session's record, see Exactly-once writes) | d + session
// id (a snapshot's session records, staged during its install).
// Local CF: replica/<range id> (descriptor of each local replica),
// tombstone/<range id> (a destroyed replica's, see Replica GC), bootstrap.
// Data CF: the user key itself, holding the key's latest record
// (storage.EncodeRecord: modify and create timestamps, version count,
// value; the older storage.EncodeValue envelope is still read). Versions
// CF: every version of every key, storage.VersionKey(key, ts) -> the
// record or a tombstone, written in the same write as the latest record;
// reads at a timestamp (GetRequest.read_at) take the newest version at or
// before it (the latest record when it is not newer, which also serves
// keys written before versions were kept); scans at a timestamp
// (ScanRequest.read_at) walk the data and versions families side by
// side, a page of VersionGCPageEntries at a time, taking for each key
// what such a read would (a tombstone leaves the key out), so they read
// every version of the keys they pass; versions older than Config.VersionRetention (default 4h) are
// collected in the background, and snapshots carry a range's versions
// with its data (see internal/storage's package doc for the encoding and
// why it sorts right). Each log keeps its hot tail
// in memory (EntryCacheEntries, at most EntryCacheBytes of entry data).
//
// # Transport
//
// Raft traffic uses wire.ProtoRaft (shared/proto/raftmsgpb): every message
// of one round for one node goes in one MessageBatch on the bus's
// long-lived one-way stream; heartbeats and their responses are coalesced
// into compact Heartbeat records. A round sends twice (its leaders'
// appends before its write, the rest after); when this node's leaders sent
// before the write and the next round is due at once, the messages of
// after the write (acknowledgements of appends, mostly) wait for the next
// round's first send and go in its frames, so that with leaders of many
// ranges on every node a round costs each peer one frame, not two. Each peer has its own bounded queue and
// sender goroutine, so a slow or dead peer only drops its own batches.
// The appends without entries raft sends each follower it replicates to
// whenever the commit index moves are not sent: followers learn the index
// from the next append or heartbeat (at most a tick later) and apply then.
// Stop cancels sends in flight and the store's storage calls rather than
// waiting for their timeouts, and returns when its context ends.
// Snapshots travel apart from the raft stream as SnapshotChunk unary
// calls: the sender opens an engine snapshot
// (stored's OpenSnapshot), reads the applied state and descriptor recorded
// in it, sets the MsgSnap's index and term to that applied state, and
// streams the range's data from the same snapshot (StreamRange, chunks of
// about SnapshotChunkBytes): a start chunk (descriptor, not done), data
// chunks, chunks of the range's client session records (from the same
// engine snapshot), a done chunk (MsgSnap, descriptor, applied state).
// The receiver's answer to the start chunk offers a window
// (SnapshotAck.window, 4): the sender then numbers the chunks after it
// (seq, from 1) and keeps up to that many in flight, each a unary call
// over the bus's TCP path for large requests (a QUIC stream of its own
// while TCP cannot be reached; the receiver adds them to its stored's
// ingest over the local socket), and the receiver takes them in seq order, refusing
// a repeat, a gap or a chunk beyond the window (which drops the
// session); a receiver that offers none gets one chunk at a time. The
// receiver adds each data chunk to an IngestRange session over its data
// span, so neither side holds more than a few chunks in memory; it keeps the session
// records (bounded by the sessions' limits) to install them. The outcome
// is always reported to raft. Every LivenessPingTicks ticks (default ElectionTicks/3) each node
// pings (empty batch) every known node it sent nothing to meanwhile; that
// traffic is the liveness quiesced ranges rely on.
//
// # Quiescence, truncation, snapshots
//
// An idle leader whose followers are all caught up and live stops ticking
// after QuiesceAfterTicks and tells followers with a quiesce heartbeat; any
// proposal, read or message (but heartbeat responses) wakes the range, and
// a quiesced follower wakes when its leader's node stops pinging. Logs are
// truncated below the applied index (keeping what recently active
// followers need) past LogTruncateEntries; followers behind the truncation
// get a snapshot.
//
// A snapshot is installed when a Ready carries it, in this order (steps 1
// and 2 on a goroutine of their own, while the rounds serve the other
// ranges and the replica sits them out holding the Ready; the round after
// completes it): (1) a synced write of a marker (raft CF 's': the snapshot's
// applied state, descriptor and a SHA-256 of its data entries) with the
// snapshot's client session records, staged (raft CF 'd'); (2) the
// ingest's Finish, replacing the data span atomically and durably; (3) the
// round's synced batch: log reset to the snapshot, hard state, applied
// state, descriptor, session records replaced by the staged ones, marker
// deleted. A crash before (1) or after (3) leaves a consistent old or new
// state. Between them the marker is present and the data is either the
// old or the snapshot's; at start the replica hashes its data span: a
// match means the data is the snapshot's, and (3) is completed from the
// marker and the staged records (raft had already replaced its log with
// the snapshot); otherwise the marker and staged records are dropped and
// the old state, whose applied index and sessions match the old data,
// stands. So the applied index
// never claims data the engine lacks, nor the reverse. A failure of (1) or
// (2) while running stops the store, like a failed round write (one
// refused for want of space excepted: (1) is a reserve write, and stored
// lets (2), whose data is staged already, use its reserve too).
//
// # Peers
//
// Every raftd publishes its advertised address (Config.AdvertiseAddr, the
// common --advertise-addr, else the bound bus address; a wildcard bus
// without one fails Start) under MetadataKey in the node's gossip metadata
// and follows gossipd's membership (discovery.go, through
// gossipclient.Follow): the raftd address of each alive or suspect
// member goes into the node id → address map that the raft transport,
// snapshot sends and KV forwarding resolve at every send, so a node that
// comes back at a new address is found again once gossip lists it there
// (its raft messages and Hello calls carry it too). The peers of Hello
// and Init are Config.Peers plus those members' raftds; an Init takes the
// alive members only, and every one of them must answer. No static
// --peers list is needed with gossipd.
//
// # Ranges and KV
//
// Range descriptors live in the meta range (range 1, span ["", 0x01)),
// under storage.MetaKey(end key). Keys beginning with 0x00 are refused
// from clients, except for requests whose header sets system (daemons:
// kvclient.Config.System) on keys under a daemon system prefix
// (kvpb.DaemonPrefixes: today only 0x00 "wf/", workflowd's instances,
// indexes, events and definitions); the meta prefix 0x00 "meta/" never
// is one, and a system Scan or DeleteRange stays inside its prefix. Those
// keys live in the meta range, so every workflow step is a proposal on
// range 1 next to descriptor reads and writes (about one per step, see
// workflowd's doc), and a meta snapshot carries them. Only node
// certificates may set system (see Authorization below).
//
// Authorization (authz.go, reviewed in one place): on wire.ProtoKV the
// data methods (Get, Put, Delete, Scan, DeleteRange, CompareAndSwap,
// Batch), Watch and Descriptors are open to node, client and admin
// certificates; a client certificate limited to key prefixes may touch
// only keys under them (a Scan's, DeleteRange's or Watch's whole span,
// every op of a Batch); system keys are for node certificates. Ranges, WatchRanges
// and Init are for nodes and admins. On wire.ProtoRaft every method is
// for node certificates, and Raft batches, Snapshot chunks and Hello must
// name the caller's own node id as their sender (a hello naming no node
// is a probe and records nothing), so one node can neither speak for
// another nor overwrite its address.
//
// Init (kvpb.InitRequest, method "Init" on
// wire.ProtoKV) asks every peer raftd (below) for its node id (Hello),
// refuses with Unavailable while fewer nodes than the request's min_nodes
// are live, lays out
// the meta range and user ranges (split points or initial_ranges) on up to
// 3 nodes each, and has every node bootstrap its replicas (log starting at
// index 10, term 5). It is idempotent. The node with the lowest id
// coordinates (others forward to it). The work runs detached from the
// caller (bounded by initTimeout and Stop), so a caller that gives up
// leaves no cluster half-bootstrapped; an Init that stopped part way
// anyway (a node's bootstrap failed) is completed by the next Init, which
// sends the layout recorded on a bootstrapped node to the nodes that lack
// it (Bootstrap is idempotent). Nodes also adopt a peer's layout in the
// background. The node id is the daemon runtime's persisted id.
//
// The KV protocol (kvpb) is served by every node: a request is served by
// the local leader of the key's range, forwarded to the leader otherwise,
// or answered NotLeader with the leader's raftd bus address when the
// header sets no_forward (or the request was already forwarded). A node
// without a replica of the range (or without a known leader) forwards to
// the first live replica its descriptor lists, which passes it on to the
// leader it knows (NotLeader hints are followed), so a dead node listed
// first does not cut the range off from the nodes that hold none of it
// (ChangeReplicas and TransferLeader route the same way). Writes
// are proposals that carry a client session and apply at most once (see
// Exactly-once writes); the proposal's (node, incarnation, sequence) only
// tells the proposer which caller to answer. Writes are stamped with the
// proposer's HLC reading, raised above the range's last write timestamp
// at apply. Linearizable reads use
// ReadIndex (concurrent reads share one round); STALE reads come from the
// local applied state. Batch is atomic within one range; Scan and
// DeleteRange walk ranges in order (DeleteRange is atomic per range only;
// each range applies it as one range delete, counting the keys it removes
// from a keys-only scan, a page at a time).
// A Scan page ends at its limit of entries (default 1,000) or with the
// entry that brings its keys and values to MaxScanBytes (4 MiB, or less as
// asked), so a page of large values fits a bus frame; the resume key
// continues it.
//
// Leases: a ReadIndex round that a quorum answered proves leadership from
// the moment it started; the leader then serves linearizable reads locally
// until that moment plus ElectionTicks-1 ticks less the clock's MaxOffset
// (followers that answered refuse votes for an election timeout under
// CheckQuorum, their first tick possibly at once), renewing the lease on heartbeats while it is being read
// from. A restarted replica refuses votes for one lease duration, since it
// may have backed a lease it no longer remembers. Leases are off when
// MaxOffset is not below the election timeout.
//
// Clock: raftd stamps writes with its own HLC, which it syncs with the
// node's clockd (--clock-addr) every second in both directions (clockd's
// Update), so stamps never fall behind the node's clock authority. Leases
// are suspended while clockd's health stream reports the node's clock too
// far from its peers' (reads then take ReadIndex rounds); an unreachable
// clockd leaves the last verdict in force (clocksync.go).
//
// HAZARD: committed entries are applied in the same round they are
// written (phase 1), into the round's batch, and proposals are answered
// then; the applied index reads wait for is published only in phase 2,
// after the write. Code that reads the state machine must wait for the
// published applied index (Replica.applied), never r.mu.applied: a client
// may hold an answer for a write that is not in the engine yet.
//
// Value cache: reads (Get, and the compares of CAS at apply) go through a
// store-wide cache of engine values (ValueCacheBytes, default 64 MiB,
// random eviction). The round applies its write to the cache after the
// engine write returns and before phase 2 publishes any applied index, so
// a read past its barrier finds the cache at least as new as the engine
// state it waited for; a read that missed fills the cache only if no data
// write completed since it read the engine; a snapshot install clears it.
// Absent keys are cached too.
//
// # Exactly-once writes
//
// Every write (Put, Delete, DeleteRange, CompareAndSwap, Batch) carries a
// client session (kvpb.Session): a 16-byte id, a seq that numbers the
// session's writes (every attempt of one write carries the same one),
// first_unacked (the lowest seq whose answer the client may still wait
// for) and issued_nanos (when the write was first sent, the wall time
// of the cluster's HLC).
// The Go client (shared/kvclient) gives each Client a session with many
// writes in flight at once, as in the Raft dissertation (§6.3). A write
// that comes without one gets a session of the raftd that received it
// (its id: node id, incarnation and a count; a seq per write), so that
// raftd's own re-proposals of a command and its forwards to the leader
// apply once; the caller's own retries are new writes then. This
// replaced the per-proposer sequences ranges used to keep for
// re-proposals: one mechanism covers both.
//
// Each range keeps, in its replicated state, one record per session (raft
// CF key c + session id): the apply timestamp of its last write, its
// highest first_unacked, and the answers of its applied writes from
// first_unacked on (about as many as the client has writes in flight).
// A record is rewritten, in the round's batch with the data and the
// applied index, once per apply pass in which a write of its session
// applied, and not otherwise; answers are encoded once, when their write
// applies. Every replica holds the table in memory (loaded at start). At apply
// (internal/multiraft/session.go), with T the command's apply timestamp:
// a seq whose answer is kept gets that answer again and changes nothing
// (a retried CompareAndSwap that succeeded reports that success, with its
// original timestamp); a seq below first_unacked is refused
// (FailedPrecondition, reason session_stale); a write issued more than
// SessionMaxAge (1 minute) before T, or that far after it, is refused
// (FailedPrecondition, request_too_old); a write beyond the range's limits
// is refused (ResourceExhausted, sessions_full); otherwise it applies, its
// answer is kept and the answers below its first_unacked are dropped.
// Every decision depends on the log and the replicated table only, so
// every replica decides the same, and a refused write changes nothing.
// The client's retries are therefore linearizable: a write applies once,
// between its first attempt and its answer, and every attempt answers as
// that one did.
//
// Expiry: a session without a write for SessionIdle (10 minutes) is
// forgotten by the next sweep, which a command runs when T is
// SessionMaxAge past the last one (AppliedState.sessions_swept_at), so
// every replica forgets it at the same point of the log. Forgetting
// cannot let an old copy of a write apply as new: a write w applied at
// T_w ≥ issued_w - SessionMaxAge while its session was active; a session
// is forgotten only after 2*SessionMaxAge without writes, so any later
// copy of w finds T - issued_w > SessionMaxAge and is refused as too old.
// (The same holds for a write that never applied and whose session moved
// first_unacked past it.) Hence SessionIdle ≥ 2*SessionMaxAge. A client
// reads the cluster's HLC from Descriptors answers and advances it with
// its own monotonic clock for at most 30 seconds, so issued is off by
// little more than the nodes' clock offset.
//
// Limits per range: MaxSessions (10,000), MaxSessionBytes (32 MiB of
// records), MaxSessionAnswers (8,192 per session; the Go client starts a
// new session once its seqs run 4,096 past its first unacknowledged
// write). A write beyond them first makes room by forgetting the sessions
// idle for 2*SessionMaxAge (safe, as above), and is refused if that is
// not enough. Counted per replica in /v1/ranges (sessions,
// session_bytes; `pleiades ranges --output json`) and in the metrics
// pleiades_raftd_client_sessions, pleiades_raftd_client_session_bytes,
// pleiades_raftd_session_repeats_total,
// pleiades_raftd_session_refusals_total and
// pleiades_raftd_sessions_forgotten_total. These limits and times decide
// what applies, so every node must use the same (multiraft.Config; there
// are no flags for them).
//
// Where the table goes: to disk with the applied index (same batch), so
// it survives restarts; with snapshots (streamed from the same engine
// snapshot as the data and installed with it, crash-safe, see above);
// across leader changes and forwards, being replicated state rather than
// the leader's. A split must copy every session record, and the range's
// highest write timestamp, to both sides (a session's next write may go
// to either, and apply timestamps must not go back on either side); a
// replica move is a snapshot.
//
// Work nobody waits for: the bus refuses a request whose deadline passed
// before it was read (DeadlineExceeded, the handler never runs); raftd
// neither proposes nor forwards a write whose caller's context has ended;
// and a proposal waiting in a replica's inbox whose caller gave up is
// dropped before it is proposed (pleiades_raftd_proposals_dropped_total).
// An entry already in the log may still commit after its caller gave up:
// sessions make the caller's retry of it safe.
//
// # A full disk
//
// stored refuses ordinary writes once its disk is below its free-space
// floor (ResourceExhausted, reason disk_full) and takes reserve writes
// down to half of it (see package stored). raftd follows stored's
// WatchDisk stream (disksync.go), and also learns from refusals:
//
//   - a leader on a full node refuses writes at once with
//     ResourceExhausted, reason kvpb.ReasonDiskFull, naming the node and
//     its free space ("kv: disk full on node 3 (free 30.0 MiB of 320.0
//     MiB, floor 48.0 MiB ...)"); the client does not retry it. Nothing of
//     such a write happened. Linearizable and stale reads go on (they
//     write nothing), on every node.
//   - a round write refused for want of space is not fatal. The ranges
//     this node leads write what they proposed before the refusal, and
//     every range writes its hard state, votes and applied index, from
//     stored's reserve. A follower's appends of user data are held: the
//     replica sits out holding its Ready (nothing of it is sent: no
//     append acknowledgement, vote or heartbeat answer, since nothing not
//     durable is ever acknowledged), its timers stopped, so it neither
//     campaigns nor disturbs the range; a quorum of the other replicas
//     keeps committing. The held write is retried as soon as stored
//     reports room (and every second); raft then catches the replica up,
//     by appends or by a snapshot if the leader truncated its log past it.
//   - the incarnation written at start, log truncations and snapshot
//     markers are reserve writes: raftd starts, and keeps its logs short,
//     on a full disk.
//
// A range whose leader's reserve is exhausted too (another process took
// the disk below half the floor) holds that leader's writes as well; on
// several nodes the other replicas elect a new leader once its heartbeats
// stop, on one node its reads wait for the space. The "disk" readiness
// condition (raftd stays ready), pleiades_raftd_disk_full,
// pleiades_raftd_disk_refusals_total and pleiades_raftd_replicas_held show
// the state.
//
// # Range events
//
// Watch (server stream on wire.ProtoKV, kvpb.WatchRequest ->
// kvpb.WatchResponse) streams the changes to a span of one range from its
// leader: a replay of the versions after a timestamp within the retention
// window, then the live changes as the rounds write them, and
// resolved-timestamp checkpoints (an idle watched range's resolved
// timestamp follows its closed timestamp, about --closed-timestamp-lag
// behind the clock, with no command); see internal/multiraft/watch.go.
//
// # Closed timestamps and bounded-staleness reads
//
// Each range's leader closes timestamps --closed-timestamp-lag (3s, more
// than twice --max-offset) behind its clock: in every command it builds
// (the apply lifts writes above the log's closed timestamp) and, for idle
// ranges, every 200ms on a side channel to the other replicas, tagged
// with the applied index and term a replica must reach first. A Get or
// Scan with Header.max_staleness_nanos is served by the receiving node's
// replica, leader or not, at its closed timestamp when that is within
// the bound (or at read_at when covered), and the response's read_at
// names it; otherwise the leader serves it (at its own closed timestamp,
// or linearizably). The argument for why no write ever lands at or below
// a closed timestamp, across leader changes, lease lapses and splits, is
// in internal/multiraft's doc.go. pleiades_raftd_closed_reads_total counts
// the reads served so. The Go client's Watch opens one stream
// per range and resumes from the last checkpoint.
//
// WatchRanges (server stream on wire.ProtoKV, kvpb.RangeEvent) reports this
// node's replicas' changes as they happen: a replica here won its range's
// leadership (with the leader it took over from), a replica was created
// here (bootstrap), and, from the leader, an applied conf change. The
// rounds publish without blocking; a reader more than 256 events behind
// is cut off with Unavailable. msgd bridges the stream to NATS.
//
// # Splits
//
// AdminSplit (kvpb, `pleiades range split KEY`) runs at the leader of the
// range holding KEY: it allocates a range id from the meta range's counter
// (storage.RangeIDCounterKey, an AllocRangeID command on range 1) and
// proposes a SplitTrigger on the range: the left descriptor (span cut at
// KEY, generation + 1) and the right one (new id, [KEY, end), the same
// replicas and generation). It applies, at the same log position on every
// replica, only while the range is still at the left's generation minus
// one (else it is refused and AdminSplit builds it again on the current
// descriptor). The apply writes, in the round's batch: the left
// descriptor, and the right range's initial state (raft state as a
// bootstrapped range's, the left's highest write timestamp and last
// session sweep, a copy of every client session record, its descriptor).
// Data needs no copy: the data column family is keyed by user key. Once
// the round's write is durable, the left's new descriptor is published
// and the right replica registered under one routing lock, so no key is
// routed to neither; the right replica on the left leader's node
// campaigns at once. AdminSplit then records both descriptors in meta in
// one MetaUpdate command (a record is replaced unless it is newer: a
// higher generation), and answers once this node routes to the right
// range. A leader whose descriptor is newer than meta's record (the
// update was lost with a failed node) records it again (reconciliation
// in the replica GC loop, every ReplicaGCInterval). A split at an existing
// boundary between user ranges (the retry of one whose answer was lost)
// answers the ranges on either side; when the range before it is known
// neither locally nor in meta yet (that update lost, this node removed
// from it since), Unavailable: retry.
//
// Descriptors answers from the meta range's leader after its read
// barrier (lease or ReadIndex), so that its answer holds every split and
// replica change recorded before the call; a node that does not lead meta
// forwards to it. A header with read_consistency STALE gets the answering
// node's meta replica as it is (a paused or cut-off node answers its
// past): the client's cache refreshes and clock readings ask for that,
// and so do routing and replica GC inside raftd, which a stale descriptor
// cannot mislead (a wrong route is refused with RangeKeyMismatch; GC acts
// only on a newer descriptor).
//
// Commands that reach the left range after the split applied but whose
// keys it no longer holds (routed before) are refused at apply, before
// their session is consulted, with FailedPrecondition, reason
// kvpb.ReasonRangeKeyMismatch, and the current descriptor in the error's
// detail (bus.Error.Detail, a DescriptorsResponse): nothing is done, and
// raftd routes them again (up to 3 times) before the caller sees it. A
// read checks after its barrier that its range still holds the key (the
// barrier may have applied a split whose right side's writes it does not
// cover); a Scan clips each part to the serving range after its barrier
// and continues from that range's end; DeleteRange looks a part's range
// up again when refused, and a retry of one that applied before a split
// counts each key once (the session answer's count stays with the side
// holding the start of the span it covered; the other side's copy counts
// 0). A header naming a range (kvpb.Header.range_id
// and generation, which the Go client sets from its cache) that the
// serving node knows split or changed since gets RangeKeyMismatch with the
// key's range and the named one, which the client installs in place of
// its stale entries and sends again at once: no reload of every
// descriptor. Meta and the meta range itself never split.
//
// By size: every SplitCheckInterval (10s) a leader measures each user
// range whose last measured size plus the bytes applied since (an
// estimate: overwrites and deletes count as growth) reach SplitBytes
// (--split-bytes, default 512 MiB; every range is measured once after
// start): it reads the range's keys and values a page (4 MiB) at a time,
// at most SplitBytes of them; past it, the range splits at the key where
// the first half of SplitBytes ended (pleiades_raftd_auto_splits_total).
// A range far larger splits again at its next check.
// By load: a leader counts the requests it serves per range and keeps a
// uniform sample of 64 of their keys per SplitCheckInterval; a range that
// served more than SplitQPS a second (--split-qps; off by default until
// ranges are rebalanced) splits at the sample's median key
// (pleiades_raftd_load_splits_total).
//
// # Replica changes
//
// ChangeReplicas (`pleiades range replicas add|remove`) runs at the
// range's leader, one node to add, one to remove, or one of each. An
// added replica: the leader has its node create an empty replica
// (CreateReplica: no raft state, refused over a tombstone or an
// overlapping replica), proposes a ConfChangeV2 adding it as a learner,
// waits until raft's progress shows it caught up (an empty log rejects
// the leader's appends, so raft sends it a snapshot through the snapshot
// machinery above), then promotes it to voter (unless learners are
// asked). Removing a voter is one simple change; a replacement adds and
// removes in one joint configuration (ConfChangeTransitionJointImplicit),
// which raft leaves by itself. Every conf change updates the descriptor
// where it applies, computed from the change alone (its context names
// the nodes of added replicas), in the same batch: replica types
// VOTER_INCOMING and VOTER_OUTGOING record a joint configuration, so a
// restart rebuilds raft's configuration from the descriptor; the
// generation moves with every change; meta records the result. A learner
// that does not catch up is removed again; a change whose leader failed
// after adding its learner is finished by a retry; the leader's own
// replica is removed by handing its leadership to another live voter
// first; the last voter cannot go. TransferLeader (`transfer-leader`)
// asks raft to hand leadership over, again every election timeout until
// the target leads.
//
// A node holding no replica of a range answers, once that range's
// traffic has lasted an election timeout (time for a split it is about to
// apply to create it locally), the range's appends with a rejection (as
// an empty log would) and its heartbeats, so that its leader sends a
// snapshot: its first chunk creates the replica when its
// descriptor names the node (a split this node missed, an add while it
// was away). A replica that missed a split installs a snapshot of the
// narrower span.
//
// # Replica GC
//
// A replica removed by a conf change it applies is destroyed after the
// round's write; one that never learns of its removal is found by the GC
// loop (every ReplicaGCInterval, 10s): a replica that does not lead, whose
// range's meta descriptor is newer and no longer names its replica id, is
// destroyed. Destroying deletes its raft state, descriptor and data span
// and writes a tombstone (local key tombstone/<range id>, the range's
// next replica id) in one synced write: no replica of the range with a
// lower id is created here again. A replica re-added later gets a new id
// (replica ids are never reused), so GC and tombstones never touch it.
// A replica steps only the raft messages addressed to its own id: the
// leader's last heartbeats to a removed replica may arrive after its
// node re-created the range under a new id, and their commit index (the
// old replica's) is past the new, empty log.
// A leader can apply its own removal (the replica a replacement removes
// may be elected before the joint configuration is left): it steps down
// and is destroyed with writes in flight that the other replicas may
// hold in their logs and the next leader commit, so those writes are
// answered DeadlineExceeded (outcome unknown; the client's retry applies
// once through its session), never NotLeader or Unavailable, which say
// nothing was done. A read that passed its barrier (or picked a
// follower's closed timestamp) reads the engine and then checks that its
// replica was not destroyed meanwhile (destroying marks the replica
// before it deletes its data): one that was answers Unavailable rather
// than what is left of its data, keys that read as absent.
// An empty replica (created for an add, never given its snapshot) that
// meta's descriptor does not name is destroyed once it is older than 60
// election timeouts (twice what the adding leader waits before it rolls
// the add back) and the range's leader confirms that its descriptor does
// not name it either: with a tombstone when that descriptor allocated its
// id (the add applied, then was rolled back), without one when no conf
// change naming it ever applied (the leader failed first), so that the
// add's retry, which allocates the same id, can create it again.
// pleiades_raftd_splits_total, pleiades_raftd_replica_changes_total,
// pleiades_raftd_replicas_removed_total and the snapshot counters show
// the activity.
//
// # Not yet
//
// Merges of small neighbours, rebalancing by size or load (workflowd
// replaces dead nodes' replicas, decommissions and balances replica counts,
// over ChangeReplicas), size and load per range in `pleiades ranges
// --all`, AsyncStorageWrites (tried: see BENCHMARKS.md). See BENCHMARKS.md for
// figures.
package raftd
