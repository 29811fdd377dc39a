package multiraft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// destroyReplica removes a replica this node no longer holds: from the
// routing table, then its raft state, descriptor and data, leaving a
// tombstone so that no replica of the range with its id (or a lower one)
// is created here again. A replica re-added later has a higher id.
func (s *Store) destroyReplica(r *Replica, why string) {
	s.destroy(r, why, true)
}

// destroy is destroyReplica; without tombstone, the replica's id may be
// created here again (for an empty replica whose id no applied
// configuration ever held: the retry of its add reuses it).
func (s *Store) destroy(r *Replica, why string, tombstone bool) {
	s.mu.Lock()
	if s.mu.replicas[r.rangeID] != r {
		s.mu.Unlock()
		return
	}
	delete(s.mu.replicas, r.rangeID)
	for i, o := range s.mu.sorted {
		if o == r {
			s.mu.sorted = append(s.mu.sorted[:i:i], s.mu.sorted[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	r.destroyed.Store(true)
	// A proposal it made may be in the logs of the range's other replicas
	// (this one was removed, or found gone from meta, after appending it),
	// and commit there: its outcome is unknown. The caller's retry
	// applies once through its session.
	r.failAll(&NotLeaderError{RangeID: r.rangeID}, bus.Errorf(bus.CodeDeadlineExceeded, "kv: range %d: the replica was removed from node %d with the command in flight; its outcome is unknown", r.rangeID, s.d.NodeID))
	s.cutWatches(r.rangeID, "the replica was removed from this node")
	r.mu.Lock()
	id := r.mu.replicaID
	initialized := r.mu.applied.GetIndex() > 0
	r.mu.Unlock()
	ctx, cancel := s.storageCtx()
	defer cancel()
	if err := s.destroyState(ctx, r.Descriptor(), id, initialized, tombstone); err != nil {
		s.log.Error("replica destroy failed", slog.Uint64("range", r.rangeID), slog.Any("error", err))
		return
	}
	s.metrics.replicasGCd.Add(1)
	s.log.Info("replica destroyed", slog.Uint64("range", r.rangeID), slog.Uint64("replica", id), slog.String("why", why))
}

// destroyState deletes a replica's state and data (its data and versions only when it
// had any and no other local replica holds part of its span) and writes
// its tombstone (when asked), in one synced write.
func (s *Store) destroyState(ctx context.Context, d *kvpb.RangeDescriptor, replicaID uint64, withData, tombstone bool) error {
	rs, re := storage.RangeRaftSpan(d.GetRangeId())
	ops := []storage.Op{
		storage.DeleteRange(storage.Raft, rs, re),
		storage.Delete(storage.Local, storage.ReplicaKey(d.GetRangeId())),
	}
	if tombstone {
		tb, err := proto.Marshal(&raftmsgpb.Tombstone{NextReplicaId: max(replicaID+1, d.GetNextReplicaId())})
		if err != nil {
			return err
		}
		ops = append(ops, storage.Put(storage.Local, storage.TombstoneKey(d.GetRangeId()), tb))
	}
	if withData {
		overlap := false
		for _, o := range s.Replicas() {
			if o.rangeID != d.GetRangeId() && spansOverlap(o.Descriptor(), d) {
				overlap = true
			}
		}
		if !overlap {
			start, end := clipSpan(nil, nil, d)
			vstart, vend := storage.VersionSpan(start, end)
			ops = append(ops, storage.DeleteRange(storage.Data, start, end), storage.DeleteRange(storage.Versions, vstart, vend))
		}
	}
	// It frees space: it may use a full disk's reserve.
	if err := s.d.Engine.WriteReserve(ctx, ops, true); err != nil {
		return err
	}
	s.vcache.applyWrite(ops)
	return nil
}

// gcLoop checks, every ReplicaGCInterval, the replicas that do not lead
// against the meta range (replica GC).
func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReplicaGCInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
		s.gcOnce()
	}
}

// gcOnce destroys the local replicas that a newer descriptor of their
// range in the meta range no longer names (their replica id is never
// reused, so a replica re-added here is another one and stays).
//
// It also reconciles the meta range with the ranges this node leads: a
// descriptor newer than meta's record (its update was lost with a failed
// leader, say) is recorded again.
func (s *Store) gcOnce() {
	var cands, leading []*Replica
	for _, r := range s.Replicas() {
		if !r.IsLeader() {
			cands = append(cands, r)
		} else if r.Descriptor().GetGeneration() > r.metaGen.Load() {
			leading = append(leading, r)
		}
	}
	if len(cands)+len(leading) == 0 || !s.Initialized() {
		return
	}
	ctx, cancel := s.storageCtx()
	defer cancel()
	descs, err := s.metaDescriptors(ctx)
	if err != nil {
		s.log.Debug("replica GC: meta unreadable", slog.Any("error", err))
		return
	}
	byID := make(map[uint64]*kvpb.RangeDescriptor, len(descs))
	for _, d := range descs {
		byID[d.GetRangeId()] = d
	}
	for _, r := range leading {
		d := r.Descriptor()
		if md := byID[r.rangeID]; md != nil && md.GetGeneration() >= d.GetGeneration() {
			r.metaGen.Store(md.GetGeneration())
			continue
		}
		if _, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, Descriptors: []*kvpb.RangeDescriptor{d}}); err != nil {
			s.log.Debug("meta reconciliation failed", slog.Uint64("range", r.rangeID), slog.Any("error", err))
			continue
		}
		r.metaGen.Store(d.GetGeneration())
	}
	for _, r := range cands {
		md := byID[r.rangeID]
		if md != nil && r.applied.Load() == 0 && replicaOfID(md, r.replicaID()) == nil && time.Since(r.created) > s.emptyReplicaGrace() {
			s.gcEmpty(ctx, r, md)
			continue
		}
		if md == nil || md.GetGeneration() <= r.Descriptor().GetGeneration() {
			continue
		}
		if replicaOfID(md, r.mu.replicaID) == nil {
			s.destroyReplica(r, "its range's descriptor no longer names it")
		}
	}
}

