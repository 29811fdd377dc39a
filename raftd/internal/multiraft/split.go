package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Range administration methods (wire.ProtoKV). UpdateMeta is raftd's own:
// nodes send it to the meta range's leader.
const (
	MethodAdminSplit     = "AdminSplit"
	MethodTransferLeader = "TransferLeader"
	MethodUpdateMeta     = "UpdateMeta"
)

// maxMismatchRetries bounds how often a request refused with
// RangeKeyMismatch by a local range is routed again on this node before
// the error goes to the caller.
const maxMismatchRetries = 3

// spanContains reports whether key lies in d's span.
func spanContains(d *kvpb.RangeDescriptor, key []byte) bool {
	return bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
}

// spanWithin reports whether [start, end) (nil end: unbounded) lies in d.
func spanWithin(d *kvpb.RangeDescriptor, start, end []byte) bool {
	if bytes.Compare(start, d.GetStartKey()) < 0 {
		return false
	}
	if len(d.GetEndKey()) == 0 {
		return true
	}
	return len(end) > 0 && bytes.Compare(end, d.GetEndKey()) <= 0
}

// errRangeKeyMismatch refuses a request that reached a range not holding
// its keys (any more); descs are the current descriptors known for them.
func errRangeKeyMismatch(descs []*kvpb.RangeDescriptor, leaders map[uint64]string, format string, args ...any) error {
	detail, err := proto.Marshal(&kvpb.DescriptorsResponse{Descriptors: descs, Leaders: leaders})
	if err != nil {
		detail = nil
	}
	return bus.WithDetail(bus.CodeFailedPrecondition, kvpb.ReasonRangeKeyMismatch, detail, format, args...)
}

// isMismatch reports whether err is a RangeKeyMismatch refusal.
func isMismatch(err error) bool {
	return bus.CodeOf(err) == bus.CodeFailedPrecondition && bus.ReasonOf(err) == kvpb.ReasonRangeKeyMismatch
}

// mismatchErr is the RangeKeyMismatch refusal of a request for key named
// for a range this node now knows otherwise, with the descriptors of the
// local replicas of key's range and of the named one.
func (s *Store) mismatchErr(key []byte, h *kvpb.Header, cur *kvpb.RangeDescriptor) error {
	descs := []*kvpb.RangeDescriptor{cur}
	leaders := map[uint64]string{}
	if named := s.Replica(h.GetRangeId()); named != nil && named.rangeID != cur.GetRangeId() {
		descs = append(descs, named.Descriptor())
	}
	for _, d := range descs {
		if r := s.Replica(d.GetRangeId()); r != nil {
			if a := s.NodeAddr(r.LeaderNode()); a != "" {
				leaders[d.GetRangeId()] = a
			}
		}
	}
	return errRangeKeyMismatch(descs, leaders, "kv: key %q is in range %d generation %d, not range %d generation %d",
		key, cur.GetRangeId(), cur.GetGeneration(), h.GetRangeId(), h.GetGeneration())
}

// checkHeaderRange refuses a request whose header names a range other
// than cur (the range holding its key here), or an older generation of
// it, unless this node's view is the older one.
func (s *Store) checkHeaderRange(key []byte, h *kvpb.Header, cur *kvpb.RangeDescriptor) error {
	if h.GetRangeId() == 0 || h.GetForwarded() {
		return nil
	}
	if cur.GetGeneration() > h.GetGeneration() || (cur.GetRangeId() != h.GetRangeId() && cur.GetGeneration() >= h.GetGeneration()) {
		return s.mismatchErr(key, h, cur)
	}
	return nil
}

// checkCommandLocked refuses, with RangeKeyMismatch, a data command whose
// keys are not all in the range's span as of this point of its log (a
// split applied after it was routed here). Deterministic: every replica
// refuses the same commands.
func (r *Replica) checkCommandLocked(cmd *raftmsgpb.Command) error {
	d := r.mu.desc
	for _, op := range cmd.GetOps() {
		var ok bool
		var key []byte
		switch {
		case op.GetPut() != nil:
			key = op.GetPut().GetKey()
			ok = spanContains(d, key)
		case op.GetDelete() != nil:
			key = op.GetDelete().GetKey()
			ok = spanContains(d, key)
		case op.GetCas() != nil:
			key = op.GetCas().GetKey()
			ok = spanContains(d, key)
		case op.GetDeleteRange() != nil:
			dr := op.GetDeleteRange()
			key = dr.GetStart()
			end := dr.GetEnd()
			if len(end) == 0 {
				end = nil
			}
			ok = spanWithin(d, dr.GetStart(), end)
		default:
			ok = true
		}
		if !ok {
			return errRangeKeyMismatch([]*kvpb.RangeDescriptor{d}, nil, "kv: range %d [%q, %q) generation %d no longer holds key %q",
				d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), d.GetGeneration(), key)
		}
	}
	return nil
}

