package multiraft

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// MetaRangeID is the range id of the meta range, which holds every range
// descriptor under storage.MetaKey.
const MetaRangeID = 1

// A bootstrapped range's log starts after this entry, so no replica ever
// needs the (empty) entries before it.
const (
	initialIndex = 10
	initialTerm  = 5
)

// NotLeaderError is returned by a replica that is not its range's leader.
type NotLeaderError struct {
	RangeID uint64
	// LeaderNode is the node of the leader this replica knows, or 0.
	LeaderNode uint64
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("multiraft: range %d: not leader (leader node %d)", e.RangeID, e.LeaderNode)
}

type inMsg struct {
	msg     *raftpb.Message
	quiesce bool
}

type proposalResult struct {
	res *Result
	err error
}

type proposal struct {
	ops        []*raftmsgpb.Op
	session    *kvpb.Session
	ts         hlc.Timestamp
	seq        uint64
	data       []byte
	proposedAt uint64
	done       chan proposalResult
	// gone is closed when the caller stops waiting (its context's Done);
	// abandoned is set when it has stopped.
	gone      <-chan struct{}
	abandoned atomic.Bool
}

// callerGone reports whether no one waits for p any more.
func (p *proposal) callerGone() bool {
	if p.abandoned.Load() {
		return true
	}
	select {
	case <-p.gone:
		return true
	default:
		return false
	}
}

type readReq struct {
	done chan error
}

type readBatch struct {
	id       uint64
	reqs     []*readReq
	issuedAt uint64
	// started is when the round began: its quorum of heartbeat answers
	// proves leadership from then on.
	started time.Time
	term    uint64
	index   uint64
}

type snapReport struct {
	to  uint64
	err error
}

// snapFailures is the record of a replica's failed snapshot sends: the
// next is not tried before retryAt (doubling from snapRetryMin up to
// snapRetryMax), and a warning is logged at most every snapWarnEvery.
type snapFailures struct {
	n       int
	retryAt time.Time
	warned  time.Time
}

const (
	snapRetryMin  = 50 * time.Millisecond
	snapRetryMax  = 2 * time.Second
	snapWarnEvery = 10 * time.Second
)

// noteSnapFailedLocked records a failed send to replica to and logs it
// (a warning the first time and at most every snapWarnEvery, else debug).
func (r *Replica) noteSnapFailedLocked(to uint64, err error, now time.Time) {
	f := r.mu.snapFails[to]
	if f == nil {
		f = &snapFailures{}
		r.mu.snapFails[to] = f
	}
	f.n++
	wait := snapRetryMax
	if f.n <= 6 {
		wait = min(snapRetryMin<<(f.n-1), snapRetryMax)
	}
	f.retryAt = now.Add(wait)
	lvl := slog.LevelDebug
	if now.Sub(f.warned) >= snapWarnEvery {
		lvl, f.warned = slog.LevelWarn, now
	}
	r.log.Log(context.Background(), lvl, "snapshot send failed", slog.Uint64("to_replica", to),
		slog.Int("failures", f.n), slog.Duration("retry_in", wait), slog.Any("error", err))
}

type readyWork struct {
	rd  raft.Ready
	ops []storage.Op
	// ahead were written before ops (a range delete's tombstones) and
	// are published to the watches with them.
	ahead     []storage.Op
	sync      bool
	sentEarly bool
	done      []doneProposal
	// fetch are the keys the appended entries' writes will read when
	// applied and the value cache lacks (Store.prefetch).
	fetch [][]byte
}

// Replica is this node's replica of one range: a RawNode, its log and its
// state machine. All raft state is guarded by mu and touched only by the
// store's scheduler rounds; callers hand work in through the inbox.
type Replica struct {
	s *Store
	// fetching is the last prefetch that read keys of this replica's
	// appended entries (Store.prefetch); its apply waits for it if it
	// needs one of them.
	fetching atomic.Pointer[cacheRead]
	rangeID  uint64
	log      *slog.Logger

	// created is when this replica was created or loaded here (replica
	// GC gives an empty one emptyReplicaGrace from then to get its
	// snapshot).
	created        time.Time
	noVotesUntil   time.Time
	campaignOnTick bool
	// holdTicks is how many store ticks a newly bootstrapped replica lets
	// pass before its raft timers start (staggered first campaigns, see
	// Config.BootstrapCampaignsPerTick). Only the ticker touches it.
	holdTicks int
	desc      atomic.Pointer[kvpb.RangeDescriptor]
	quiesced  atomic.Bool
	isLeader  atomic.Bool
	// heardLeader is set by a round that stepped an append or heartbeat
	// from the range's leader, and taken by the next tick; tickSkippable
	// tells whether the replica's last round left it a follower with
	// nothing a tick would time out (proposals, reads, a campaign). Such
	// a tick is skipped (see tick).
	heardLeader, tickSkippable atomic.Bool
	ticksSkipped               atomic.Uint64
	// leaderActive is set by a round that left the replica leading after
	// stepping messages or proposals, and taken by the next tick: a
	// range with traffic, whose next pass is likely to come before the
	// tick after. Such a tick is deferred (see tick).
	leaderActive  atomic.Bool
	ticksDeferred atomic.Uint64
	leaderNode    atomic.Uint64
	// leaderSeen, when not nil, is closed (and cleared) as the replica
	// learns a leader: waitLeader's wake-up.
	leaderSeenMu sync.Mutex
	leaderSeen   chan struct{}
	// lastLeader is the last non-zero leader node seen (events.go).
	lastLeader atomic.Uint64
	applied    atomic.Uint64
	// install is the snapshot being installed, off the rounds; the
	// replica sits the rounds out until it is finished (see phase1).
	install atomic.Pointer[snapInstall]
	// sessionCount and sessionBytes mirror mu.sessions for metrics.
	sessionCount, sessionBytes atomic.Int64
	// held is a work whose write was refused for want of space; the
	// replica sits the rounds out until it is written (disk.go).
	held atomic.Pointer[heldWork]
	// written counts the user bytes applied since the range was last
	// measured for a split by size (autosplit.go).
	written atomic.Int64
	// sizeEst is the range's data size as last measured plus what was
	// written since, or -1 before the first measure (autosplit.go).
	sizeEst atomic.Int64
	// load counts and samples the requests a leader serves (splits by
	// load, autosplit.go).
	load loadStats
	// meter counts the requests it serves as leader per second
	// (ReplicaStatus.requests_per_sec).
	meter loadMeter
	// destroyed is set once the replica is removed from this node.
	destroyed atomic.Bool
	// metaGen is the highest generation of this range known to be
	// recorded in the meta range (meta reconciliation).
	metaGen atomic.Uint64
	// cts is the published closed timestamp, closedWant when a reader or
	// watcher last wanted it to move on (closedts.go).
	cts        closedState
	closedWant atomic.Int64

	in struct {
		sync.Mutex
		msgs  []inMsg
		props []*proposal
		reads []*readReq
		ticks int
		// tickDeferred: the pending tick was deferred by tick, which
		// scheduled no pass for it.
		tickDeferred bool
		reports      []snapReport
		snaps        []*inboundSnapshot
		wake         bool
	}
	mu struct {
		sync.Mutex
		rn        *raft.RawNode
		replicaID uint64
		// desc is the descriptor as of the last applied entry (apply
		// checks commands against it); the published one (Replica.desc)
		// follows once the round's write is durable.
		desc *kvpb.RangeDescriptor
		// splits are splits applied by the current round, completed
		// after its write (finishSplitsLocked).
		splits []pendingSplit
		// removed: an applied conf change removed this replica; it is
		// destroyed after the round's write.
		removed      bool
		log          *raftLog
		applied      *raftmsgpb.AppliedState
		sessions     *sessionTable
		pending      map[uint64]*proposal
		nextSeq      uint64
		readsIssued  map[uint64]*readBatch
		readsReady   []*readBatch
		nextReadID   uint64
		ticks        uint64
		idleTicks    int
		pendingSnaps map[uint64]*inboundSnapshot
		// lease: a leader may serve linearizable reads without a ReadIndex
		// round until leaseExpiry, in leaseTerm.
		leaseExpiry   time.Time
		leaseTerm     uint64
		lastLeaseRead time.Time
		// closingProp is the last empty command proposed to close a
		// timestamp in the log when leases are off (closedts.go).
		closingProp *proposal
		// closedPub is the highest closed timestamp this replica promised
		// on the side channel as leader; the commands it builds carry at
		// least it (closedts.go).
		closedPub   hlc.Timestamp
		snapSending map[uint64]bool
		snapFails   map[uint64]*snapFailures
		// heartbeatResps are the replicas whose heartbeat responses were
		// stepped since the last Ready's messages went out (see sendLocked).
		heartbeatResps map[uint64]bool
		// appendedAt is, for each follower sent an append with entries,
		// the tick (ticks) of the last one (see sendLocked).
		appendedAt map[uint64]uint64
	}
}

