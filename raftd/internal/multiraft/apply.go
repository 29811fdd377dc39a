package multiraft

import (
	"bytes"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Result is the outcome of one applied command.
type Result struct {
	// Timestamp is the HLC timestamp the command's writes carry.
	Timestamp hlc.Timestamp
	// Succeeded is false when a compare-and-swap failed; nothing was
	// written then.
	Succeeded bool
	// FailedOp is the index of the failed comparison.
	FailedOp int
	// Current is the value found by the failed comparison (nil: absent).
	Current *kvpb.Value
	// Deleted tells, per op, whether a delete removed an existing key.
	Deleted []bool
	// Count is the number of keys a DeleteRange removed.
	Count uint64
	// CountFrom is where the span Count covers starts (see
	// splitSessionCounts).
	CountFrom []byte
}

type overlayVal struct {
	value   []byte
	meta    storage.Meta
	deleted bool
}

// applier accumulates the writes of one apply pass; reads see earlier
// writes of the pass through the overlay.
type applier struct {
	r       *Replica
	ops     []storage.Op
	overlay map[string]overlayVal
	// cleared are the spans DeleteRanges of the pass removed (the overlay
	// forgets its keys there): a key in one and not in the overlay is
	// absent, whatever the engine holds.
	cleared []clearedSpan
	// sessions tracks the pass's client session writes.
	sessions sessionOps
	// pre are the engine records of keys the pass writes, read in one
	// MultiGet before it (prefetch; nil: absent); the overlay and cleared
	// spans take precedence.
	pre map[string][]byte
	// ahead are the tombstones written ahead of the round's write (see
	// delRange), published to the watches with that write.
	ahead []storage.Op
}

type clearedSpan struct{ start, end []byte } // nil end: unbounded

func (s clearedSpan) contains(key []byte) bool {
	return bytes.Compare(key, s.start) >= 0 && (s.end == nil || bytes.Compare(key, s.end) < 0)
}

func (a *applier) inCleared(key []byte) bool {
	for _, s := range a.cleared {
		if s.contains(key) {
			return true
		}
	}
	return false
}

func (a *applier) get(key []byte) ([]byte, hlc.Timestamp, bool, error) {
	v, m, found, err := a.getRecord(key)
	return v, m.Mod, found, err
}

// getRecord reads key's latest value and Meta as the pass sees them.
func (a *applier) getRecord(key []byte) ([]byte, storage.Meta, bool, error) {
	if v, ok := a.overlay[string(key)]; ok {
		return v.value, v.meta, !v.deleted, nil
	}
	if a.inCleared(key) {
		return nil, storage.Meta{}, false, nil
	}
	b, ok := a.pre[string(key)]
	if !ok {
		ctx, cancel := a.r.s.storageCtx()
		defer cancel()
		var err error
		if b, ok, err = a.r.s.cachedGetCounted(ctx, key, &a.r.s.metrics.applyReads); err != nil {
			return nil, storage.Meta{}, false, err
		}
		if !ok {
			b = nil
		}
	}
	if b == nil {
		return nil, storage.Meta{}, false, nil
	}
	m, v, deleted, err := storage.DecodeRecord(b)
	if err == nil && deleted {
		err = fmt.Errorf("%w: a tombstone in the data family", storage.ErrBadEnvelope)
	}
	if err != nil {
		return nil, storage.Meta{}, false, fmt.Errorf("key %q: %w", key, err)
	}
	return v, m, true, nil
}

// put writes key's new latest record and its version at ts.
func (a *applier) put(key, value []byte, ts hlc.Timestamp) error {
	_, prev, found, err := a.getRecord(key)
	if err != nil {
		return err
	}
	m := prev.Next(ts, found)
	rec := storage.EncodeRecord(m, value)
	a.r.written.Add(int64(len(key) + len(value)))
	a.ops = append(a.ops, storage.Put(storage.Data, key, rec), storage.Put(storage.Versions, storage.VersionKey(key, ts), rec))
	a.overlay[string(key)] = overlayVal{value: value, meta: m}
	return nil
}

// del removes key's latest record and writes a tombstone version at ts.
func (a *applier) del(key []byte, ts hlc.Timestamp) {
	a.ops = append(a.ops, storage.Delete(storage.Data, key), storage.Put(storage.Versions, storage.VersionKey(key, ts), storage.EncodeTombstone(ts)))
	a.overlay[string(key)] = overlayVal{deleted: true}
}

// delRange deletes [start, end) (nil end: unbounded) with one range
// delete of the latest records, not a delete per key (a batch of those
// could outgrow what stored takes in one write), writes a tombstone
// version at ts for each live key, and returns how many it removed.
//
// The tombstones of many keys would outgrow a write too (about 50 bytes
// a key: a million keys pass stored's 64 MiB batch limit), so once they
// reach DeleteRangeBatchBytes they are written ahead of the round's
// write, in batches of about that size (writeAhead), and the rest go in
// the round's write with the range delete and the applied index. A crash
// between leaves tombstones at ts in the versions family of keys still
// live, with the applied index before the command: the command is
// committed, and applying it again after the restart (from the same
// data, at the same timestamp, which the applied state fixes) writes the
// same tombstones. Until then the latest records and the applied index
// are unchanged, so reads of the latest values, reads at a timestamp
// (which take the latest record when it is not newer) and everything
// published to readers show the state before the command; only a scan
// at a timestamp at or after ts, which no applied write has reached yet,
// may see the committed delete early. The watches get the tombstones
// written ahead with the round's write (readyWork.ahead), in timestamp
// order with its changes.
func (a *applier) delRange(start, end []byte, ts hlc.Timestamp) (int, error) {
	tomb := storage.EncodeTombstone(ts)
	var (
		n     int
		batch []storage.Op
		size  uint64
	)
	err := a.liveKeys(start, end, func(k []byte) error {
		op := storage.Put(storage.Versions, storage.VersionKey(k, ts), tomb)
		batch = append(batch, op)
		n++
		size += uint64(len(op.Key)+len(op.Value)) + 8
		if size < a.r.s.cfg.DeleteRangeBatchBytes {
			return nil
		}
		if err := a.r.s.writeAhead(batch); err != nil {
			return err
		}
		a.ahead = append(a.ahead, batch...)
		batch, size = nil, 0
		return nil
	})
	if err != nil {
		return 0, err
	}
	a.ops = append(a.ops, storage.DeleteRange(storage.Data, start, end))
	a.ops = append(a.ops, batch...)
	sp := clearedSpan{start: start, end: end}
	for k := range a.overlay {
		if sp.contains([]byte(k)) {
			delete(a.overlay, k)
		}
	}
	a.cleared = append(a.cleared, sp)
	return n, nil
}

// writeAhead writes tombstone versions of a range delete ahead of the
// round's write (see delRange). They reach the watches with that write,
// not before: a watch that starts between them would otherwise miss
// them (its live changes start above the range's resolved timestamp,
// which the command's has not reached).
func (s *Store) writeAhead(ops []storage.Op) error {
	ctx, cancel := s.storageCtx()
	defer cancel()
	if err := s.d.Engine.Write(ctx, ops, false); err != nil {
		return fmt.Errorf("multiraft: range delete tombstones: %w", err)
	}
	s.metrics.writes.Add(1)
	return nil
}

// countPage is how many keys liveKeys reads at a time.
const countPage = 10000

// liveKeys calls f with each live key of [start, end) (nil end:
// unbounded) as the pass sees them: the engine's keys merged with the
// pass's own writes.
func (a *applier) liveKeys(start, end []byte, f func([]byte) error) error {
	for from := start; ; {
		// Keys only, a page at a time: a span of many keys costs no
		// more memory than a page.
		ctx, cancel := a.r.s.storageCtx()
		kvs, err := a.r.s.d.Engine.Scan(ctx, storage.Data, from, end, storage.ScanOptions{Limit: countPage, KeysOnly: true})
		cancel()
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if _, ok := a.overlay[string(kv.Key)]; !ok && !a.inCleared(kv.Key) {
				if err := f(kv.Key); err != nil {
					return err
				}
			}
		}
		if len(kvs) < countPage {
			break
		}
		from = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
	}
	sp := clearedSpan{start: start, end: end}
	for k, v := range a.overlay {
		if !v.deleted && sp.contains([]byte(k)) {
			if err := f([]byte(k)); err != nil {
				return err
			}
		}
	}
	return nil
}

