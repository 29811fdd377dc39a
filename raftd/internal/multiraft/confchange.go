package multiraft

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Replica change methods (wire.ProtoKV). CreateReplica is raftd's own:
// a range's leader sends it to the node of a replica being added.
const (
	MethodChangeReplicas = "ChangeReplicas"
	MethodCreateReplica  = "CreateReplica"
)

// confStateOf is the raft configuration a descriptor records, joint
// configurations included.
func confStateOf(d *kvpb.RangeDescriptor) *raftpb.ConfState {
	cs := &raftpb.ConfState{}
	joint := false
	for _, r := range d.GetReplicas() {
		switch r.GetType() {
		case kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING, kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING:
			joint = true
		}
	}
	for _, r := range d.GetReplicas() {
		id := r.GetReplicaId()
		switch r.GetType() {
		case kvpb.ReplicaType_REPLICA_TYPE_LEARNER:
			cs.Learners = append(cs.Learners, id)
		case kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING:
			cs.Voters = append(cs.Voters, id)
		case kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING:
			cs.VotersOutgoing = append(cs.VotersOutgoing, id)
		default:
			cs.Voters = append(cs.Voters, id)
			if joint {
				cs.VotersOutgoing = append(cs.VotersOutgoing, id)
			}
		}
	}
	if joint {
		cs.AutoLeave = proto.Bool(true)
	}
	return cs
}

// confChangeDesc is the descriptor after a conf change applies to cur:
// computed from the change alone (the proposed descriptor in its context
// only names the nodes of added replicas), so that every replica computes
// the same, and a change applied twice changes nothing the second time.
// changed reports whether the replicas changed (the generation moves
// then).
func confChangeDesc(cur *kvpb.RangeDescriptor, cc *raftpb.ConfChangeV2) (out *kvpb.RangeDescriptor, changed bool) {
	out = proto.Clone(cur).(*kvpb.RangeDescriptor)
	find := func(id uint64) int {
		return slices.IndexFunc(out.Replicas, func(r *kvpb.ReplicaDescriptor) bool { return r.GetReplicaId() == id })
	}
	before := proto.Clone(cur).(*kvpb.RangeDescriptor)
	if _, ok := cc.EnterJoint(); !ok && cc.LeaveJoint() {
		kept := out.Replicas[:0]
		for _, r := range out.Replicas {
			switch r.GetType() {
			case kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING:
				continue
			case kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING:
				r.Type = kvpb.ReplicaType_REPLICA_TYPE_VOTER
			}
			kept = append(kept, r)
		}
		out.Replicas = kept
	} else {
		_, joint := cc.EnterJoint()
		proposed := &kvpb.RangeDescriptor{}
		_ = proto.Unmarshal(cc.GetContext(), proposed)
		nodeOf := func(id uint64) uint64 {
			for _, r := range proposed.GetReplicas() {
				if r.GetReplicaId() == id {
					return r.GetNodeId()
				}
			}
			return 0
		}
		for _, ch := range cc.GetChanges() {
			id := ch.GetNodeId()
			i := find(id)
			switch ch.GetType() {
			case raftpb.ConfChangeAddLearnerNode:
				if i < 0 {
					out.Replicas = append(out.Replicas, &kvpb.ReplicaDescriptor{NodeId: nodeOf(id), ReplicaId: id, Type: kvpb.ReplicaType_REPLICA_TYPE_LEARNER})
				} else {
					out.Replicas[i].Type = kvpb.ReplicaType_REPLICA_TYPE_LEARNER
				}
			case raftpb.ConfChangeAddNode:
				typ := kvpb.ReplicaType_REPLICA_TYPE_VOTER
				if joint && (i < 0 || out.Replicas[i].GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER) {
					typ = kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING
				}
				if i < 0 {
					out.Replicas = append(out.Replicas, &kvpb.ReplicaDescriptor{NodeId: nodeOf(id), ReplicaId: id, Type: typ})
				} else if out.Replicas[i].GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER {
					out.Replicas[i].Type = typ
				}
			case raftpb.ConfChangeRemoveNode:
				if i < 0 {
					continue
				}
				if joint && out.Replicas[i].GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER {
					out.Replicas[i].Type = kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING
				} else {
					out.Replicas = slices.Delete(out.Replicas, i, i+1)
				}
			}
		}
	}
	for _, r := range out.Replicas {
		out.NextReplicaId = max(out.NextReplicaId, r.GetReplicaId()+1)
	}
	if proto.Equal(before, out) {
		return cur, false
	}
	out.Generation = cur.GetGeneration() + 1
	return out, true
}