func replicaOf(d *kvpb.RangeDescriptor, node uint64) *kvpb.ReplicaDescriptor {
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() == node {
			return r
		}
	}
	return nil
}

// bootstrapOps writes the initial raft state of a new replica: an empty
// log truncated at initialIndex, committed and applied there.
func bootstrapOps(d *kvpb.RangeDescriptor) ([]storage.Op, error) {
	id := d.GetRangeId()
	var ops []storage.Op
	for _, kv := range []struct {
		key []byte
		m   proto.Message
	}{
		{storage.HardStateKey(id), &raftpb.HardState{Term: proto.Uint64(initialTerm), Commit: proto.Uint64(initialIndex)}},
		{storage.TruncatedStateKey(id), &raftmsgpb.TruncatedState{Index: initialIndex, Term: initialTerm}},
		{storage.AppliedStateKey(id), &raftmsgpb.AppliedState{Index: initialIndex, Term: initialTerm}},
	} {
		b, err := proto.Marshal(kv.m)
		if err != nil {
			return nil, err
		}
		ops = append(ops, storage.Put(storage.Raft, kv.key, b))
	}
	b, err := proto.Marshal(d)
	if err != nil {
		return nil, err
	}
	return append(ops, storage.Put(storage.Local, storage.ReplicaKey(id), b)), nil
}

func newReplica(s *Store, desc *kvpb.RangeDescriptor, bootstrap bool, holdTicks int) (*Replica, error) {
	me := replicaOf(desc, s.d.NodeID)
	if me == nil {
		return nil, fmt.Errorf("multiraft: range %d has no replica on node %d", desc.GetRangeId(), s.d.NodeID)
	}
	r := &Replica{s: s, rangeID: desc.GetRangeId(), log: s.log.With(slog.Uint64("range", desc.GetRangeId())), created: time.Now()}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*s.cfg.StorageTimeout)
	err := s.recoverSnapshotInstall(rctx, r.rangeID)
	rcancel()
	if err != nil {
		return nil, fmt.Errorf("multiraft: recover snapshot install of range %d: %w", r.rangeID, err)
	}
	r.desc.Store(desc)
	applied := &raftmsgpb.AppliedState{}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StorageTimeout)
	v, ok, err := s.d.Engine.Get(ctx, storage.Raft, storage.AppliedStateKey(r.rangeID))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("multiraft: load applied state of range %d: %w", r.rangeID, err)
	}
	if ok {
		if err := proto.Unmarshal(v, applied); err != nil {
			return nil, fmt.Errorf("multiraft: decode applied state of range %d: %w", r.rangeID, err)
		}
	}
	// A replica created empty for a snapshot (CreateReplica) has no
	// state yet: no configuration until the snapshot brings one.
	cs := confStateOf(desc)
	if !ok {
		cs = &raftpb.ConfState{}
	}
	l, err := loadRaftLog(s.d.Engine, r.rangeID, cs, s.cfg.EntryCacheEntries, s.cfg.EntryCacheBytes, s.cfg.StorageTimeout)
	if err != nil {
		return nil, err
	}
	l.applied, l.appliedTerm = applied.GetIndex(), applied.GetTerm()
	sessions, err := loadSessions(s, r.rangeID)
	if err != nil {
		return nil, err
	}
	cfg := s.cfg
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        me.GetReplicaId(),
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   l,
		Applied:                   applied.GetIndex(),
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  cfg.MaxCommittedSizePerReady,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedEntriesSize,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxInflightBytes:          cfg.MaxInflightBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    raftLogger{r.log},
	})
	if err != nil {
		return nil, fmt.Errorf("multiraft: raft for range %d: %w", r.rangeID, err)
	}
	r.mu.rn = rn
	r.mu.desc = desc
	r.mu.replicaID = me.GetReplicaId()
	r.mu.log = l
	r.mu.applied = applied
	r.mu.sessions = sessions
	r.sessionCount.Store(int64(len(sessions.m)))
	r.sessionBytes.Store(int64(sessions.bytes))
	r.mu.pending = map[uint64]*proposal{}
	r.mu.readsIssued = map[uint64]*readBatch{}
	r.mu.snapSending = map[uint64]bool{}
	r.mu.snapFails = map[uint64]*snapFailures{}
	r.mu.pendingSnaps = map[uint64]*inboundSnapshot{}
	if !bootstrap {
		// A restarted replica may have acknowledged heartbeats that back a
		// leader's lease it no longer remembers: it refuses votes until
		// any such lease has expired.
		r.noVotesUntil = time.Now().Add(s.leaseDuration())
	}
	r.applied.Store(applied.GetIndex())
	r.publishClosedLocked()
	r.sizeEst.Store(-1) // measured once at first
	// The first replica of a new range campaigns on its first tick, by
	// when the other nodes have bootstrapped too (a vote request to a node
	// without the replica is lost, costing a whole election timeout).
	// Its first tick comes after holdTicks ticks, on every node alike, so
	// the other replicas' election timeouts start with that campaign.
	r.campaignOnTick = bootstrap && len(desc.GetReplicas()) > 0 && desc.GetReplicas()[0].GetNodeId() == s.d.NodeID
	r.holdTicks = holdTicks
	return r, nil
}