type doneProposal struct {
	p   *proposal
	res *Result
	// err refuses the command: it changed nothing.
	err error
}

// applyLocked applies committed entries in order, in memory: it returns
// the writes (data, client sessions and the applied state, to go in the
// round's batch), the tombstones it wrote ahead of that batch (to
// publish with it) and the proposals to answer once that batch is
// durable.
func (r *Replica) applyLocked(ents []*raftpb.Entry) (_ []storage.Op, ahead []storage.Op, _ []doneProposal, _ error) {
	if len(ents) == 0 {
		return nil, nil, nil, nil
	}
	a := &applier{r: r, overlay: map[string]overlayVal{}}
	cmds, err := r.decodeCommands(ents)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := a.prefetch(cmds); err != nil {
		return nil, nil, nil, err
	}
	var done []doneProposal
	for i, e := range ents {
		if e.GetIndex() <= r.mu.applied.GetIndex() {
			continue
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			cmd := cmds[i]
			if cmd == nil {
				break
			}
			res, refusal, err := r.applyCommandLocked(a, cmd)
			if err != nil {
				return nil, nil, nil, err
			}
			// The proposer answers its caller; a copy of the command
			// applied again (a re-proposal) finds no one waiting.
			if cmd.GetNodeId() == r.s.d.NodeID && cmd.GetIncarnation() == r.s.incarnation {
				if p := r.mu.pending[cmd.GetSeq()]; p != nil {
					delete(r.mu.pending, cmd.GetSeq())
					done = append(done, doneProposal{p, res, refusal})
				}
			}
		case raftpb.EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return nil, nil, nil, fmt.Errorf("multiraft: decode conf change: %w", err)
			}
			r.mu.log.cs = r.mu.rn.ApplyConfChange(cc)
			r.noteConfChangeLocked(r.mu.log.cs, e.GetIndex())
		case raftpb.EntryConfChangeV2:
			cc := &raftpb.ConfChangeV2{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return nil, nil, nil, fmt.Errorf("multiraft: decode conf change: %w", err)
			}
			if err := r.applyConfChangeLocked(a, cc, e.GetIndex()); err != nil {
				return nil, nil, nil, err
			}
		}
		r.mu.applied.Index, r.mu.applied.Term = e.GetIndex(), e.GetTerm()
	}
	if err := r.flushSessionsLocked(a); err != nil {
		return nil, nil, nil, err
	}
	b, err := proto.Marshal(r.mu.applied)
	if err != nil {
		return nil, nil, nil, err
	}
	ops := append(a.ops, storage.Put(storage.Raft, storage.AppliedStateKey(r.rangeID), b))
	r.mu.log.applied, r.mu.log.appliedTerm = r.mu.applied.GetIndex(), r.mu.applied.GetTerm()
	return ops, a.ahead, done, nil
}

