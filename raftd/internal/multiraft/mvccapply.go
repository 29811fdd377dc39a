package multiraft

import (
	"context"
	"log/slog"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// decodeCommands decodes the commands of the entries to apply: cmds[i]
// is ents[i]'s, nil for an entry that carries none (or one that does not
// decode, which is logged and skipped, as applying it would be).
func (r *Replica) decodeCommands(ents []*raftpb.Entry) ([]*raftmsgpb.Command, error) {
	cmds := make([]*raftmsgpb.Command, len(ents))
	for i, e := range ents {
		if e.GetIndex() <= r.mu.applied.GetIndex() || e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		cmd := &raftmsgpb.Command{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			r.log.Error("undecodable command skipped", slog.Uint64("index", e.GetIndex()), slog.Any("error", err))
			continue
		}
		cmds[i] = cmd
	}
	return cmds, nil
}

// commandKeys calls f with each key cmd's ops write (and so read).
func commandKeys(cmd *raftmsgpb.Command, f func([]byte)) {
	for _, op := range cmd.GetOps() {
		switch {
		case op.GetPut() != nil:
			f(op.GetPut().GetKey())
		case op.GetDelete() != nil:
			f(op.GetDelete().GetKey())
		case op.GetCas() != nil:
			f(op.GetCas().GetKey())
		}
	}
}

// fetchKeys returns the keys the commands of ents (entries being
// appended) write that the value cache lacks: their records are what
// the apply of these entries will build on. Entries up to applying (the
// last one this Ready applies: a follower that learned their commit
// with them) are left out, as their apply reads for itself.
func (s *Store) fetchKeys(ents []*raftpb.Entry, applying uint64) [][]byte {
	if s.vcache == nil {
		return nil
	}
	var keys [][]byte
	var seen map[string]bool
	for _, e := range ents {
		if e.GetIndex() <= applying || e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		cmd := &raftmsgpb.Command{}
		if proto.Unmarshal(e.GetData(), cmd) != nil {
			continue // skipped by the apply too
		}
		commandKeys(cmd, func(k []byte) {
			if len(k) == 0 || seen[string(k)] {
				return
			}
			if _, _, hit := s.vcache.get(k); hit {
				return
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[string(k)] = true
			keys = append(keys, k)
		})
	}
	return keys
}

// prefetch starts one engine read of the keys the round's works append
// entries for (readyWork.fetch), filling the value cache when it
// returns. It starts before the round's write, so it runs alongside it.
// Those entries apply in a later round, after the entries' followers
// acknowledged them (leader) or the commit reached this node
// (follower): the read overlaps the write and that wait instead of
// sitting on the apply's path. A data write that lands meanwhile leaves out the keys
// it touched (valueCache.startRead), so the cache never takes a record
// older than the engine's; what the read did not bring, the apply reads
// itself.
func (s *Store) prefetch(reps []*Replica, works []*readyWork) {
	var keys [][]byte
	for _, w := range works {
		if w != nil {
			keys = append(keys, w.fetch...)
		}
	}
	if len(keys) == 0 {
		return
	}
	rd := s.vcache.startRead(keys)
	var fetching []*Replica
	for i, w := range works {
		if w != nil && len(w.fetch) > 0 {
			reps[i].fetching.Store(rd)
			fetching = append(fetching, reps[i])
		}
	}
	// Once the read has filled the cache there is nothing to wait for:
	// the replicas let go of it (an idle range keeps no keys).
	release := func() {
		for _, r := range fetching {
			r.fetching.CompareAndSwap(rd, nil)
		}
	}
	s.metrics.prefetchReads.Add(1)
	if !s.goAsync(func() {
		ctx, cancel := s.storageCtx()
		defer cancel()
		values, found, err := s.d.Engine.MultiGet(ctx, storage.Data, keys)
		if err != nil && !s.stopping() {
			s.log.Debug("prefetch failed; the apply reads for itself", slog.Any("error", err))
		}
		s.vcache.finishRead(rd, keys, values, found, err)
		release()
	}) {
		s.vcache.finishRead(rd, nil, nil, nil, context.Canceled)
		release()
	}
}

// prefetchInboxes reads, in one engine MultiGet before the round's
// phase1, the records for the entries that wait in the ranges' inboxes
// with their commit: a follower that learns of the commit with the
// entries (the one the leader did not wait for, or one catching up)
// applies them in the pass that appends them, before any prefetch after
// a write could bring them, and would read for each range on its own.
func (s *Store) prefetchInboxes(reps []*Replica) {
	if s.vcache == nil {
		return
	}
	var ents []*raftpb.Entry
	for _, r := range reps {
		applied := r.applied.Load()
		r.in.Lock()
		for _, m := range r.in.msgs {
			if m.msg.GetType() != raftpb.MsgApp {
				continue
			}
			for _, e := range m.msg.GetEntries() {
				if e.GetIndex() > applied && e.GetIndex() <= m.msg.GetCommit() {
					ents = append(ents, e)
				}
			}
		}
		r.in.Unlock()
	}
	keys := s.fetchKeys(ents, 0)
	if len(keys) < 2 {
		return // one key: the apply's own read costs the same
	}
	s.metrics.prefetchReads.Add(1)
	rd := s.vcache.startRead(keys)
	ctx, cancel := s.storageCtx()
	defer cancel()
	values, found, err := s.d.Engine.MultiGet(ctx, storage.Data, keys)
	if err != nil && !s.stopping() {
		s.log.Debug("prefetch failed; the apply reads for itself", slog.Any("error", err))
	}
	s.vcache.finishRead(rd, keys, values, found, err)
}

// prefetch reads, in one engine MultiGet, the latest records of the keys
// the commands write that the value cache does not hold: a put builds on
// its key's record (create timestamp and version count), and reading
// them one by one would cost a round trip to stored per write. Most are
// in the cache already, brought by the prefetch of the round that
// appended the entries (Store.prefetch), which it waits for if it is
// still reading one of them.
func (a *applier) prefetch(cmds []*raftmsgpb.Command) error {
	var keys [][]byte
	seen := map[string]bool{}
	want := func(k []byte) {
		if len(k) == 0 || seen[string(k)] {
			return
		}
		seen[string(k)] = true
		keys = append(keys, k)
	}
	for _, cmd := range cmds {
		commandKeys(cmd, want)
	}
	missing := func() [][]byte {
		var m [][]byte
		for _, k := range keys {
			if _, _, hit := a.r.s.vcache.get(k); !hit {
				m = append(m, k)
			}
		}
		return m
	}
	miss := missing()
	if rd := a.r.fetching.Load(); rd != nil && len(miss) > 0 {
		for _, k := range miss {
			if _, ok := rd.want[string(k)]; ok {
				select {
				case <-rd.done:
				case <-a.r.s.stopc:
				}
				miss = missing()
				break
			}
		}
	}
	if len(miss) < 2 {
		return nil // one key: the ordinary read costs the same
	}
	a.r.s.metrics.applyReads.Add(1)
	ctx, cancel := a.r.s.storageCtx()
	defer cancel()
	values, found, err := a.r.s.d.Engine.MultiGet(ctx, storage.Data, miss)
	if err != nil {
		return err
	}
	a.pre = make(map[string][]byte, len(miss))
	for i, k := range miss {
		if found[i] {
			a.pre[string(k)] = values[i]
		} else {
			a.pre[string(k)] = nil
		}
	}
	return nil
}
