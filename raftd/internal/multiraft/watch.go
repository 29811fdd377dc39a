package multiraft

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// MethodWatch is the server stream (kvpb.WatchRequest →
// kvpb.WatchResponse) of the changes to a span of one range.
const MethodWatch = "Watch"

// Watches
//
// The round's writer hands every engine write that returned to the watch
// hub (publish), as it does to the value cache: the write's versions
// family puts are the changes (key, timestamp, record or tombstone), its
// applied states the ranges' new maximum timestamps. Every command of a
// range applies at a timestamp above the range's maximum before it, so
// once a write carrying a range's applied state is published, every
// change at or below that maximum has been published: it is the range's
// resolved timestamp, as far as this node has written.
//
// A watcher registers under the hub's lock, taking the range's resolved
// timestamp R then (published, or read from the engine's applied state
// when the hub has not seen the range yet: every write it reflects has
// returned). Changes at or below R are in the engine: a watch from a
// timestamp F replays the versions in (F, R] key by key, oldest first;
// later changes come live, filtered to above R, so none is sent twice or
// missed. Checkpoints: the sender takes the range's resolved timestamp
// under the lock, sends every change queued by then, then the
// checkpoint.
//
// Watches are served by the range's leader: a follower installing a
// snapshot changes its data outside the rounds (its watchers are cut off
// then, see cut), and the stream ends when this replica stops leading.
// A watcher too slow to take its changes (watchBuffer batches behind) is
// cut off too. Either way the client resumes from its last checkpoint.

// watchBuffer is how many published batches a watcher may have queued.
const watchBuffer = 1024

// watchReplayBatch bounds the events of one replayed response.
const watchReplayBatch = 256

type keyWatcher struct {
	rangeID    uint64
	start, end []byte
	// after filters the live changes: those at or below it were replayed
	// (or precede the watch).
	after hlc.Timestamp
	// queue holds the published batches not sent yet, at most
	// watchBuffer, and ready a token while it is not empty: an idle
	// watcher holds no buffer (a channel of watchBuffer batches cost
	// 24 KiB each).
	mu    sync.Mutex
	queue [][]*kvpb.WatchEvent
	ready chan struct{}
	lost  chan struct{} // closed when cut off; err tells why
	err   error
}

