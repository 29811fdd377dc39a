package multiraft

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// MethodWatchRanges is the server stream (kvpb.WatchRangesRequest →
// kvpb.RangeEvent) of this node's range events.
const MethodWatchRanges = "WatchRanges" // = kvclient.MethodWatchRanges

// rangeEventBuffer is how many events a watcher may have queued; a watcher
// further behind is cut off (its stream ends with Unavailable) rather than
// slowing the rounds down.
const rangeEventBuffer = 256

// rangeWatcher is one open WatchRanges stream.
type rangeWatcher struct {
	ch chan *kvpb.RangeEvent
	// lost is closed when the watcher fell behind and was cut off.
	lost chan struct{}
}

// rangeEvents fans the store's range events out to its watchers. The
// rounds publish without blocking; the zero value is ready.
type rangeEvents struct {
	mu       sync.Mutex
	watchers map[*rangeWatcher]struct{}
}

// active reports whether anyone watches (so rounds build no events for
// nobody).
func (e *rangeEvents) active() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.watchers) > 0
}

func (e *rangeEvents) publish(ev *kvpb.RangeEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for w := range e.watchers {
		select {
		case w.ch <- ev:
		default:
			close(w.lost)
			delete(e.watchers, w)
		}
	}
}

func (e *rangeEvents) add() *rangeWatcher {
	w := &rangeWatcher{ch: make(chan *kvpb.RangeEvent, rangeEventBuffer), lost: make(chan struct{})}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.watchers == nil {
		e.watchers = map[*rangeWatcher]struct{}{}
	}
	e.watchers[w] = struct{}{}
	return w
}

func (e *rangeEvents) remove(w *rangeWatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.watchers, w)
}

// ErrWatchBehind ends a WatchRanges stream whose reader fell more than
// rangeEventBuffer events behind; the reader should reopen it.
var ErrWatchBehind = errors.New("multiraft: range event watcher fell behind")

// WatchRanges sends this node's range events (see kvpb.RangeEventType) as
// they happen until ctx ends, the store stops (nil) or send fails. It
// starts with a leader event for each range this node leads now (term as
// of then, no previous leader): leaderships won while nobody watched —
// a raftd restarted before its watcher reconnected — are not lost; a
// reader that keys events by range and term sees a repeat as the same
// occurrence. A reader that falls behind gets ErrWatchBehind.
func (s *Store) WatchRanges(ctx context.Context, send func(*kvpb.RangeEvent) error) error {
	w := s.events.add()
	defer s.events.remove(w)
	for _, r := range s.Replicas() {
		if ev := r.leaderEvent(); ev != nil {
			if err := send(ev); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopc:
			return nil
		case <-w.lost:
			return ErrWatchBehind
		case ev := <-w.ch:
			if err := send(ev); err != nil {
				return err
			}
		}
	}
}

// noteLeadershipLocked reports this replica's winning its range's
// leadership from another node (or none); phase2 calls it with each new
// status. The leader seen last is kept across the elections in between
// (candidates know no leader), so the event names the one before.
func (r *Replica) noteLeadershipLocked(st raft.BasicStatus) {
	lead := r.nodeOfReplica(st.Lead)
	if lead == 0 || lead == r.lastLeader.Load() {
		return
	}
	prev := r.lastLeader.Swap(lead)
	if st.RaftState != raft.StateLeader || !r.s.events.active() {
		return
	}
	r.s.events.publish(&kvpb.RangeEvent{
		Type: kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER, RangeId: r.rangeID, NodeId: r.s.d.NodeID,
		Term: st.GetTerm(), LeaderNodeId: r.s.d.NodeID, PreviousLeaderNodeId: prev,
		Descriptor_: proto.Clone(r.desc.Load()).(*kvpb.RangeDescriptor), UnixNano: time.Now().UnixNano(),
	})
}

// leaderEvent is a leader event of the replica's current leadership, nil
// when it does not lead.
func (r *Replica) leaderEvent() *kvpb.RangeEvent {
	if !r.IsLeader() {
		return nil
	}
	r.mu.Lock()
	st := r.mu.rn.BasicStatus()
	r.mu.Unlock()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	return &kvpb.RangeEvent{
		Type: kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER, RangeId: r.rangeID, NodeId: r.s.d.NodeID,
		Term: st.GetTerm(), LeaderNodeId: r.s.d.NodeID,
		Descriptor_: proto.Clone(r.desc.Load()).(*kvpb.RangeDescriptor), UnixNano: time.Now().UnixNano(),
	}
}

// noteConfChangeLocked reports a conf change applied at index, when this
// replica leads (so one node reports it).
func (r *Replica) noteConfChangeLocked(cs *raftpb.ConfState, index uint64) {
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || !r.s.events.active() {
		return
	}
	r.s.events.publish(&kvpb.RangeEvent{
		Type: kvpb.RangeEventType_RANGE_EVENT_TYPE_CONF_CHANGED, RangeId: r.rangeID, NodeId: r.s.d.NodeID,
		Term: st.GetTerm(), LeaderNodeId: r.s.d.NodeID, Descriptor_: proto.Clone(r.desc.Load()).(*kvpb.RangeDescriptor),
		Voters: cs.GetVoters(), Learners: cs.GetLearners(), Index: index, UnixNano: time.Now().UnixNano(),
	})
}

// noteReplicasAdded reports replicas newly created on this node.
func (s *Store) noteReplicasAdded(rs []*Replica) {
	if !s.events.active() {
		return
	}
	now := time.Now().UnixNano()
	for _, r := range rs {
		s.events.publish(&kvpb.RangeEvent{
			Type: kvpb.RangeEventType_RANGE_EVENT_TYPE_REPLICA_ADDED, RangeId: r.rangeID, NodeId: s.d.NodeID,
			Descriptor_: proto.Clone(r.desc.Load()).(*kvpb.RangeDescriptor), UnixNano: now,
		})
	}
}