// RangeID returns the replica's range id.
func (r *Replica) RangeID() uint64 { return r.rangeID }

// Descriptor returns the range descriptor this replica knows.
func (r *Replica) Descriptor() *kvpb.RangeDescriptor { return r.desc.Load() }

func (r *Replica) startKey() []byte { return r.desc.Load().GetStartKey() }

func (r *Replica) containsKey(key []byte) bool {
	d := r.desc.Load()
	return bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
}

// IsLeader reports whether this replica is its range's raft leader.
func (r *Replica) IsLeader() bool { return r.isLeader.Load() }

// LeaderNode returns the node of the leader this replica knows, or 0.
func (r *Replica) LeaderNode() uint64 { return r.leaderNode.Load() }

func (r *Replica) nodeOfReplica(id uint64) uint64 {
	for _, rd := range r.desc.Load().GetReplicas() {
		if rd.GetReplicaId() == id {
			return rd.GetNodeId()
		}
	}
	return 0
}

// deliver queues a message for the replica's next round, or drops it when
// MaxInboxMessages are waiting already.
func (r *Replica) deliver(m inMsg) {
	r.in.Lock()
	if len(r.in.msgs) >= r.s.cfg.MaxInboxMessages {
		r.in.Unlock()
		r.s.metrics.inboxDrops.Add(1)
		return
	}
	r.in.msgs = append(r.in.msgs, m)
	r.in.Unlock()
	r.s.enqueue(r.rangeID)
}

// tick is called by the store's ticker; it reports whether the range has
// work. Quiesced replicas are not ticked unless their leader's node is not
// in live (the nodes heard from lately, taken once per tick), which wakes
// them. Ticks do not pile up: a replica whose previous tick a round has not
// yet taken gets no second one, so a backlog of slow rounds cannot fire
// several ticks (and elections) at once; raft's timers then run slower
// than the wall clock, which only delays elections and step-downs.
func (r *Replica) tick(live map[uint64]bool) bool {
	if r.holdTicks > 0 {
		r.holdTicks--
		return false
	}
	if r.quiesced.Load() {
		if ln := r.leaderNode.Load(); ln == 0 || live[ln] {
			return false
		}
		r.in.Lock()
		r.in.wake = true
		r.in.Unlock()
		return true
	}
	if r.heardLeader.Swap(false) && r.tickSkippable.Load() {
		// A follower that heard from its leader since the last tick: the
		// append or heartbeat restarted its election timer, so this tick
		// would only cost the replica a pass of its own (with many busy
		// ranges, most of a follower's passes). Its timer runs at most a
		// tick behind for it, which makes it refuse votes a little
		// longer: the safe side for leases.
		r.s.metrics.ticksSkipped.Add(1)
		r.ticksSkipped.Add(1)
		return false
	}
	r.in.Lock()
	defer r.in.Unlock()
	if r.in.tickDeferred {
		// The tick deferred last time found no pass to ride on: both
		// go now, so the leader's raft clock keeps the wall clock's pace.
		r.in.ticks, r.in.tickDeferred = 2, false
		return true
	}
	if r.leaderActive.Swap(false) && r.in.ticks == 0 && r.isLeader.Load() {
		// A leader with traffic since the last tick: its next pass (an
		// acknowledgement, the next proposal) most likely comes before
		// the tick after, and takes this tick with it, instead of the
		// tick costing a pass of its own (with many busy ranges, each
		// taking a put every tick or two, about a quarter of all the
		// passes). A tick that waits is late by less than a tick: its
		// heartbeats, CheckQuorum and the proposals' timers run at most
		// that much behind, and a follower being sent entries needs no
		// heartbeat anyway (sendLocked).
		r.in.ticks, r.in.tickDeferred = 1, true
		r.s.metrics.ticksDeferred.Add(1)
		r.ticksDeferred.Add(1)
		return false
	}
	r.in.ticks = max(r.in.ticks, 1)
	return true
}

func (r *Replica) unquiesceLocked() {
	if r.quiesced.Load() {
		r.quiesced.Store(false)
		r.mu.idleTicks = 0
	}
}

