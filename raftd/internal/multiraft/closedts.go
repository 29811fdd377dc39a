package multiraft

import (
	"sync"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Closed timestamps (see "Closed timestamps" in doc.go for the argument).
//
// A replica's closed timestamp is the highest of two promises that no
// command it has not applied yet will apply at or below it:
//   - the log's: every command carries its proposer's closed timestamp
//     and the apply raises the applied state's (AppliedState.
//     closed_timestamp) to it, applying the command and every later one
//     above it (applyCommandLocked): deterministic, so every replica and
//     every later leader keeps it;
//   - the leader's side channel, for ranges without writes: every
//     ClosedTimestampInterval a leader holding its lease sends each other
//     replica (ClosedTimestamp, in a MessageBatch of its own per node) a
//     timestamp T with the index I it had applied and its term t; a
//     replica uses T once its last applied entry is at or after I and of
//     term t.

// maxSidePending bounds the side-channel promises a replica keeps until
// its applied log reaches them.
const maxSidePending = 4

// sidePromise is one side-channel closed timestamp.
type sidePromise struct {
	ts          hlc.Timestamp
	index, term uint64
}

// closedState is a replica's published closed timestamp: the applied
// state's and the side channel's, as of the applied entry the round
// published last (the engine holds at least that entry's state).
type closedState struct {
	mu      sync.Mutex
	index   uint64 // published applied index
	term    uint64 // its entry's term
	log     hlc.Timestamp
	side    hlc.Timestamp
	pending []sidePromise
}

// publish records the applied state a round made durable.
func (c *closedState) publish(index, term uint64, log hlc.Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index, c.term = index, term
	if c.log.Less(log) {
		c.log = log
	}
	c.promoteLocked()
}

// note records a side-channel promise.
func (c *closedState) note(p sidePromise) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !maxTS(c.log, c.side).Less(p.ts) {
		return // nothing new
	}
	c.pending = append(c.pending, p)
	if len(c.pending) > maxSidePending {
		c.pending = c.pending[len(c.pending)-maxSidePending:]
	}
	c.promoteLocked()
}

// promoteLocked takes the pending promises the applied log reached, and
// drops those it never will (its applied term moved past theirs).
func (c *closedState) promoteLocked() {
	keep := c.pending[:0]
	for _, p := range c.pending {
		switch {
		case c.term == p.term && c.index >= p.index:
			if c.side.Less(p.ts) {
				c.side = p.ts
			}
		case c.term > p.term:
		default:
			keep = append(keep, p)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
}

// get returns the closed timestamp.
func (c *closedState) get() hlc.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maxTS(c.log, c.side)
}

// ClosedTimestamp returns the replica's closed timestamp: every write at
// or below it is in its published state, and none will be applied there.
func (r *Replica) ClosedTimestamp() hlc.Timestamp { return r.cts.get() }

// wantClosed notes that a reader or watcher wants the range's closed
// timestamp to move on: its leader keeps its lease for the side channel.
func (r *Replica) wantClosed() { r.closedWant.Store(time.Now().UnixNano()) }

// closedTarget is the timestamp a leader closes now: ClosedTimestampLag
// behind its clock.
func (s *Store) closedTarget() hlc.Timestamp {
	now := s.d.Clock.Now()
	return hlc.Timestamp{WallTime: now.WallTime - int64(s.cfg.ClosedTimestampLag)}
}

// commandClosedLocked is the closed timestamp a command built now
// carries: the target, and never below what this replica promised on the
// side channel or took from it (a new leader writes above every closed
// timestamp it has heard of, whatever its clock says).
func (r *Replica) commandClosedLocked(target hlc.Timestamp) hlc.Timestamp {
	return maxTS(maxTS(target, r.mu.closedPub), r.cts.get())
}

// closeSideLocked is one side-channel promise of a leader holding its
// lease: the target, kept below every proposal it built that has not
// applied here (a re-proposal may still land after the index it names),
// never below its last promise. ok is false when it may not promise (not
// the leader, or no lease: a lease is asked for when wanted recently).
func (r *Replica) closeSideLocked(target hlc.Timestamp, now time.Time) (p sidePromise, ok bool) {
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return sidePromise{}, false
	}
	if !r.leaseHeldLocked(st, now) {
		switch {
		case !r.wantedWithin(now, 4*r.s.cfg.ClosedTimestampLag):
		case r.s.leaseDuration() == 0:
			// No leases (DisableLeaseReads, or timers too short for
			// one): the log carries the closed timestamp, in an empty
			// command, one at a time.
			if c := r.mu.closingProp; c == nil || len(c.done) > 0 {
				p := &proposal{ts: r.s.d.Clock.Now(), done: make(chan proposalResult, 1)}
				r.mu.closingProp = p
				r.in.Lock()
				r.in.props = append(r.in.props, p)
				r.in.Unlock()
				r.s.enqueue(r.rangeID)
			}
		case len(r.mu.readsIssued) == 0:
			r.issueReadLocked(nil)
			r.s.enqueue(r.rangeID)
		}
		return sidePromise{}, false
	}
	t := target
	for _, pr := range r.mu.pending {
		if !t.Less(pr.ts) {
			t = before(pr.ts)
		}
	}
	if t.Less(r.mu.closedPub) {
		t = r.mu.closedPub
	}
	r.mu.closedPub = t
	return sidePromise{ts: t, index: r.mu.applied.GetIndex(), term: st.GetTerm()}, true
}