// push queues a published batch; false when watchBuffer are queued.
func (w *keyWatcher) push(evs []*kvpb.WatchEvent) bool {
	w.mu.Lock()
	if len(w.queue) >= watchBuffer {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, evs)
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued batches, oldest first, and empties the queue.
func (w *keyWatcher) take() [][]*kvpb.WatchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

// watchHub fans the rounds' changes out to the store's watchers.
type watchHub struct {
	count   atomic.Int64
	mu      sync.Mutex
	byRange map[uint64]map[*keyWatcher]struct{}
	// resolved is each watched range's published maximum timestamp (or
	// its closed timestamp, when later).
	resolved map[uint64]hlc.Timestamp
}

func (h *watchHub) cutLocked(w *keyWatcher, err error) {
	if m := h.byRange[w.rangeID]; m != nil {
		if _, ok := m[w]; !ok {
			return
		}
		delete(m, w)
		if len(m) == 0 {
			delete(h.byRange, w.rangeID)
			delete(h.resolved, w.rangeID)
		}
	}
	h.count.Add(-1)
	w.err = err
	close(w.lost)
}

// publish hands the hub an engine write that returned. ordered: ops
// hold each key's versions in timestamp order; otherwise (tombstones
// written ahead come first) the events are sorted by timestamp.
func (s *Store) publishWatches(ops []storage.Op, ordered bool) {
	h := &s.watches
	if h.count.Load() == 0 {
		return
	}
	var events []*kvpb.WatchEvent
	type applied struct {
		rangeID uint64
		max     hlc.Timestamp
	}
	var maxes []applied
	for _, op := range ops {
		switch {
		case op.CF == storage.Versions && op.Kind == storage.OpPut:
			key, ts, err := storage.DecodeVersionKey(op.Key)
			if err != nil {
				continue
			}
			m, v, deleted, err := storage.DecodeRecord(op.Value)
			if err != nil {
				continue
			}
			ev := &kvpb.WatchEvent{Key: key, Deleted: deleted, Timestamp: ts.Proto()}
			if !deleted {
				ev.Value = valueOf(m, v)
			}
			events = append(events, ev)
		case op.CF == storage.Raft && op.Kind == storage.OpPut:
			id, ok := storage.AppliedStateRange(op.Key)
			if !ok {
				continue
			}
			a := &raftmsgpb.AppliedState{}
			if proto.Unmarshal(op.Value, a) != nil {
				continue
			}
			ts, _ := hlc.FromProto(a.GetMaxTimestamp())
			closed, _ := hlc.FromProto(a.GetClosedTimestamp())
			maxes = append(maxes, applied{id, maxTS(ts, closed)})
		}
	}
	if !ordered {
		slices.SortStableFunc(events, func(a, b *kvpb.WatchEvent) int {
			return tsOfEvent(a).Compare(tsOfEvent(b))
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range maxes {
		if _, ok := h.byRange[m.rangeID]; ok && h.resolved[m.rangeID].Less(m.max) {
			h.resolved[m.rangeID] = m.max
		}
	}
	if len(events) == 0 {
		return
	}
	for _, ws := range h.byRange {
		for w := range ws {
			var mine []*kvpb.WatchEvent
			for _, ev := range events {
				ts, _ := hlc.FromProto(ev.GetTimestamp())
				if w.after.Less(ts) && bytes.Compare(ev.GetKey(), w.start) >= 0 && bytes.Compare(ev.GetKey(), w.end) < 0 {
					mine = append(mine, ev)
				}
			}
			if len(mine) == 0 {
				continue
			}
			if !w.push(mine) {
				h.cutLocked(w, bus.Errorf(bus.CodeUnavailable, "kv: watcher fell %d batches behind; resume from the last checkpoint", watchBuffer))
			}
		}
	}
}

// cutWatches ends the watches of a range (its data changed outside the
// rounds).
func (s *Store) cutWatches(rangeID uint64, why string) {
	h := &s.watches
	if h.count.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.byRange[rangeID] {
		h.cutLocked(w, bus.Errorf(bus.CodeUnavailable, "kv: watch of range %d ended: %s; resume from the last checkpoint", rangeID, why))
	}
}

// cutSplitWatches ends the watches of a range that split whose span
// reaches past its new end (left): the keys from there on are the right
// range's, whose resolved timestamp is its own. Their error is a
// RangeKeyMismatch carrying both sides, so that the watcher resumes each
// range on its own from its last checkpoint.
func (s *Store) cutSplitWatches(left, right *kvpb.RangeDescriptor) {
	h := &s.watches
	if h.count.Load() == 0 {
		return
	}
	err := errRangeKeyMismatch([]*kvpb.RangeDescriptor{left, right}, nil, "kv: watch of range %d ended: the range split at %q", left.GetRangeId(), right.GetStartKey())
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.byRange[left.GetRangeId()] {
		if bytes.Compare(w.end, left.GetEndKey()) > 0 {
			h.cutLocked(w, err)
		}
	}
}

// localDescriptors returns the descriptors of the local replicas
// overlapping [start, end) (for a RangeKeyMismatch's detail).
func (s *Store) localDescriptors(start, end []byte) []*kvpb.RangeDescriptor {
	var out []*kvpb.RangeDescriptor
	for _, r := range s.Replicas() {
		d := r.Descriptor()
		if (len(d.GetEndKey()) == 0 || bytes.Compare(start, d.GetEndKey()) < 0) && bytes.Compare(d.GetStartKey(), end) < 0 {
			out = append(out, d)
		}
	}
	return out
}

// registerWatch adds a watcher of [start, end) of r and returns the
// range's resolved timestamp at that point (see Watches above).
func (s *Store) registerWatch(ctx context.Context, r *Replica, start, end []byte) (*keyWatcher, hlc.Timestamp, error) {
	h := &s.watches
	h.mu.Lock()
	defer h.mu.Unlock()
	R, ok := h.resolved[r.rangeID]
	if !ok {
		b, found, err := s.d.Engine.Get(ctx, storage.Raft, storage.AppliedStateKey(r.rangeID))
		if err != nil {
			return nil, hlc.Timestamp{}, err
		}
		if found {
			a := &raftmsgpb.AppliedState{}
			if err := proto.Unmarshal(b, a); err != nil {
				return nil, hlc.Timestamp{}, fmt.Errorf("range %d applied state: %w", r.rangeID, err)
			}
			R, _ = hlc.FromProto(a.GetMaxTimestamp())
			closed, _ := hlc.FromProto(a.GetClosedTimestamp())
			R = maxTS(R, closed)
		}
	}
	// Every change at or below the closed timestamp is published (its
	// applied index was, after its write), and every change published is
	// at or below R.
	R = maxTS(R, r.ClosedTimestamp())
	w := &keyWatcher{rangeID: r.rangeID, start: start, end: end, after: R, ready: make(chan struct{}, 1), lost: make(chan struct{})}
	if h.byRange == nil {
		h.byRange, h.resolved = map[uint64]map[*keyWatcher]struct{}{}, map[uint64]hlc.Timestamp{}
	}
	if h.byRange[r.rangeID] == nil {
		h.byRange[r.rangeID] = map[*keyWatcher]struct{}{}
	}
	h.byRange[r.rangeID][w] = struct{}{}
	h.resolved[r.rangeID] = R
	h.count.Add(1)
	return w, R, nil
}

func (s *Store) unregisterWatch(w *keyWatcher) {
	s.watches.mu.Lock()
	defer s.watches.mu.Unlock()
	select {
	case <-w.lost:
	default:
		s.watches.cutLocked(w, nil)
	}
}

// resolvedOf is the range's published resolved timestamp.
func (s *Store) resolvedOf(rangeID uint64) hlc.Timestamp {
	s.watches.mu.Lock()
	defer s.watches.mu.Unlock()
	return s.watches.resolved[rangeID]
}

// Watch serves one watch stream (see kvpb.WatchRequest) until ctx ends,
// the store stops, send fails, or the watch is cut off or ends.
func (s *Store) Watch(ctx context.Context, req *kvpb.WatchRequest, send func(*kvpb.WatchResponse) error) error {
	start, end := req.GetStart(), req.GetEnd()
	if err := s.checkKey(req.GetHeader(), start); err != nil {
		return err
	}
	if len(end) == 0 || bytes.Compare(end, start) <= 0 {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: watch end %q is not after start %q", end, start)
	}
	var from hlc.Timestamp
	if f := req.GetFrom(); f != nil {
		var err error
		if from, err = hlc.FromProto(f); err != nil {
			return bus.Errorf(bus.CodeInvalidArgument, "kv: watch from: %v", err)
		}
		if hz := s.readHorizon(); from.Less(hz) {
			return errCompacted(from, hz)
		}
	}
	desc, err := s.lookup(ctx, start)
	if err != nil {
		return err
	}
	if len(desc.GetEndKey()) > 0 && bytes.Compare(end, desc.GetEndKey()) > 0 {
		// The watcher's ranges changed (a split): it watches each range of
		// its span on its own from its last checkpoint.
		return errRangeKeyMismatch(s.localDescriptors(start, end), nil, "kv: watch [%q, %q) spans ranges: range %d ends at %q", start, end, desc.GetRangeId(), desc.GetEndKey())
	}
	r := s.Replica(desc.GetRangeId())
	if r == nil || !r.IsLeader() {
		leader := uint64(0)
		if r != nil {
			leader = r.LeaderNode()
		}
		return bus.NotLeader(s.NodeAddr(leader))
	}
	r.wantClosed()
	w, R, err := s.registerWatch(ctx, r, bytes.Clone(start), bytes.Clone(end))
	if err != nil {
		return err
	}
	defer s.unregisterWatch(w)
	if req.GetFrom() != nil {
		if err := s.replayWatch(ctx, req, from, R, send); err != nil {
			return err
		}
	}
	if err := send(&kvpb.WatchResponse{Resolved: R.Proto(), RangeId: r.rangeID}); err != nil {
		return err
	}
	every := time.Duration(req.GetCheckpointMillis()) * time.Millisecond
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	sent := R
	deliver := func(evs []*kvpb.WatchEvent) error {
		if req.GetPrevValue() {
			for i, ev := range evs {
				evs[i] = proto.CloneOf(ev)
				if err := s.addPrev(ctx, evs[i]); err != nil {
					return err
				}
			}
		}
		return send(&kvpb.WatchResponse{Events: evs})
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopc:
			return bus.Errorf(bus.CodeUnavailable, "kv: node stopping")
		case <-w.lost:
			return w.err
		case <-w.ready:
			for _, evs := range w.take() {
				if err := deliver(evs); err != nil {
					return err
				}
			}
		case <-tick.C:
			if !r.IsLeader() {
				return bus.NotLeader(s.NodeAddr(r.LeaderNode()))
			}
			r.wantClosed()
			// The closed timestamp moves an idle range's resolved
			// timestamp on: every change at or below it was published.
			res := maxTS(s.resolvedOf(r.rangeID), r.ClosedTimestamp())
			// Everything published by then is queued: send it first.
			for _, evs := range w.take() {
				if err := deliver(evs); err != nil {
					return err
				}
			}
			if sent.Less(res) {
				if err := send(&kvpb.WatchResponse{Resolved: res.Proto(), RangeId: r.rangeID}); err != nil {
					return err
				}
				sent = res
			}
		}
	}
}

// addPrev sets ev's previous value: the key's newest version before it.
func (s *Store) addPrev(ctx context.Context, ev *kvpb.WatchEvent) error {
	ts, _ := hlc.FromProto(ev.GetTimestamp())
	if ts.IsZero() {
		return nil
	}
	kvs, err := s.d.Engine.Scan(ctx, storage.Versions, storage.VersionKey(ev.GetKey(), before(ts)), storage.VersionKeyEnd(ev.GetKey()), storage.ScanOptions{Limit: 1})
	if err != nil || len(kvs) == 0 {
		return err
	}
	m, v, deleted, err := storage.DecodeRecord(kvs[0].Value)
	if err != nil || deleted {
		return err
	}
	ev.PrevValue = valueOf(m, v)
	return nil
}

// before is the timestamp just before ts.
func before(ts hlc.Timestamp) hlc.Timestamp {
	if ts.Logical > 0 {
		return hlc.Timestamp{WallTime: ts.WallTime, Logical: ts.Logical - 1}
	}
	return hlc.Timestamp{WallTime: ts.WallTime - 1, Logical: 1<<31 - 1}
}

// replayWatch sends the versions of the watched span in (from, to], key
// by key, oldest first.
func (s *Store) replayWatch(ctx context.Context, req *kvpb.WatchRequest, from, to hlc.Timestamp, send func(*kvpb.WatchResponse) error) error {
	vstart, vend := storage.VersionSpan(req.GetStart(), req.GetEnd())
	var (
		cur  []byte
		keyE []*kvpb.WatchEvent // cur's events, newest first
		out  []*kvpb.WatchEvent
	)
	flushKey := func() error {
		for i := len(keyE) - 1; i >= 0; i-- {
			ev := keyE[i]
			if req.GetPrevValue() {
				if i+1 < len(keyE) {
					if !keyE[i+1].GetDeleted() {
						ev.PrevValue = keyE[i+1].GetValue()
					}
				} else if err := s.addPrev(ctx, ev); err != nil {
					return err
				}
			}
			out = append(out, ev)
		}
		keyE = nil
		if len(out) >= watchReplayBatch {
			if err := send(&kvpb.WatchResponse{Events: out}); err != nil {
				return err
			}
			out = nil
		}
		return nil
	}
	for pos := vstart; ; {
		kvs, err := s.d.Engine.Scan(ctx, storage.Versions, pos, vend, storage.ScanOptions{Limit: 1000, MaxBytes: 4 << 20})
		if err != nil {
			return err
		}
		if len(kvs) == 0 {
			break
		}
		for _, kv := range kvs {
			key, ts, err := storage.DecodeVersionKey(kv.Key)
			if err != nil {
				return err
			}
			if !bytes.Equal(key, cur) {
				if err := flushKey(); err != nil {
					return err
				}
				cur = key
			}
			if !from.Less(ts) || to.Less(ts) {
				continue
			}
			m, v, deleted, err := storage.DecodeRecord(kv.Value)
			if err != nil {
				return fmt.Errorf("version %x: %w", kv.Key, err)
			}
			ev := &kvpb.WatchEvent{Key: key, Deleted: deleted, Timestamp: ts.Proto()}
			if !deleted {
				ev.Value = valueOf(m, v)
			}
			keyE = append(keyE, ev)
		}
		pos = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
	}
	if err := flushKey(); err != nil {
		return err
	}
	if len(out) > 0 {
		return send(&kvpb.WatchResponse{Events: out})
	}
	return nil
}

func tsOfEvent(ev *kvpb.WatchEvent) hlc.Timestamp {
	ts, _ := hlc.FromProto(ev.GetTimestamp())
	return ts
}