// phase1 steps the inbox into raft, ticks, and takes the Ready; it returns
// the log writes for the round's synced batch. A leader's messages go to
// out at once (sent before its own write, as raft allows).
func (r *Replica) phase1(out *outbox) (*readyWork, error) {
	if r.destroyed.Load() {
		return nil, nil
	}
	if w, holding := r.takeHeld(time.Now()); holding {
		return w, nil // written in this round if due; nothing else meanwhile
	}
	if in := r.install.Load(); in != nil {
		if !in.finished.Load() {
			return nil, nil // the inbox waits for the install
		}
		r.install.Store(nil)
		// What arrived meanwhile is for the next round, but not the ticks:
		// the leader was busy sending the snapshot, and the time the
		// install took must not count as its silence.
		r.in.Lock()
		r.in.ticks = 0
		r.in.Unlock()
		r.s.enqueue(r.rangeID)
		r.mu.Lock()
		defer r.mu.Unlock()
		if in.err != nil {
			return nil, in.err
		}
		ops, err := r.installOpsLocked(in.rd.Snapshot, in.ps)
		if err != nil {
			return nil, err
		}
		return r.readyWorkLocked(out, in.rd, ops)
	}
	r.in.Lock()
	msgs, props, reads, ticks, reports, snaps, wake := r.in.msgs, r.in.props, r.in.reads, r.in.ticks, r.in.reports, r.in.snaps, r.in.wake
	r.in.msgs, r.in.props, r.in.reads, r.in.ticks, r.in.reports, r.in.snaps, r.in.wake = nil, nil, nil, 0, nil, nil, false
	r.in.tickDeferred = false
	r.in.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	rn := r.mu.rn
	if wake {
		r.unquiesceLocked()
	}
	// Received snapshots that the Ready of this round does not install
	// are dropped at its end.
	defer r.dropPendingSnapsLocked()
	for _, sn := range snaps {
		idx := sn.msg.GetSnapshot().GetMetadata().GetIndex()
		if old := r.mu.pendingSnaps[idx]; old != nil {
			r.s.abortIngest(old)
		}
		r.mu.pendingSnaps[idx] = sn
	}
	var appended, heardFrom uint64
	for i, m := range msgs {
		if m.msg.GetTo() != r.mu.replicaID {
			// Sent to another replica of the range on this node: the one
			// this replaced (removed, then re-added under a new id), or
			// the one that replaces it. Its heartbeat's commit index is
			// that replica's, which raft would take as this log's (and
			// panic when past its end).
			continue
		}
		if m.msg.GetType() == raftpb.MsgApp {
			// At most MaxRangeRoundBytes of appended entries per round
			// (at least one append): the rest waits for the next.
			n := entriesBytes(m.msg.GetEntries())
			if appended > 0 && appended+n > r.s.cfg.MaxRangeRoundBytes {
				r.requeueLocked(msgs[i:], nil)
				break
			}
			appended += n
		}
		// Any message but a heartbeat (response) wakes a quiesced replica;
		// the answers to the quiesce heartbeat must not.
		if !m.quiesce && m.msg.GetType() != raftpb.MsgHeartbeatResp {
			r.unquiesceLocked()
		}
		if t := m.msg.GetType(); (t == raftpb.MsgVote || t == raftpb.MsgPreVote) && time.Now().Before(r.noVotesUntil) {
			continue
		}
		if m.msg.GetType() == raftpb.MsgHeartbeatResp {
			if r.mu.heartbeatResps == nil {
				r.mu.heartbeatResps = map[uint64]bool{}
			}
			r.mu.heartbeatResps[m.msg.GetFrom()] = true
		}
		_ = rn.Step(m.msg)
		if t := m.msg.GetType(); t == raftpb.MsgApp || t == raftpb.MsgHeartbeat {
			heardFrom = m.msg.GetFrom()
		}
		if m.quiesce {
			r.maybeQuiesceFollowerLocked(m.msg)
		}
	}
	for _, rep := range reports {
		st := raft.SnapshotFinish
		if rep.err != nil {
			st = raft.SnapshotFailure
			r.noteSnapFailedLocked(rep.to, rep.err, time.Now())
		} else {
			delete(r.mu.snapFails, rep.to)
		}
		delete(r.mu.snapSending, rep.to)
		rn.ReportSnapshot(rep.to, st)
	}
	if err := r.s.diskFullErr(); err != nil && len(props) > 0 {
		// Not proposed: the node's disk is full (disk.go).
		for _, p := range props {
			p.done <- proposalResult{err: err}
		}
		props = nil
	}
	if len(props) > 0 {
		r.unquiesceLocked()
		r.proposeLocked(props)
	}
	if len(reads) > 0 {
		r.unquiesceLocked()
		if rn.BasicStatus().RaftState != raft.StateLeader {
			err := &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.leaderNode.Load()}
			for _, rr := range reads {
				rr.done <- err
			}
		} else {
			r.issueReadLocked(reads)
		}
	}
	for range ticks {
		if r.quiesced.Load() {
			break
		}
		if r.campaignOnTick {
			r.campaignOnTick = false
			_ = rn.Campaign()
		}
		rn.Tick()
		r.mu.ticks++
		r.onTickLocked()
	}
	if st := rn.BasicStatus(); st.RaftState == raft.StateFollower {
		r.tickSkippable.Store(len(r.mu.pending) == 0 && len(r.mu.readsIssued) == 0 && !r.campaignOnTick)
		if heardFrom != 0 && heardFrom == st.Lead {
			r.heardLeader.Store(true)
		}
	} else {
		r.tickSkippable.Store(false)
		if st.RaftState == raft.StateLeader && (len(msgs) > 0 || len(props) > 0) {
			r.leaderActive.Store(true)
		}
	}
	if !rn.HasReady() {
		r.maybeQuiesceLeaderLocked(out)
		return nil, nil
	}
	rd := rn.Ready()
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Replacing the span's data may take long: it runs off the round,
		// and this Ready is finished by the round after it.
		return nil, r.startInstallLocked(rd)
	}
	return r.readyWorkLocked(out, rd, nil)
}

// readyWorkLocked turns rd into the round's work: snapOps (an installed
// snapshot's writes, if any), then the log and hard state writes, the
// leader's early sends and the applied commands.
func (r *Replica) readyWorkLocked(out *outbox, rd raft.Ready, snapOps []storage.Op) (*readyWork, error) {
	rn := r.mu.rn
	w := &readyWork{rd: rd, sync: rd.MustSync}
	if len(snapOps) > 0 {
		w.ops = append(w.ops, snapOps...)
		w.sync = true
	}
	ops, err := r.mu.log.appendOps(rd.Entries)
	if err != nil {
		return nil, err
	}
	w.ops = append(w.ops, ops...)
	var applying uint64
	if n := len(rd.CommittedEntries); n > 0 {
		applying = rd.CommittedEntries[n-1].GetIndex()
	}
	w.fetch = r.s.fetchKeys(rd.Entries, applying)
	if !raft.IsEmptyHardState(rd.HardState) {
		op, err := r.mu.log.hardStateOp(rd.HardState)
		if err != nil {
			return nil, err
		}
		w.ops = append(w.ops, op)
	}
	if rn.BasicStatus().RaftState == raft.StateLeader {
		r.sendLocked(out, rd.Messages)
		w.sentEarly = true
	}
	// Apply now, into the same batch: the data and applied index become
	// durable (or not) atomically with the entries, and are published and
	// answered in phase2, once written. (Snapshots for followers are sent
	// above, before this changes the applied index.)
	aops, ahead, done, err := r.applyLocked(rd.CommittedEntries)
	if err != nil {
		return nil, err
	}
	w.ops = append(w.ops, aops...)
	w.ahead = ahead
	// The commands are committed (durable on a quorum) and applying them
	// is deterministic, so their results are final: answer now, before
	// the round's write. Reads still wait for the published applied index
	// (phase2, after the write), so none can miss these writes.
	for _, d := range done {
		d.p.done <- proposalResult{res: d.res, err: d.err}
	}
	return w, nil
}