// adminOp returns the command's administrative op, if it is one.
func adminOp(cmd *raftmsgpb.Command) *raftmsgpb.Op {
	if len(cmd.GetOps()) != 1 {
		return nil
	}
	op := cmd.GetOps()[0]
	if op.GetSplit() != nil || op.GetMetaUpdate() != nil || op.GetAllocRangeId() != nil {
		return op
	}
	return nil
}

// applyAdminLocked applies an administrative command. refusal is the
// answer of one that changed nothing.
func (r *Replica) applyAdminLocked(a *applier, op *raftmsgpb.Op, ts hlc.Timestamp) (*Result, error, error) {
	res := &Result{Timestamp: ts, Succeeded: true}
	switch {
	case op.GetSplit() != nil:
		refusal, err := r.applySplitLocked(a, op.GetSplit())
		return res, refusal, err
	case op.GetMetaUpdate() != nil:
		if r.rangeID != MetaRangeID {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: meta update on range %d", r.rangeID), nil
		}
		return res, nil, r.applyMetaUpdateLocked(a, op.GetMetaUpdate(), ts)
	case op.GetAllocRangeId() != nil:
		if r.rangeID != MetaRangeID {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range id allocation on range %d", r.rangeID), nil
		}
		id, err := r.allocRangeIDLocked(a, ts)
		res.Count = id
		return res, nil, err
	}
	return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: unknown admin op"), nil
}

// validSplit checks a split trigger against the range's descriptor cur.
func validSplit(cur *kvpb.RangeDescriptor, t *raftmsgpb.SplitTrigger) error {
	l, rt := t.GetLeft(), t.GetRight()
	switch {
	case l.GetRangeId() != cur.GetRangeId() || l.GetGeneration() != cur.GetGeneration()+1 || !bytes.Equal(l.GetStartKey(), cur.GetStartKey()):
		return errRangeKeyMismatch([]*kvpb.RangeDescriptor{cur}, nil, "kv: split of range %d generation %d, but it is at generation %d",
			cur.GetRangeId(), l.GetGeneration()-1, cur.GetGeneration())
	case !bytes.Equal(l.GetEndKey(), rt.GetStartKey()) || !spanContains(cur, rt.GetStartKey()) || bytes.Equal(rt.GetStartKey(), cur.GetStartKey()):
		return bus.Errorf(bus.CodeInvalidArgument, "kv: split key %q is not strictly inside range %d [%q, %q)",
			rt.GetStartKey(), cur.GetRangeId(), cur.GetStartKey(), cur.GetEndKey())
	case !bytes.Equal(rt.GetEndKey(), cur.GetEndKey()) || rt.GetGeneration() != l.GetGeneration() || rt.GetRangeId() == 0 || rt.GetRangeId() == cur.GetRangeId():
		return bus.Errorf(bus.CodeInvalidArgument, "kv: malformed split of range %d", cur.GetRangeId())
	}
	return nil
}