// emptyReplicaGrace is how long an empty replica (created for an add,
// waiting for its snapshot) is left alone by replica GC: twice as long as
// the leader adding it waits for it to catch up before it rolls the add
// back (waitCaughtUp).
func (s *Store) emptyReplicaGrace() time.Duration {
	return 60 * time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval
}

// replicaID returns the replica's id.
func (r *Replica) replicaID() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.replicaID
}

// gcEmpty destroys r, an empty replica past its grace that meta's
// descriptor md of its range does not name, once the range's leader
// confirms that its descriptor does not name it either (meta may lag a
// change in progress). Its add failed: its node died, or its leader,
// before the conf change applied, or the add was rolled back. When the
// leader's descriptor never allocated r's id (next_replica_id at or below
// it: no conf change naming it ever applied), r goes without a tombstone,
// so that the add's retry, which allocates the same id, can create it
// again; otherwise it gets one, as every removed replica.
func (s *Store) gcEmpty(ctx context.Context, r *Replica, md *kvpb.RangeDescriptor) {
	id := r.replicaID()
	ld, err := s.leaderDescriptor(ctx, md)
	if err != nil {
		s.log.Debug("replica GC: the range's leader is unknown", slog.Uint64("range", r.rangeID), slog.Any("error", err))
		return
	}
	if replicaOfID(ld, id) != nil {
		return // the add applied: its snapshot is on its way
	}
	if ld.GetNextReplicaId() <= id {
		s.destroy(r, "empty replica of an add whose conf change never applied", false)
		return
	}
	s.destroy(r, "empty replica of an add rolled back or removed", true)
}

// leaderDescriptor asks the nodes of md's replicas for the range's
// descriptor as its leader with the highest term has it.
func (s *Store) leaderDescriptor(ctx context.Context, md *kvpb.RangeDescriptor) (*kvpb.RangeDescriptor, error) {
	if s.d.Forwarder == nil {
		return nil, bus.Errorf(bus.CodeUnavailable, "kv: no forwarder")
	}
	var (
		best *kvpb.RangeDescriptor
		term uint64
		errs []error
	)
	for _, rd := range md.GetReplicas() {
		if rd.GetNodeId() == s.d.NodeID || !s.nodeLive(rd.GetNodeId()) {
			continue
		}
		resp := &kvpb.RangesResponse{}
		if err := s.d.Forwarder.Forward(ctx, rd.GetNodeId(), MethodRanges, &kvpb.RangesRequest{}, resp); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, st := range resp.GetReplicas() {
			if st.GetDescriptor_().GetRangeId() == md.GetRangeId() && st.GetRaftState() == "leader" && st.GetTerm() >= term {
				best, term = st.GetDescriptor_(), st.GetTerm()
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no leader of range %d answered: %w", md.GetRangeId(), errors.Join(errs...))
	}
	return best, nil
}