// phase2 runs after the round's write is durable: send, apply, serve
// reads, advance.
func (r *Replica) phase2(w *readyWork, out *outbox) error {
	r.mu.Lock()
	defer func() {
		more := r.mu.rn.HasReady()
		r.mu.Unlock()
		if more {
			r.s.enqueue(r.rangeID)
		}
	}()
	rd := w.rd
	rn := r.mu.rn
	if !w.sentEarly {
		r.sendLocked(out, rd.Messages)
	}
	if len(rd.CommittedEntries) > 0 || len(rd.Entries) > 0 {
		r.mu.idleTicks = 0
	}
	r.applied.Store(r.mu.applied.GetIndex())
	r.publishClosedLocked()
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		id := binary.BigEndian.Uint64(rs.RequestCtx)
		if b := r.mu.readsIssued[id]; b != nil {
			delete(r.mu.readsIssued, id)
			b.index = rs.Index
			r.extendLeaseLocked(b)
			r.mu.readsReady = append(r.mu.readsReady, b)
		}
	}
	if len(r.mu.splits) > 0 {
		if err := r.finishSplitsLocked(); err != nil {
			return err
		}
	}
	rn.Advance(rd)
	if r.mu.removed {
		r.s.goAsync(func() { r.s.destroyReplica(r, "removed from its range") })
		return nil
	}
	r.serveReadsLocked()
	st := rn.BasicStatus()
	r.noteLeadershipLocked(st)
	r.isLeader.Store(st.RaftState == raft.StateLeader)
	r.setLeaderNode(r.nodeOfReplica(st.Lead))
	if err := r.maybeTruncateLocked(); err != nil {
		return err
	}
	r.maybeQuiesceLeaderLocked(out)
	return nil
}

// issueReadLocked starts one ReadIndex round for reqs (possibly none: a
// lease renewal).
func (r *Replica) issueReadLocked(reqs []*readReq) {
	r.mu.nextReadID++
	b := &readBatch{id: r.mu.nextReadID, reqs: reqs, issuedAt: r.mu.ticks, started: time.Now(), term: r.mu.rn.BasicStatus().GetTerm()}
	r.mu.readsIssued[b.id] = b
	r.mu.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, b.id))
}

// extendLeaseLocked extends the leader lease after a ReadIndex round
// confirmed leadership: no other leader can be elected before started plus
// the election timeout, as followers that answered refuse votes (CheckQuorum)
// until then; the lease ends MaxOffset earlier for clock-rate error.
func (r *Replica) extendLeaseLocked(b *readBatch) {
	d := r.s.leaseDuration()
	if d <= 0 || b.term != r.mu.rn.BasicStatus().GetTerm() {
		return
	}
	if exp := b.started.Add(d); exp.After(r.mu.leaseExpiry) || r.mu.leaseTerm != b.term {
		r.mu.leaseExpiry, r.mu.leaseTerm = exp, b.term
	}
}

// leaseReadIndexLocked returns the index a lease read must wait for, or
// false if the lease does not hold (the caller then takes a ReadIndex round).
func (r *Replica) leaseReadIndexLocked(now time.Time) (uint64, bool) {
	st := r.mu.rn.BasicStatus()
	if !r.leaseHeldLocked(st, now) {
		return 0, false
	}
	// The leader must have committed an entry of its term, or its commit
	// index may trail writes acknowledged by its predecessor.
	if t, err := r.mu.log.Term(st.GetCommit()); err != nil || t != st.GetTerm() {
		return 0, false
	}
	r.mu.lastLeaseRead = now
	return st.GetCommit(), true
}

// LeaseValid reports whether the leader lease currently holds.
func (r *Replica) LeaseValid() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaseHeldLocked(r.mu.rn.BasicStatus(), time.Now())
}

// leaseHeldLocked reports whether a leader in status st holds its lease at
// now (and leases are not suspended).
func (r *Replica) leaseHeldLocked(st raft.BasicStatus, now time.Time) bool {
	return !r.s.leasesOff.Load() && st.RaftState == raft.StateLeader && st.GetTerm() == r.mu.leaseTerm && now.Before(r.mu.leaseExpiry)
}

func (r *Replica) serveReadsLocked() {
	applied := r.applied.Load()
	kept := r.mu.readsReady[:0]
	for _, b := range r.mu.readsReady {
		if b.index <= applied {
			for _, rr := range b.reqs {
				rr.done <- nil
			}
			continue
		}
		kept = append(kept, b)
	}
	r.mu.readsReady = kept
}

func (r *Replica) sendLocked(out *outbox, msgs []*raftpb.Message) {
	var replicating, beaten map[uint64]bool
	defer clear(r.mu.heartbeatResps)
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			r.sendSnapshotLocked(m)
			continue
		}
		// raft sends every follower an append without entries each time
		// the commit index moves; to a follower being replicated to it
		// carries nothing but that index, which the next append or
		// heartbeat (every tick) brings anyway. At one client these were
		// a third of a put's packets (the append, its acknowledgement,
		// the follower's apply write). Not sending one is a message lost,
		// which raft tolerates. The empty appends that are raft's
		// recovery go: a probe (StateProbe), and the append raft sends in
		// answer to a heartbeat response, so that a follower whose
		// appends were lost rejects it and is caught up. Followers apply
		// up to a tick later; reads are served by leaders.
		isReplicating := func(id uint64) bool {
			if replicating == nil {
				replicating = map[uint64]bool{}
				r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
					replicating[id] = pr.State == tracker.StateReplicate
				})
			}
			return replicating[id]
		}
		if m.GetType() == raftpb.MsgApp && len(m.GetEntries()) == 0 && !r.mu.heartbeatResps[m.GetTo()] && isReplicating(m.GetTo()) {
			continue
		}
		// Nor a heartbeat (without a read's context) to a follower being
		// replicated to that was sent an append with entries within the
		// last heartbeatQuietTicks ticks: the append reset its election
		// timer and carried the commit index, and its answer tells the
		// leader it is there (CheckQuorum). Under load every range's
		// leader would otherwise send each follower a heartbeat every tick
		// or two and get an answer, each a pass of the range on both
		// nodes: at 255 ranges, each taking a put every tick or two, a
		// third of the passes of a put. A follower so hears from its
		// leader at least every heartbeatQuietTicks ticks, well within its
		// election timeout, and learns the commit index of its last
		// entries at most that late (reads are served by leaders, or at a
		// closed timestamp). When the appends stop, the heartbeats are
		// back within heartbeatQuietTicks. Heartbeats that confirm
		// leadership for reads (ReadIndex, lease renewal) go.
		switch {
		case m.GetType() == raftpb.MsgApp && len(m.GetEntries()) > 0:
			if r.mu.appendedAt == nil {
				r.mu.appendedAt = map[uint64]uint64{}
			}
			r.mu.appendedAt[m.GetTo()] = r.mu.ticks
		case m.GetType() == raftpb.MsgHeartbeat && len(m.GetContext()) == 0:
			if at, ok := r.mu.appendedAt[m.GetTo()]; ok && r.mu.ticks-at < r.s.heartbeatQuietTicks() && isReplicating(m.GetTo()) {
				r.s.metrics.heartbeatsSkipped.Add(1)
				continue
			}
			// A pass that took two ticks (a deferred one, see tick) has
			// raft's heartbeats of both: one to each follower is enough.
			if beaten[m.GetTo()] {
				r.s.metrics.heartbeatsSkipped.Add(1)
				continue
			}
			if beaten == nil {
				beaten = map[uint64]bool{}
			}
			beaten[m.GetTo()] = true
		}
		if node := r.nodeOfReplica(m.GetTo()); node != 0 {
			if m.GetType() == raftpb.MsgHeartbeat {
				r.s.metrics.heartbeatsSent.Add(1)
			}
			out.add(node, r.rangeID, m, false)
		}
	}
}