// applySplitLocked applies a split trigger: the range takes the left
// descriptor, and the right range's initial state goes into the same
// batch (raft state as a bootstrapped range's, the highest write
// timestamp, every client session record, its descriptor). The round
// creates the right replica once the batch is written (phase2).
func (r *Replica) applySplitLocked(a *applier, t *raftmsgpb.SplitTrigger) (refusal, err error) {
	if err := validSplit(r.mu.desc, t); err != nil {
		return err, nil
	}
	left, right := t.GetLeft(), t.GetRight()
	if replicaOf(right, r.s.d.NodeID) == nil {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: split's right range has no replica on node %d", r.s.d.NodeID), nil
	}
	if old := r.s.Replica(right.GetRangeId()); old != nil {
		return nil, fmt.Errorf("multiraft: split of range %d: range %d exists here already", r.rangeID, right.GetRangeId())
	}
	ops, err := bootstrapOps(right)
	if err != nil {
		return nil, err
	}
	// The right side's applied state: as bootstrapped, with the left's
	// highest write timestamp and last sweep, so that apply timestamps
	// never go back on either side.
	ab, err := proto.Marshal(&raftmsgpb.AppliedState{Index: initialIndex, Term: initialTerm,
		MaxTimestamp: r.mu.applied.GetMaxTimestamp(), SessionsSweptAt: r.mu.applied.GetSessionsSweptAt(),
		ClosedTimestamp: r.mu.applied.GetClosedTimestamp()})
	if err != nil {
		return nil, err
	}
	for i, op := range ops {
		if bytes.Equal(op.Key, storage.AppliedStateKey(right.GetRangeId())) {
			ops[i] = storage.Put(storage.Raft, op.Key, ab)
		}
	}
	// Every session record goes to both sides: a session's next write may
	// go to either. A DeleteRange's count stays with one side only
	// (splitCounts).
	for id, cs := range r.mu.sessions.m {
		rightAnswers, changed, grew, err := cs.splitCounts(right.GetStartKey())
		if err != nil {
			return nil, err
		}
		if changed {
			r.mu.sessions.bytes += grew
			a.touchSession(id)
		}
		rc := *cs
		rc.answers = rightAnswers
		ops = append(ops, storage.Put(storage.Raft, storage.SessionKey(right.GetRangeId(), id[:]), rc.appendRecord(nil)))
	}
	lb, err := proto.Marshal(left)
	if err != nil {
		return nil, err
	}
	ops = append(ops, storage.Put(storage.Local, storage.ReplicaKey(r.rangeID), lb))
	a.ops = append(a.ops, ops...)
	r.mu.desc = proto.Clone(left).(*kvpb.RangeDescriptor)
	r.mu.splits = append(r.mu.splits, pendingSplit{left: r.mu.desc, right: proto.Clone(right).(*kvpb.RangeDescriptor),
		leader: r.mu.rn.BasicStatus().RaftState == raft.StateLeader})
	r.s.metrics.splits.Add(1)
	return nil, nil
}

// pendingSplit is a split applied in a round, completed once the round's
// write is durable (finishSplitsLocked).
type pendingSplit struct {
	left, right *kvpb.RangeDescriptor
	// leader: this replica led the range when the split applied; the
	// right replica here campaigns at once.
	leader bool
}

// finishSplitsLocked publishes the left descriptors of splits applied in
// a written round and creates their right replicas, both under the
// store's routing lock, so that no key is ever routed to neither.
func (r *Replica) finishSplitsLocked() error {
	splits := r.mu.splits
	r.mu.splits = nil
	for _, sp := range splits {
		nr, err := newReplica(r.s, sp.right, true, 0)
		if err != nil {
			return fmt.Errorf("multiraft: create range %d split from %d: %w", sp.right.GetRangeId(), r.rangeID, err)
		}
		// A new range: no lease of it was ever granted, so its replicas
		// may vote at once; the one on the left's leader's node campaigns.
		nr.campaignOnTick = sp.leader
		r.s.mu.Lock()
		// The descriptor as of the round's last applied entry (a conf
		// change after the split in the same round included).
		r.desc.Store(r.mu.desc)
		r.s.mu.replicas[nr.rangeID] = nr
		r.s.mu.sorted = append(r.s.mu.sorted, nr)
		r.s.sortLocked()
		r.s.mu.Unlock()
		r.s.enqueue(nr.rangeID)
		r.s.noteReplicasAdded([]*Replica{nr})
		r.s.cutSplitWatches(sp.left, sp.right)
		r.log.Info("range split", slog.Uint64("right", nr.rangeID), slog.String("key", fmt.Sprintf("%q", sp.right.GetStartKey())),
			slog.Uint64("generation", sp.left.GetGeneration()))
	}
	return nil
}