// applyConfChangeLocked applies a conf change entry: to raft, and to the
// descriptor (written in the pass's batch). A replica that the change
// removes is destroyed once the round's write is durable.
func (r *Replica) applyConfChangeLocked(a *applier, cc *raftpb.ConfChangeV2, index uint64) error {
	r.mu.log.cs = r.mu.rn.ApplyConfChange(cc)
	nd, changed := confChangeDesc(r.mu.desc, cc)
	if changed {
		b, err := proto.Marshal(nd)
		if err != nil {
			return err
		}
		a.ops = append(a.ops, storage.Put(storage.Local, storage.ReplicaKey(r.rangeID), b))
		r.mu.desc = nd
		// Membership (not the span) changed: messages to added replicas
		// need their nodes now. (A split applied earlier in the round
		// publishes both once the round is written.)
		if len(r.mu.splits) == 0 {
			r.desc.Store(nd)
		}
		r.s.metrics.replicaChanges.Add(1)
		if replicaOf(nd, r.s.d.NodeID) == nil {
			r.mu.removed = true
		}
	}
	r.noteConfChangeLocked(r.mu.log.cs, index)
	return nil
}

// CreateReplica creates an empty replica of a range being added here
// (raftmsgpb.CreateReplicaRequest); the range's leader fills it with a
// snapshot.
func (s *Store) CreateReplica(ctx context.Context, req *raftmsgpb.CreateReplicaRequest) (*raftmsgpb.CreateReplicaResponse, error) {
	d := req.GetDescriptor_()
	me := replicaOf(d, s.d.NodeID)
	if d.GetRangeId() == 0 || me == nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: create replica: range %d names no replica on node %d", d.GetRangeId(), s.d.NodeID)
	}
	if err := s.checkTombstone(ctx, d.GetRangeId(), me.GetReplicaId()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if old := s.mu.replicas[d.GetRangeId()]; old != nil {
		s.mu.Unlock()
		if om := replicaOf(old.Descriptor(), s.d.NodeID); om != nil && om.GetReplicaId() == me.GetReplicaId() {
			return &raftmsgpb.CreateReplicaResponse{}, nil // created already
		}
		if replicaOfID(d, old.mu.replicaID) != nil || old.Descriptor().GetGeneration() >= d.GetGeneration() {
			return nil, bus.Errorf(bus.CodeFailedPrecondition, "kv: node %d holds another replica of range %d", s.d.NodeID, d.GetRangeId())
		}
		// A newer descriptor without the old replica: it was removed (and
		// replica GC has not destroyed it yet), or it is an empty replica
		// of an earlier attempt whose conf change never applied.
		s.destroyReplica(old, "replaced by a newer replica of its range")
		s.mu.Lock()
	}
	for _, o := range s.mu.sorted {
		od := o.Descriptor()
		if spansOverlap(od, d) {
			s.mu.Unlock()
			return nil, bus.Errorf(bus.CodeFailedPrecondition, "kv: range %d overlaps local range %d [%q, %q)", d.GetRangeId(), od.GetRangeId(), od.GetStartKey(), od.GetEndKey())
		}
	}
	s.mu.Unlock()
	b, err := proto.Marshal(d)
	if err != nil {
		return nil, err
	}
	if err := s.d.Engine.Write(ctx, []storage.Op{storage.Put(storage.Local, storage.ReplicaKey(d.GetRangeId()), b)}, true); err != nil {
		return nil, fmt.Errorf("kv: create replica of range %d: %w", d.GetRangeId(), err)
	}
	r, err := newReplica(s, d, false, 0)
	if err != nil {
		return nil, err
	}
	r.noVotesUntil = time.Time{}
	s.addReplicas([]*Replica{r})
	s.noteReplicasAdded([]*Replica{r})
	s.log.Info("empty replica created for a snapshot", slog.Uint64("range", d.GetRangeId()), slog.Uint64("replica", me.GetReplicaId()))
	return &raftmsgpb.CreateReplicaResponse{}, nil
}

func spansOverlap(a, b *kvpb.RangeDescriptor) bool {
	before := func(end, start []byte) bool { return len(end) != 0 && string(end) <= string(start) }
	return !before(a.GetEndKey(), b.GetStartKey()) && !before(b.GetEndKey(), a.GetStartKey())
}