// proposeLocked assigns each proposal its sequence number, tracks it until
// applied and proposes them all in one raft message.
func (r *Replica) proposeLocked(props []*proposal) {
	ents := make([]*raftpb.Entry, 0, len(props))
	var size uint64
	if r.mu.rn.BasicStatus().RaftState != raft.StateLeader {
		// Only a leader builds commands: one built elsewhere would reach
		// the leader's log without its closed timestamp (closedts.go).
		for _, p := range props {
			p.done <- proposalResult{err: &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.leaderNode.Load()}}
		}
		return
	}
	closed := r.commandClosedLocked(r.s.closedTarget()).Proto()
	for i, p := range props {
		if size >= r.s.cfg.MaxRangeRoundBytes {
			// The rest waits for the next round (a round's write stays
			// bounded however many large values arrive at once).
			r.requeueLocked(nil, props[i:])
			break
		}
		if p.callerGone() {
			// Its caller gave up while it waited in the inbox: it is not
			// proposed (the client retries it, or gave up on it).
			r.s.metrics.proposalsDropped.Add(1)
			p.done <- proposalResult{err: errCallerGone}
			continue
		}
		r.mu.nextSeq++
		p.seq = r.mu.nextSeq
		cmd := &raftmsgpb.Command{NodeId: r.s.d.NodeID, Incarnation: r.s.incarnation, Seq: p.seq, Timestamp: p.ts.Proto(), Ops: p.ops, Session: p.session, ClosedTimestamp: closed}
		b, err := proto.Marshal(cmd)
		if err != nil {
			p.done <- proposalResult{err: err}
			continue
		}
		p.data = b
		size += uint64(len(b))
		p.proposedAt = r.mu.ticks
		r.mu.pending[p.seq] = p
		ents = append(ents, &raftpb.Entry{Data: b})
	}
	if len(ents) == 0 {
		return
	}
	// One MsgProp for the round's proposals: the leader appends them
	// together and sends each follower one MsgApp for all of them (one
	// Propose each would mean one MsgApp, and one MsgAppResp back, per
	// proposal). A dropped batch is proposed again, one by one, by
	// onTickLocked.
	r.s.metrics.proposals.Add(uint64(len(ents)))
	r.s.metrics.proposalBatches.Add(1)
	_ = r.mu.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: proto.Uint64(r.mu.replicaID), Entries: ents})
}

// requeueLocked puts messages and proposals a round did not take back at
// the front of the inbox, for the next round.
func (r *Replica) requeueLocked(msgs []inMsg, props []*proposal) {
	r.in.Lock()
	if len(msgs) > 0 {
		r.in.msgs = append(slices.Clip(msgs), r.in.msgs...)
	}
	if len(props) > 0 {
		r.in.props = append(slices.Clip(props), r.in.props...)
	}
	r.in.Unlock()
	r.s.enqueue(r.rangeID)
}

// entriesBytes is the data size of ents.
func entriesBytes(ents []*raftpb.Entry) uint64 {
	var n uint64
	for _, e := range ents {
		n += uint64(len(e.GetData()))
	}
	return n
}

func (r *Replica) onTickLocked() {
	r.mu.idleTicks++
	var reproposed uint64
	leader := r.mu.rn.BasicStatus().RaftState == raft.StateLeader
	for seq, p := range r.mu.pending {
		if p.callerGone() && !leader {
			delete(r.mu.pending, seq)
			continue
		}
		// A leader keeps a command whose caller gave up until it applies:
		// it is in the log (or proposed again below) and may still
		// commit at its timestamp, which its side-channel closed
		// timestamps must stay below (closeSideLocked); forgetting it
		// let a follower serve a read at a timestamp above a write that
		// applied after. A replica that stops leading needs no lease
		// promises kept: a new lease comes after its log is applied.
		if !leader && r.mu.ticks-p.proposedAt >= uint64(r.s.cfg.ReproposeTicks) {
			// Only the leader that built a command proposes it again (a
			// copy forwarded from here would reach the new leader's log
			// below its closed timestamp). It may still commit: its
			// outcome is unknown, and the caller's retry applies once
			// through its session.
			delete(r.mu.pending, seq)
			p.done <- proposalResult{err: bus.Errorf(bus.CodeDeadlineExceeded, "kv: range %d: this replica stopped leading with the command in flight; its outcome is unknown", r.rangeID)}
			continue
		}
		// At most MaxRangeRoundBytes again per tick; the rest are due
		// at the next.
		if r.mu.ticks-p.proposedAt >= uint64(r.s.cfg.ReproposeTicks) && reproposed < r.s.cfg.MaxRangeRoundBytes {
			p.proposedAt = r.mu.ticks
			reproposed += uint64(len(p.data))
			_ = r.mu.rn.Propose(p.data)
		}
	}
	if len(r.mu.pending) > 0 {
		r.mu.idleTicks = 0
	}
	if d := r.s.leaseDuration(); leader && d > 0 && len(r.mu.readsIssued) == 0 {
		// Keep the lease of a range being read from: renew it when half
		// of it is left, riding on the next heartbeat.
		now := time.Now()
		if now.Sub(r.mu.lastLeaseRead) < d && r.mu.leaseExpiry.Sub(now) < d/2 {
			r.issueReadLocked(nil)
		}
	}
	for id, b := range r.mu.readsIssued {
		if !leader {
			delete(r.mu.readsIssued, id)
			err := &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.leaderNode.Load()}
			for _, rr := range b.reqs {
				rr.done <- err
			}
			continue
		}
		if r.mu.ticks-b.issuedAt >= uint64(r.s.cfg.ElectionTicks) {
			delete(r.mu.readsIssued, id)
			r.issueReadLocked(b.reqs)
		}
	}
}