// applyMetaUpdateLocked records descriptors in the meta range, each
// unless the record at its key is newer.
func (r *Replica) applyMetaUpdateLocked(a *applier, u *raftmsgpb.MetaUpdate, ts hlc.Timestamp) error {
	for _, d := range u.GetDescriptors() {
		key := storage.MetaKey(d.GetEndKey())
		v, _, found, err := a.get(key)
		if err != nil {
			return err
		}
		if found {
			old := &kvpb.RangeDescriptor{}
			if err := proto.Unmarshal(v, old); err == nil {
				if old.GetGeneration() > d.GetGeneration() || (old.GetRangeId() == d.GetRangeId() && old.GetGeneration() == d.GetGeneration()) {
					continue
				}
			}
		}
		b, err := proto.Marshal(d)
		if err != nil {
			return err
		}
		if err := a.put(key, b, ts); err != nil {
			return err
		}
	}
	return nil
}

// allocRangeIDLocked allocates the next range id: one past the meta
// range's counter, or past every range id in the meta range when the
// counter was never written.
func (r *Replica) allocRangeIDLocked(a *applier, ts hlc.Timestamp) (uint64, error) {
	v, _, found, err := a.get(storage.RangeIDCounterKey)
	if err != nil {
		return 0, err
	}
	var last uint64
	if found && len(v) == 8 {
		last = binary.BigEndian.Uint64(v)
	} else {
		start, end := storage.MetaSpan()
		ctx, cancel := r.s.storageCtx()
		kvs, err := r.s.d.Engine.Scan(ctx, storage.Data, start, end, storage.ScanOptions{})
		cancel()
		if err != nil {
			return 0, err
		}
		vals := map[string][]byte{}
		for _, kv := range kvs {
			if _, val, err := storage.DecodeValue(kv.Value); err == nil {
				vals[string(kv.Key)] = val
			}
		}
		// The pass's own meta writes count too (every replica sees them,
		// wherever its apply passes begin).
		for k, ov := range a.overlay {
			if !bytes.HasPrefix([]byte(k), storage.MetaPrefix) {
				continue
			}
			if ov.deleted {
				delete(vals, k)
			} else {
				vals[k] = ov.value
			}
		}
		for _, val := range vals {
			d := &kvpb.RangeDescriptor{}
			if proto.Unmarshal(val, d) == nil && d.GetRangeId() > last {
				last = d.GetRangeId()
			}
		}
	}
	if err := a.put(storage.RangeIDCounterKey, binary.BigEndian.AppendUint64(nil, last+1), ts); err != nil {
		return 0, err
	}
	return last + 1, nil
}

// metaCommand proposes an administrative op on the meta range, here or
// at its leader.
func (s *Store) metaCommand(ctx context.Context, req *kvpb.UpdateMetaRequest) (*kvpb.UpdateMetaResponse, error) {
	var op *raftmsgpb.Op
	if req.GetAllocRangeId() {
		op = &raftmsgpb.Op{Op: &raftmsgpb.Op_AllocRangeId{AllocRangeId: &raftmsgpb.AllocRangeID{}}}
	} else {
		if len(req.GetDescriptors()) == 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: meta update without descriptors")
		}
		op = &raftmsgpb.Op{Op: &raftmsgpb.Op_MetaUpdate{MetaUpdate: &raftmsgpb.MetaUpdate{Descriptors: req.GetDescriptors()}}}
	}
	resp := &kvpb.UpdateMetaResponse{}
	h := req.GetHeader()
	if h == nil {
		h = &kvpb.Header{}
	}
	t, err := s.route(ctx, storage.MetaPrefix, h, true)
	if err != nil {
		return nil, err
	}
	if t.r == nil {
		fr := proto.Clone(req).(*kvpb.UpdateMetaRequest)
		fr.Header = forwardedHeader(h)
		return resp, s.forward(ctx, t, MethodUpdateMeta, fr, resp)
	}
	res, err := t.r.Propose(ctx, []*raftmsgpb.Op{op}, nil)
	if err != nil {
		return nil, s.wireErr(err)
	}
	if req.GetAllocRangeId() {
		resp.RangeId = res.Count
	}
	return resp, nil
}

// UpdateMeta serves raftd's own meta updates (kvpb.UpdateMetaRequest).
func (s *Store) UpdateMeta(ctx context.Context, req *kvpb.UpdateMetaRequest) (*kvpb.UpdateMetaResponse, error) {
	for _, d := range req.GetDescriptors() {
		if d.GetRangeId() == 0 || len(d.GetReplicas()) == 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: meta update with an incomplete descriptor")
		}
	}
	return s.metaCommand(ctx, req)
}