// checkTombstone refuses a replica of rangeID with replica id id when
// this node removed one of the range with that id or above.
func (s *Store) checkTombstone(ctx context.Context, rangeID, id uint64) error {
	v, ok, err := s.d.Engine.Get(ctx, storage.Local, storage.TombstoneKey(rangeID))
	if err != nil || !ok {
		return err
	}
	t := &raftmsgpb.Tombstone{}
	if err := proto.Unmarshal(v, t); err != nil {
		return fmt.Errorf("kv: tombstone of range %d: %w", rangeID, err)
	}
	if id < t.GetNextReplicaId() {
		return bus.Errorf(bus.CodeFailedPrecondition, "kv: replica %d of range %d was removed from node %d", id, rangeID, s.d.NodeID)
	}
	return nil
}

// ChangeReplicas changes a range's replicas (kvpb.ChangeReplicasRequest),
// at its leader: an added replica is created empty on its node, added as
// a learner (which makes raft send it a snapshot), and once caught up
// promoted to voter, together with the removal in one joint
// configuration for a replacement. Each step updates the descriptor
// where it applies; the meta range records the result.
func (s *Store) ChangeReplicas(ctx context.Context, req *kvpb.ChangeReplicasRequest) (*kvpb.ChangeReplicasResponse, error) {
	resp, err := s.changeReplicas(ctx, req)
	// A leadership lost half way is NotLeader (retried by clients), not
	// an internal error.
	return resp, s.wireErr(err)
}

