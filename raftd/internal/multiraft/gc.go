package multiraft

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// destroyReplica removes a replica this node no longer holds: from the
// routing table, then its raft state, descriptor and data, leaving a
// tombstone so that no replica of the range with its id (or a lower one)
// is created here again. A replica re-added later has a higher id.
func (s *Store) destroyReplica(r *Replica, why string) {
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
	r.failAll(&NotLeaderError{RangeID: r.rangeID})
	s.cutWatches(r.rangeID, "the replica was removed from this node")
	r.mu.Lock()
	id := r.mu.replicaID
	initialized := r.mu.applied.GetIndex() > 0
	r.mu.Unlock()
	ctx, cancel := s.storageCtx()
	defer cancel()
	if err := s.destroyState(ctx, r.Descriptor(), id, initialized); err != nil {
		s.log.Error("replica destroy failed", slog.Uint64("range", r.rangeID), slog.Any("error", err))
		return
	}
	s.metrics.replicasGCd.Add(1)
	s.log.Info("replica destroyed", slog.Uint64("range", r.rangeID), slog.Uint64("replica", id), slog.String("why", why))
}

// destroyState deletes a replica's state and data (its data and versions only when it
// had any and no other local replica holds part of its span) and writes
// its tombstone, in one synced write.
func (s *Store) destroyState(ctx context.Context, d *kvpb.RangeDescriptor, replicaID uint64, withData bool) error {
	tb, err := proto.Marshal(&raftmsgpb.Tombstone{NextReplicaId: max(replicaID+1, d.GetNextReplicaId())})
	if err != nil {
		return err
	}
	rs, re := storage.RangeRaftSpan(d.GetRangeId())
	ops := []storage.Op{
		storage.DeleteRange(storage.Raft, rs, re),
		storage.Delete(storage.Local, storage.ReplicaKey(d.GetRangeId())),
		storage.Put(storage.Local, storage.TombstoneKey(d.GetRangeId()), tb),
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
		if md == nil || md.GetGeneration() <= r.Descriptor().GetGeneration() {
			continue
		}
		if replicaOfID(md, r.mu.replicaID) == nil {
			s.destroyReplica(r, "its range's descriptor no longer names it")
		}
	}
}