// applyCommandLocked applies one command at a timestamp above every
// earlier write of the range: through its client session (session.go)
// when it has one. refusal is the answer of a command that changed
// nothing; err a storage failure.
func (r *Replica) applyCommandLocked(a *applier, cmd *raftmsgpb.Command) (res *Result, refusal, err error) {
	ts, err := hlc.FromProto(cmd.GetTimestamp())
	if err != nil {
		ts = hlc.Timestamp{}
	}
	// Above every earlier write and above the closed timestamp: the
	// log's, raised to the one this command carries.
	floor, _ := hlc.FromProto(r.mu.applied.GetMaxTimestamp())
	closed, _ := hlc.FromProto(r.mu.applied.GetClosedTimestamp())
	if c, err := hlc.FromProto(cmd.GetClosedTimestamp()); err == nil && closed.Less(c) {
		closed = c
		r.mu.applied.ClosedTimestamp = c.Proto()
	}
	floor = maxTS(floor, closed)
	if !floor.Less(ts) {
		ts = floor.Next()
	}
	r.mu.applied.MaxTimestamp = ts.Proto()
	_, _ = r.s.d.Clock.Update(ts)
	if op := adminOp(cmd); op != nil {
		return r.applyAdminLocked(a, op, ts)
	}
	if err := r.checkCommandLocked(cmd); err != nil {
		// Routed here before a split moved its keys: nothing done, the
		// caller routes it again.
		return nil, err, nil
	}
	r.maybeSweepSessionsLocked(a, ts)
	if cmd.GetSession() == nil {
		res, err := r.evalLocked(a, cmd, ts)
		return res, nil, err
	}
	return r.applySessionLocked(a, cmd, ts)
}