// AdminSplit splits the range holding req.key at it (see
// kvpb.AdminSplitRequest), at the range's leader.
func (s *Store) AdminSplit(ctx context.Context, req *kvpb.AdminSplitRequest) (*kvpb.AdminSplitResponse, error) {
	key := req.GetKey()
	h := req.GetHeader()
	if err := s.checkKey(h, key); err != nil {
		return nil, err
	}
	if key[0] == 0x00 || bytes.HasPrefix(key, []byte{0xff, 0xff}) {
		// The meta range does not split; a left range ending at 0xffff
		// would share the last range's meta key.
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: cannot split at %q (system keys and keys from 0xffff do not split)", key)
	}
	t, err := s.route(ctx, key, h, true)
	if err != nil {
		return nil, err
	}
	if t.r == nil {
		resp := &kvpb.AdminSplitResponse{}
		fr := proto.Clone(req).(*kvpb.AdminSplitRequest)
		fr.Header = forwardedHeader(h)
		return resp, s.forward(ctx, t, MethodAdminSplit, fr, resp)
	}
	cur := t.r.Descriptor()
	if bytes.Equal(cur.GetStartKey(), key) {
		return s.splitDone(ctx, key)
	}
	alloc, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, AllocRangeId: true})
	if err != nil {
		return nil, fmt.Errorf("kv: allocate a range id: %w", err)
	}
	var left, right *kvpb.RangeDescriptor
	for attempt := 0; ; attempt++ {
		left = proto.Clone(cur).(*kvpb.RangeDescriptor)
		left.EndKey = bytes.Clone(key)
		left.Generation++
		right = proto.Clone(cur).(*kvpb.RangeDescriptor)
		right.RangeId = alloc.GetRangeId()
		right.StartKey = bytes.Clone(key)
		right.Generation = left.Generation
		trigger := &raftmsgpb.SplitTrigger{Left: left, Right: right}
		if err := validSplit(cur, trigger); err != nil {
			return nil, err
		}
		_, err := t.r.Propose(ctx, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Split{Split: trigger}}}, nil)
		if err == nil {
			break
		}
		if !isMismatch(err) || attempt == maxMismatchRetries {
			return nil, s.wireErr(err)
		}
		// A replica change (or another split) applied first: build the
		// split again on the range as it is now.
		if err := t.r.waitDescPast(ctx, cur.GetGeneration()); err != nil {
			return nil, err
		}
		if cur = t.r.Descriptor(); bytes.Equal(cur.GetEndKey(), key) {
			// Another split at key applied first.
			return s.splitDone(ctx, key)
		}
		if !spanContains(cur, key) || bytes.Equal(cur.GetStartKey(), key) {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range %d changed under the split: %q is no longer strictly inside it", cur.GetRangeId(), key)
		}
	}
	// The split is applied (the proposal is answered at apply); the meta
	// range learns both sides in one command. Should this fail, the
	// leaders' meta reconciliation records them later.
	if _, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, Descriptors: []*kvpb.RangeDescriptor{left, right}}); err != nil {
		s.log.Warn("split applied; meta update failed (reconciliation retries it)", slog.Uint64("range", cur.GetRangeId()), slog.Any("error", err))
	} else {
		t.r.metaGen.Store(left.GetGeneration())
	}
	// Answer once this node routes to the right range.
	for s.Replica(right.GetRangeId()) == nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stopc:
			return nil, ErrStopped
		case <-time.After(time.Millisecond):
		}
	}
	if nr := s.Replica(right.GetRangeId()); nr != nil {
		nr.metaGen.Store(right.GetGeneration())
	}
	return &kvpb.AdminSplitResponse{Left: left, Right: right}, nil
}