// closedLoop sends the side-channel closed timestamps every
// ClosedTimestampInterval.
func (s *Store) closedLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ClosedTimestampInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
			s.publishClosed()
		}
	}
}

// publishClosed makes one side-channel promise per range this node leads
// with a lease, notes it locally and sends it to the range's other
// replicas, one batch per node.
func (s *Store) publishClosed() {
	target := s.closedTarget()
	now := time.Now()
	byNode := map[uint64][]*raftmsgpb.ClosedTimestamp{}
	wanted := map[uint64][]uint64{}
	for _, r := range s.Replicas() {
		if r.destroyed.Load() {
			continue
		}
		if !r.isLeader.Load() {
			// A reader here wants it: tell the leader.
			if l := r.leaderNode.Load(); l != 0 && l != s.d.NodeID && r.wantedWithin(now, 4*s.cfg.ClosedTimestampLag) {
				wanted[l] = append(wanted[l], r.rangeID)
			}
			continue
		}
		r.mu.Lock()
		p, ok := r.closeSideLocked(target, now)
		desc := r.mu.desc
		r.mu.Unlock()
		if !ok {
			continue
		}
		r.cts.note(p)
		ct := &raftmsgpb.ClosedTimestamp{RangeId: r.rangeID, Closed: p.ts.Proto(), Index: p.index, Term: p.term}
		for _, rd := range desc.GetReplicas() {
			if n := rd.GetNodeId(); n != s.d.NodeID {
				byNode[n] = append(byNode[n], ct)
			}
		}
	}
	for node, cts := range byNode {
		s.send(&raftmsgpb.MessageBatch{FromNode: s.d.NodeID, ToNode: node, FromAddr: s.d.Addr, Closed: cts, ClosedWanted: wanted[node]})
		delete(wanted, node)
	}
	for node, ids := range wanted {
		s.send(&raftmsgpb.MessageBatch{FromNode: s.d.NodeID, ToNode: node, FromAddr: s.d.Addr, ClosedWanted: ids})
	}
}

// wantedWithin reports whether a reader or watcher wanted the closed
// timestamp within d of now.
func (r *Replica) wantedWithin(now time.Time, d time.Duration) bool {
	return now.Sub(time.Unix(0, r.closedWant.Load())) < d
}

// noteClosed takes the side-channel promises of an inbound batch, and
// the wants of its sender's readers.
func (s *Store) noteClosed(cts []*raftmsgpb.ClosedTimestamp, wanted []uint64) {
	for _, id := range wanted {
		if r := s.Replica(id); r != nil {
			r.wantClosed()
		}
	}
	for _, c := range cts {
		r := s.Replica(c.GetRangeId())
		if r == nil {
			continue
		}
		ts, err := hlc.FromProto(c.GetClosed())
		if err != nil {
			continue
		}
		r.cts.note(sidePromise{ts: ts, index: c.GetIndex(), term: c.GetTerm()})
	}
}

// maxTS is the later of a and b.
func maxTS(a, b hlc.Timestamp) hlc.Timestamp {
	if a.Less(b) {
		return b
	}
	return a
}