// maybeQuiesceLeaderLocked quiesces an idle leader whose followers are all
// caught up, telling them with a quiesce heartbeat.
func (r *Replica) maybeQuiesceLeaderLocked(out *outbox) {
	if r.quiesced.Load() || r.mu.idleTicks < r.s.cfg.QuiesceAfterTicks {
		return
	}
	rn := r.mu.rn
	st := rn.BasicStatus()
	if st.RaftState != raft.StateLeader || len(r.mu.pending) > 0 || len(r.mu.readsIssued) > 0 || len(r.mu.readsReady) > 0 ||
		st.GetCommit() != r.mu.log.last || r.mu.applied.GetIndex() != st.GetCommit() || len(r.mu.snapSending) > 0 || rn.HasReady() {
		return
	}
	caughtUp := true
	rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id != r.mu.replicaID && (pr.Match != r.mu.log.last || !r.s.nodeLive(r.nodeOfReplica(id))) {
			caughtUp = false
		}
	})
	if !caughtUp {
		return
	}
	r.quiesced.Store(true)
	for _, rd := range r.desc.Load().GetReplicas() {
		if rd.GetReplicaId() == r.mu.replicaID {
			continue
		}
		m := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(r.mu.replicaID), To: proto.Uint64(rd.GetReplicaId()),
			Term: proto.Uint64(st.GetTerm()), Commit: proto.Uint64(st.GetCommit())}
		out.add(rd.GetNodeId(), r.rangeID, m, true)
	}
}

func (r *Replica) maybeQuiesceFollowerLocked(m *raftpb.Message) {
	st := r.mu.rn.BasicStatus()
	if st.RaftState == raft.StateFollower && st.Lead == m.GetFrom() && st.GetTerm() == m.GetTerm() &&
		r.mu.log.last >= m.GetCommit() && st.GetCommit() >= m.GetCommit() {
		r.quiesced.Store(true)
	}
}

func (r *Replica) maybeTruncateLocked() error {
	l := r.mu.log
	cfg := r.s.cfg
	if l.last-l.trunc.GetIndex() <= cfg.LogTruncateEntries {
		return nil
	}
	applied := r.mu.applied.GetIndex()
	if applied <= cfg.LogKeepEntries {
		return nil
	}
	target := applied - cfg.LogKeepEntries
	if r.mu.rn.BasicStatus().RaftState == raft.StateLeader {
		// Keep what followers on live nodes still need, unless they are
		// so far behind that a snapshot is cheaper. (Progress.RecentActive
		// is reset every election timeout, so it cannot tell.)
		r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id == r.mu.replicaID || !r.s.nodeLive(r.nodeOfReplica(id)) || pr.Match+10*cfg.LogTruncateEntries < applied {
				return
			}
			if pr.Match < target {
				target = pr.Match
			}
		})
	}
	ops, err := l.truncateOps(target)
	if err != nil || len(ops) == 0 {
		return err
	}
	ctx, cancel := r.s.storageCtx()
	defer cancel()
	// Truncation frees space: it may use the reserve of a full disk, and
	// one refused waits for the next (which deletes from the log's start).
	if err := r.s.d.Engine.WriteReserve(ctx, ops, false); storage.IsDiskFull(err) {
		r.log.Debug("log truncation refused for want of space", slog.Any("error", err))
	} else if err != nil {
		return fmt.Errorf("multiraft: truncate log of range %d: %w", r.rangeID, err)
	}
	return nil
}

// failAll fails every waiting proposal and read with err, but the
// proposals already proposed with proposedErr: those may still commit
// (another replica holds them in its log, and the range's next leader
// commits them), so they must not be answered as refused.
func (r *Replica) failAll(err, proposedErr error) {
	r.in.Lock()
	props, reads := r.in.props, r.in.reads
	r.in.props, r.in.reads = nil, nil
	r.in.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range props {
		p.done <- proposalResult{err: err}
	}
	for _, p := range r.mu.pending {
		p.done <- proposalResult{err: proposedErr}
	}
	clear(r.mu.pending)
	for _, rr := range reads {
		rr.done <- err
	}
	for _, b := range r.mu.readsIssued {
		for _, rr := range b.reqs {
			rr.done <- err
		}
	}
	clear(r.mu.readsIssued)
	for _, b := range r.mu.readsReady {
		for _, rr := range b.reqs {
			rr.done <- err
		}
	}
	r.mu.readsReady = nil
}

// Status returns the replica's status for /v1/ranges and Ranges.
func (r *Replica) Status() *kvpb.ReplicaStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.mu.rn.BasicStatus()
	first, _ := r.mu.log.FirstIndex()
	var followers []*kvpb.FollowerProgress
	if st.RaftState == raft.StateLeader {
		r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != r.mu.replicaID {
				followers = append(followers, &kvpb.FollowerProgress{ReplicaId: id, Match: pr.Match, Next: pr.Next,
					State: progressStateName(pr.State), RecentActive: pr.RecentActive})
			}
		})
		slices.SortFunc(followers, func(a, b *kvpb.FollowerProgress) int { return cmp.Compare(a.GetReplicaId(), b.GetReplicaId()) })
	}
	return &kvpb.ReplicaStatus{
		Descriptor_:     r.desc.Load(),
		ReplicaId:       r.mu.replicaID,
		RaftState:       raftStateName(st.RaftState),
		Term:            st.GetTerm(),
		LeaderReplicaId: st.Lead,
		LeaderNodeId:    r.nodeOfReplica(st.Lead),
		CommitIndex:     st.GetCommit(),
		AppliedIndex:    r.mu.applied.GetIndex(),
		FirstIndex:      first,
		LastIndex:       r.mu.log.last,
		LogBytes:        r.mu.log.bytes,
		Quiesced:        r.quiesced.Load(),
		LeaseValid:      r.leaseHeldLocked(st, time.Now()),
		Followers:       followers,
		Sessions:        uint64(len(r.mu.sessions.m)),
		SessionBytes:    uint64(r.mu.sessions.bytes),
	}
}