// splitDone answers a split at key, the start of range right already:
// the retry of a split whose first answer was lost finds it applied. A
// boundary made otherwise (an initial split point, a split at that key by
// another caller) looks the same, so splitting at any existing boundary
// between user ranges succeeds and changes nothing, answering the
// ranges on either side as they are now. The first user range's start
// borders the meta range, which never splits: a split there is refused.
// A range that starts at key with the one before it not known yet (here
// or in meta) answers Unavailable: the caller retries.
func (s *Store) splitDone(ctx context.Context, key []byte) (*kvpb.AdminSplitResponse, error) {
	var left, right *kvpb.RangeDescriptor
	find := func(descs []*kvpb.RangeDescriptor) {
		for _, d := range descs {
			if bytes.Equal(d.GetEndKey(), key) {
				left = d
			}
			if bytes.Equal(d.GetStartKey(), key) {
				right = d
			}
		}
	}
	var local []*kvpb.RangeDescriptor
	for _, r := range s.Replicas() {
		local = append(local, r.Descriptor())
	}
	if find(local); left == nil || right == nil {
		descs, err := s.allDescriptors(ctx)
		if err != nil {
			return nil, fmt.Errorf("kv: find the ranges around %q: %w", key, err)
		}
		find(descs)
	}
	if left == nil && right != nil {
		// A range starts at key, so one ends there, which neither this
		// node (it no longer holds it) nor meta (its update after the
		// split was lost; reconciliation records it) knows yet.
		return nil, bus.Errorf(bus.CodeUnavailable, "kv: range %d starts at %q; the range before it is not known here yet, retry", right.GetRangeId(), key)
	}
	if left == nil || right == nil || left.GetRangeId() == MetaRangeID {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: %q is not a boundary between user ranges", key)
	}
	return &kvpb.AdminSplitResponse{Left: left, Right: right}, nil
}

// TransferLeader moves a range's leadership to its replica on a node.
func (s *Store) TransferLeader(ctx context.Context, req *kvpb.TransferLeaderRequest) (*kvpb.TransferLeaderResponse, error) {
	r := s.Replica(req.GetRangeId())
	var desc *kvpb.RangeDescriptor
	if r != nil {
		desc = r.Descriptor()
	} else {
		descs, err := s.allDescriptors(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			if d.GetRangeId() == req.GetRangeId() {
				desc = d
			}
		}
		if desc == nil {
			// Meta here may trail a split that just made it: retry.
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: range %d is not known on node %d", req.GetRangeId(), s.d.NodeID)
		}
	}
	to := replicaOf(desc, req.GetNodeId())
	if to == nil || to.GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range %d has no voter on node %d", req.GetRangeId(), req.GetNodeId())
	}
	if r == nil || !r.IsLeader() {
		h := req.GetHeader()
		leader := uint64(0)
		if r != nil {
			leader = r.LeaderNode()
		}
		if h.GetForwarded() {
			return nil, bus.NotLeader(s.NodeAddr(leader)) // forward follows the hint
		}
		if leader == 0 || leader == s.d.NodeID {
			leader = s.forwardNode(desc)
		}
		resp := &kvpb.TransferLeaderResponse{}
		fr := proto.Clone(req).(*kvpb.TransferLeaderRequest)
		fr.Header = forwardedHeader(h)
		return resp, s.forward(ctx, target{desc: desc, node: leader}, MethodTransferLeader, fr, resp)
	}
	if req.GetNodeId() == s.d.NodeID {
		return &kvpb.TransferLeaderResponse{}, nil
	}
	r.transferLeader(to.GetReplicaId())
	// Wait until the target leads (or the caller gives up). Raft gives a
	// transfer up after an election timeout (the target was behind, say):
	// ask again then, while this replica still leads.
	again := time.Now().Add(time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval)
	for {
		if r.LeaderNode() == req.GetNodeId() {
			return &kvpb.TransferLeaderResponse{}, nil
		}
		if time.Now().After(again) && r.IsLeader() {
			r.transferLeader(to.GetReplicaId())
			again = time.Now().Add(time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kv: range %d: leadership not transferred to node %d: %w", req.GetRangeId(), req.GetNodeId(), ctx.Err())
		case <-s.stopc:
			return nil, ErrStopped
		case <-time.After(s.cfg.TickInterval):
		}
	}
}

// transferLeader asks raft to hand the leadership to replica id.
func (r *Replica) transferLeader(id uint64) {
	r.mu.Lock()
	r.unquiesceLocked()
	r.mu.rn.TransferLeader(id)
	r.mu.Unlock()
	r.s.enqueue(r.rangeID)
}