// evalLocked applies one command's ops at ts: comparisons first (all or
// nothing), then the mutations.
func (r *Replica) evalLocked(a *applier, cmd *raftmsgpb.Command, ts hlc.Timestamp) (*Result, error) {
	res := &Result{Timestamp: ts, Succeeded: true, Deleted: make([]bool, len(cmd.GetOps()))}
	for i, op := range cmd.GetOps() {
		c := op.GetCas()
		if c == nil {
			continue
		}
		cur, curTS, found, err := a.get(c.GetKey())
		if err != nil {
			return nil, err
		}
		ok := !found
		if !c.GetExpectAbsent() {
			ok = found && bytes.Equal(cur, c.GetExpectedValue())
		}
		if !ok {
			res.Succeeded, res.FailedOp = false, i
			if found {
				res.Current = &kvpb.Value{Value: bytes.Clone(cur), Timestamp: curTS.Proto()}
			}
			return res, nil
		}
	}
	desc := r.mu.desc
	for i, op := range cmd.GetOps() {
		switch {
		case op.GetPut() != nil:
			if err := a.put(op.GetPut().GetKey(), op.GetPut().GetValue(), ts); err != nil {
				return nil, err
			}
		case op.GetDelete() != nil:
			_, _, found, err := a.get(op.GetDelete().GetKey())
			if err != nil {
				return nil, err
			}
			if found {
				a.del(op.GetDelete().GetKey(), ts)
				res.Deleted[i] = true
			}
		case op.GetCas() != nil:
			c := op.GetCas()
			if c.GetDelete() {
				// A compare-and-delete of an absent key (expect_absent)
				// leaves no tombstone: nothing was there to delete.
				_, _, found, err := a.get(c.GetKey())
				if err != nil {
					return nil, err
				}
				if found {
					a.del(c.GetKey(), ts)
				}
			} else if err := a.put(c.GetKey(), c.GetNewValue(), ts); err != nil {
				return nil, err
			}
		case op.GetDeleteRange() != nil:
			start, end := clipSpan(op.GetDeleteRange().GetStart(), op.GetDeleteRange().GetEnd(), desc)
			n, err := a.delRange(start, end, ts)
			if err != nil {
				return nil, err
			}
			if res.CountFrom == nil {
				res.CountFrom = start
			}
			res.Count += uint64(n)
		}
	}
	return res, nil
}

// clipSpan intersects [start, end) (empty end: unbounded) with the range.
func clipSpan(start, end []byte, d *kvpb.RangeDescriptor) ([]byte, []byte) {
	if bytes.Compare(start, d.GetStartKey()) < 0 {
		start = d.GetStartKey()
	}
	if len(d.GetEndKey()) > 0 && (len(end) == 0 || bytes.Compare(end, d.GetEndKey()) > 0) {
		end = d.GetEndKey()
	}
	if len(end) == 0 {
		end = nil
	}
	return start, end
}

func tsOf(v *kvpb.Value) hlc.Timestamp {
	ts, _ := hlc.FromProto(v.GetTimestamp())
	return ts
}