func progressStateName(s tracker.StateType) string {
	switch s {
	case tracker.StateProbe:
		return "probe"
	case tracker.StateReplicate:
		return "replicate"
	case tracker.StateSnapshot:
		return "snapshot"
	}
	return s.String()
}

func raftStateName(s raft.StateType) string {
	switch s {
	case raft.StateLeader:
		return "leader"
	case raft.StateFollower:
		return "follower"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	}
	return s.String()
}

// errCallerGone answers a proposal dropped because its caller gave up.
var errCallerGone = fmt.Errorf("multiraft: caller gone; not proposed: %w", context.Canceled)

// waitProposal hands p to the scheduler and waits for its result.
func (r *Replica) waitProposal(ctx context.Context, p *proposal) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.gone = ctx.Done()
	r.in.Lock()
	r.in.props = append(r.in.props, p)
	r.in.Unlock()
	r.s.enqueue(r.rangeID)
	select {
	case pr := <-p.done:
		return pr.res, pr.err
	case <-ctx.Done():
		p.abandoned.Store(true)
		return nil, ctx.Err()
	case <-r.s.stopc:
		return nil, ErrStopped
	}
}

// Propose replicates ops as one atomic command of session (nil: none, no
// protection against applying twice) and returns its result once applied
// locally. Only the leader proposes. A command its session refuses
// returns the refusal (a bus error); a caller whose ctx ends before the
// command is proposed leaves it unproposed.
func (r *Replica) Propose(ctx context.Context, ops []*raftmsgpb.Op, session *kvpb.Session) (*Result, error) {
	if !r.isLeader.Load() {
		return nil, &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.leaderNode.Load()}
	}
	p := &proposal{ops: ops, session: session, ts: r.s.d.Clock.Now(), done: make(chan proposalResult, 1)}
	return r.waitProposal(ctx, p)
}

// ReadBarrier returns once this replica's applied state reflects every
// write acknowledged before the call (ReadIndex; concurrent callers share
// one round). Only the leader serves it.
func (r *Replica) ReadBarrier(ctx context.Context) error {
	if !r.isLeader.Load() {
		return &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.leaderNode.Load()}
	}
	r.mu.Lock()
	idx, ok := r.leaseReadIndexLocked(time.Now())
	r.mu.Unlock()
	if ok {
		r.s.metrics.leaseReads.Add(1)
		return r.waitApplied(ctx, idx)
	}
	r.s.metrics.readIndexReads.Add(1)
	rr := &readReq{done: make(chan error, 1)}
	r.in.Lock()
	r.in.reads = append(r.in.reads, rr)
	r.in.Unlock()
	r.s.enqueue(r.rangeID)
	select {
	case err := <-rr.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.s.stopc:
		return ErrStopped
	}
}

// waitApplied waits until the applied index reaches idx.
func (r *Replica) waitApplied(ctx context.Context, idx uint64) error {
	if r.applied.Load() >= idx {
		return nil
	}
	rr := &readReq{done: make(chan error, 1)}
	r.mu.Lock()
	if r.applied.Load() >= idx {
		r.mu.Unlock()
		return nil
	}
	r.mu.readsReady = append(r.mu.readsReady, &readBatch{reqs: []*readReq{rr}, index: idx})
	r.mu.Unlock()
	select {
	case err := <-rr.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.s.stopc:
		return ErrStopped
	}
}

// Campaign makes the replica start an election (tests, leadership moves).
func (r *Replica) Campaign() {
	r.mu.Lock()
	_ = r.mu.rn.Campaign()
	r.mu.Unlock()
	r.s.enqueue(r.rangeID)
}

var errSnapshotMismatch = errors.New("multiraft: snapshot in Ready does not match the received data")

// raftLogger sends raft's logs to slog (info and below at debug level),
// formatting only what the handler keeps.
type raftLogger struct{ l *slog.Logger }

func (l raftLogger) logf(level slog.Level, f string, v ...any) {
	if l.l.Enabled(context.Background(), level) {
		l.l.Log(context.Background(), level, fmt.Sprintf(f, v...))
	}
}

func (l raftLogger) log(level slog.Level, v ...any) {
	if l.l.Enabled(context.Background(), level) {
		l.l.Log(context.Background(), level, fmt.Sprint(v...))
	}
}

func (l raftLogger) Debug(v ...any)              { l.log(slog.LevelDebug, v...) }
func (l raftLogger) Debugf(f string, v ...any)   { l.logf(slog.LevelDebug, f, v...) }
func (l raftLogger) Info(v ...any)               { l.log(slog.LevelDebug, v...) }
func (l raftLogger) Infof(f string, v ...any)    { l.logf(slog.LevelDebug, f, v...) }
func (l raftLogger) Warning(v ...any)            { l.log(slog.LevelWarn, v...) }
func (l raftLogger) Warningf(f string, v ...any) { l.logf(slog.LevelWarn, f, v...) }
func (l raftLogger) Error(v ...any)              { l.log(slog.LevelError, v...) }
func (l raftLogger) Errorf(f string, v ...any)   { l.logf(slog.LevelError, f, v...) }
func (l raftLogger) Fatal(v ...any)              { l.panic(fmt.Sprint(v...)) }
func (l raftLogger) Fatalf(f string, v ...any)   { l.panic(fmt.Sprintf(f, v...)) }
func (l raftLogger) Panic(v ...any)              { l.panic(fmt.Sprint(v...)) }
func (l raftLogger) Panicf(f string, v ...any)   { l.panic(fmt.Sprintf(f, v...)) }

// panic logs msg with the replica's attributes (node, range, replica),
// which the panic's message lacks, then panics with it.
func (l raftLogger) panic(msg string) {
	l.l.Error("raft panics", slog.String("error", msg))
	panic(msg)
}

// publishClosedLocked publishes the closed timestamp of the applied state
// the round made durable.
func (r *Replica) publishClosedLocked() {
	c, _ := hlc.FromProto(r.mu.applied.GetClosedTimestamp())
	r.cts.publish(r.mu.applied.GetIndex(), r.mu.applied.GetTerm(), c)
}

// setLeaderNode records the leader's node (0: none known) and wakes the
// waitLeader calls when a leader becomes known.
func (r *Replica) setLeaderNode(ln uint64) {
	if r.leaderNode.Swap(ln) != 0 || ln == 0 {
		return
	}
	r.leaderSeenMu.Lock()
	if r.leaderSeen != nil {
		close(r.leaderSeen)
		r.leaderSeen = nil
	}
	r.leaderSeenMu.Unlock()
}