func (s *Store) changeReplicas(ctx context.Context, req *kvpb.ChangeReplicasRequest) (*kvpb.ChangeReplicasResponse, error) {
	if len(req.GetAdd()) > 1 || len(req.GetRemove()) > 1 || len(req.GetAdd())+len(req.GetRemove()) == 0 {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: change replicas: give one node to add, one to remove, or one of each (have %d and %d)", len(req.GetAdd()), len(req.GetRemove()))
	}
	r := s.Replica(req.GetRangeId())
	if r == nil || !r.IsLeader() {
		var desc *kvpb.RangeDescriptor
		if r != nil {
			desc = r.Descriptor()
		} else if descs, err := s.allDescriptors(ctx); err == nil {
			for _, d := range descs {
				if d.GetRangeId() == req.GetRangeId() {
					desc = d
				}
			}
		}
		if desc == nil {
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: range %d is not known on node %d", req.GetRangeId(), s.d.NodeID)
		}
		leader := uint64(0)
		if r != nil {
			leader = r.LeaderNode()
		}
		if req.GetHeader().GetForwarded() {
			return nil, bus.NotLeader(s.NodeAddr(leader)) // forward follows the hint
		}
		if leader == 0 || leader == s.d.NodeID {
			leader = s.forwardNode(desc)
		}
		resp := &kvpb.ChangeReplicasResponse{}
		fr := proto.Clone(req).(*kvpb.ChangeReplicasRequest)
		fr.Header = forwardedHeader(req.GetHeader())
		return resp, s.forward(ctx, target{desc: desc, node: leader}, MethodChangeReplicas, fr, resp)
	}
	cur := r.Descriptor()
	for _, rd := range cur.GetReplicas() {
		if t := rd.GetType(); t == kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING || t == kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING {
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: range %d is in a joint configuration; retry once it leaves it", cur.GetRangeId())
		}
	}
	voters := 0
	for _, rd := range cur.GetReplicas() {
		if rd.GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			voters++
		}
	}
	var add, remove *kvpb.ReplicaDescriptor
	resume := false
	if len(req.GetAdd()) == 1 {
		n := req.GetAdd()[0]
		if ex := replicaOf(cur, n); ex != nil && ex.GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER && !req.GetLearners() {
			// A change that stopped after adding the learner (its leader
			// failed): go on from there.
			add, resume = ex, true
		} else if ex != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range %d already has a replica on node %d", cur.GetRangeId(), n)
		}
		if n == 0 || s.NodeAddr(n) == "" {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: node %d is not a known node of the cluster", n)
		}
		if !resume {
			add = &kvpb.ReplicaDescriptor{NodeId: n, ReplicaId: max(cur.GetNextReplicaId(), 1), Type: kvpb.ReplicaType_REPLICA_TYPE_LEARNER}
		}
		if !req.GetLearners() {
			voters++
		}
	}
	if len(req.GetRemove()) == 1 {
		n := req.GetRemove()[0]
		if remove = replicaOf(cur, n); remove == nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range %d has no replica on node %d", cur.GetRangeId(), n)
		}
		if remove.GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			voters--
		}
	}
	if voters < 1 {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: range %d would have no voter left", cur.GetRangeId())
	}
	if remove != nil && remove.GetNodeId() == s.d.NodeID {
		// The leader leaves: hand the leadership to another voter first,
		// which then makes the change.
		var to uint64
		for _, rd := range cur.GetReplicas() {
			if rd.GetNodeId() != s.d.NodeID && rd.GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER && s.nodeLive(rd.GetNodeId()) {
				to = rd.GetNodeId()
				break
			}
		}
		if to == 0 {
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: range %d: no live voter to take the leadership from node %d", cur.GetRangeId(), s.d.NodeID)
		}
		if _, err := s.TransferLeader(ctx, &kvpb.TransferLeaderRequest{RangeId: cur.GetRangeId(), NodeId: to}); err != nil {
			return nil, err
		}
		fr := proto.Clone(req).(*kvpb.ChangeReplicasRequest)
		fr.Header = forwardedHeader(req.GetHeader())
		resp := &kvpb.ChangeReplicasResponse{}
		return resp, s.forward(ctx, target{desc: cur, node: to}, MethodChangeReplicas, fr, resp)
	}
	if add != nil && !resume {
		learner := proto.Clone(cur).(*kvpb.RangeDescriptor)
		learner.Replicas = append(learner.Replicas, add)
		learner.NextReplicaId = add.GetReplicaId() + 1
		learner.Generation++
		if err := s.forwardCreate(ctx, add.GetNodeId(), learner); err != nil {
			return nil, fmt.Errorf("kv: create the replica of range %d on node %d: %w", cur.GetRangeId(), add.GetNodeId(), err)
		}
		cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(add.GetReplicaId())}}}
		if _, err := r.proposeConfChange(ctx, cc, learner, func(d *kvpb.RangeDescriptor) bool {
			rd := replicaOfID(d, add.GetReplicaId())
			return rd != nil
		}); err != nil {
			return nil, err
		}
		if err := r.waitCaughtUp(ctx, add.GetReplicaId()); err != nil {
			// Roll back: the learner leaves, so the descriptor never
			// keeps a replica that cannot work.
			back := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(add.GetReplicaId())}}}
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, rerr := r.proposeConfChange(rctx, back, nil, func(d *kvpb.RangeDescriptor) bool { return replicaOfID(d, add.GetReplicaId()) == nil })
			cancel()
			s.recordMeta(ctx, r)
			return nil, fmt.Errorf("kv: range %d: the new replica on node %d did not catch up (removed again: %v): %w", cur.GetRangeId(), add.GetNodeId(), rerr, err)
		}
	} else if resume {
		if err := r.waitCaughtUp(ctx, add.GetReplicaId()); err != nil {
			return nil, err
		}
	}
	var changes []*raftpb.ConfChangeSingle
	if add != nil && !req.GetLearners() {
		changes = append(changes, &raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(add.GetReplicaId())})
	}
	if remove != nil {
		changes = append(changes, &raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(remove.GetReplicaId())})
	}
	if len(changes) > 0 {
		cc := &raftpb.ConfChangeV2{Changes: changes}
		if len(changes) > 1 {
			// A replacement: both in one joint configuration, which
			// raft leaves by itself once it applied.
			cc.Transition = raftpb.ConfChangeTransitionJointImplicit.Enum()
		}
		done := func(d *kvpb.RangeDescriptor) bool {
			if remove != nil && replicaOfID(d, remove.GetReplicaId()) != nil {
				return false
			}
			if add != nil && !req.GetLearners() {
				rd := replicaOfID(d, add.GetReplicaId())
				return rd != nil && rd.GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER
			}
			return true
		}
		if _, err := r.proposeConfChange(ctx, cc, nil, done); err != nil {
			return nil, err
		}
	}
	s.recordMeta(ctx, r)
	return &kvpb.ChangeReplicasResponse{Descriptor_: r.Descriptor()}, nil
}

// recordMeta records r's descriptor in the meta range (a failure is
// logged: the next change or reconciliation records it).
func (s *Store) recordMeta(ctx context.Context, r *Replica) {
	d := r.Descriptor()
	if _, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, Descriptors: []*kvpb.RangeDescriptor{d}}); err != nil {
		s.log.Warn("meta update after a replica change failed", slog.Uint64("range", r.rangeID), slog.Any("error", err))
		return
	}
	r.metaGen.Store(d.GetGeneration())
}

func replicaOfID(d *kvpb.RangeDescriptor, id uint64) *kvpb.ReplicaDescriptor {
	for _, r := range d.GetReplicas() {
		if r.GetReplicaId() == id {
			return r
		}
	}
	return nil
}

// forwardCreate has node create an empty replica of d.
func (s *Store) forwardCreate(ctx context.Context, node uint64, d *kvpb.RangeDescriptor) error {
	req := &raftmsgpb.CreateReplicaRequest{Descriptor_: d}
	if node == s.d.NodeID {
		_, err := s.CreateReplica(ctx, req)
		return err
	}
	if s.d.Forwarder == nil {
		return bus.Errorf(bus.CodeUnavailable, "kv: no forwarder")
	}
	return s.d.Forwarder.Forward(ctx, node, MethodCreateReplica, req, &raftmsgpb.CreateReplicaResponse{})
}

// proposeConfChange proposes cc (its context: proposed, whose added
// replicas' nodes it names) until done holds for the applied descriptor;
// it fails when the range's leadership moves or ctx ends.
func (r *Replica) proposeConfChange(ctx context.Context, cc *raftpb.ConfChangeV2, proposed *kvpb.RangeDescriptor, done func(*kvpb.RangeDescriptor) bool) (*kvpb.RangeDescriptor, error) {
	if proposed != nil {
		b, err := proto.Marshal(proposed)
		if err != nil {
			return nil, err
		}
		cc.Context = b
	}
	for {
		if !r.IsLeader() {
			return nil, &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.LeaderNode()}
		}
		r.mu.Lock()
		r.unquiesceLocked()
		err := r.mu.rn.ProposeConfChange(cc)
		r.mu.Unlock()
		if err != nil && err != raft.ErrProposalDropped {
			return nil, fmt.Errorf("multiraft: range %d: propose conf change: %w", r.rangeID, err)
		}
		r.s.enqueue(r.rangeID)
		// Raft drops a conf change while another is pending: wait, and
		// propose again (a change applied twice changes nothing).
		deadline := time.Now().Add(time.Duration(r.s.cfg.ElectionTicks) * r.s.cfg.TickInterval)
		for time.Now().Before(deadline) {
			if d := r.Descriptor(); done(d) {
				return d, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-r.s.stopc:
				return nil, ErrStopped
			case <-time.After(r.s.cfg.TickInterval / 4):
			}
		}
	}
}

// waitCaughtUp waits until the leader's view of replica id says it holds
// the log up to the commit index at the call (after its snapshot), for at
// most 30 election timeouts after the end of the last snapshot sent to it.
func (r *Replica) waitCaughtUp(ctx context.Context, id uint64) error {
	r.mu.Lock()
	target := r.mu.rn.BasicStatus().GetCommit()
	r.mu.Unlock()
	limit := time.After(30 * time.Duration(r.s.cfg.ElectionTicks) * r.s.cfg.TickInterval)
	for {
		if !r.IsLeader() {
			return &NotLeaderError{RangeID: r.rangeID, LeaderNode: r.LeaderNode()}
		}
		var match uint64
		var state tracker.StateType
		r.mu.Lock()
		r.mu.rn.WithProgress(func(pid uint64, _ raft.ProgressType, pr tracker.Progress) {
			if pid == id {
				match, state = pr.Match, pr.State
			}
		})
		sending := r.mu.snapSending[id]
		r.mu.Unlock()
		if sending {
			// A snapshot is streaming to it (a large range takes long;
			// each chunk has a deadline of its own): the wait starts
			// over.
			limit = time.After(30 * time.Duration(r.s.cfg.ElectionTicks) * r.s.cfg.TickInterval)
		}
		if match >= target && state == tracker.StateReplicate {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.s.stopc:
			return ErrStopped
		case <-limit:
			return fmt.Errorf("multiraft: range %d: replica %d at %d (%s), commit %d", r.rangeID, id, match, progressStateName(state), target)
		case <-time.After(r.s.cfg.TickInterval / 2):
		}
	}
}
