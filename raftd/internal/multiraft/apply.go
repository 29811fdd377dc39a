package multiraft

import (
	"bytes"
	"fmt"
	"log/slog"

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
}

type overlayVal struct {
	value   []byte
	ts      hlc.Timestamp
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
	if v, ok := a.overlay[string(key)]; ok {
		return v.value, v.ts, !v.deleted, nil
	}
	if a.inCleared(key) {
		return nil, hlc.Timestamp{}, false, nil
	}
	ctx, cancel := a.r.s.storageCtx()
	defer cancel()
	b, ok, err := a.r.s.cachedGet(ctx, key)
	if err != nil || !ok {
		return nil, hlc.Timestamp{}, false, err
	}
	ts, v, err := storage.DecodeValue(b)
	if err != nil {
		return nil, hlc.Timestamp{}, false, fmt.Errorf("key %q: %w", key, err)
	}
	return v, ts, true, nil
}

func (a *applier) put(key, value []byte, ts hlc.Timestamp) {
	a.r.written.Add(int64(len(key) + len(value)))
	a.ops = append(a.ops, storage.Put(storage.Data, key, storage.EncodeValue(ts, value)))
	a.overlay[string(key)] = overlayVal{value: value, ts: ts}
}

func (a *applier) del(key []byte) {
	a.ops = append(a.ops, storage.Delete(storage.Data, key))
	a.overlay[string(key)] = overlayVal{deleted: true}
}

// delRange deletes [start, end) (nil end: unbounded) with one range
// delete, not a delete per key (a batch of those could outgrow what
// stored takes in one write), and returns how many live keys it removed.
func (a *applier) delRange(start, end []byte) (int, error) {
	n, err := a.countLive(start, end)
	if err != nil {
		return 0, err
	}
	a.ops = append(a.ops, storage.DeleteRange(storage.Data, start, end))
	sp := clearedSpan{start: start, end: end}
	for k := range a.overlay {
		if sp.contains([]byte(k)) {
			delete(a.overlay, k)
		}
	}
	a.cleared = append(a.cleared, sp)
	return n, nil
}

// countPage is how many keys countLive reads at a time.
const countPage = 10000

// countLive counts the live keys of [start, end) (nil end: unbounded) as
// the pass sees them: the engine's keys merged with the pass's own writes.
func (a *applier) countLive(start, end []byte) (int, error) {
	n := 0
	for from := start; ; {
		// Keys only, a page at a time: a span of many keys costs no
		// more memory than a page.
		ctx, cancel := a.r.s.storageCtx()
		kvs, err := a.r.s.d.Engine.Scan(ctx, storage.Data, from, end, storage.ScanOptions{Limit: countPage, KeysOnly: true})
		cancel()
		if err != nil {
			return 0, err
		}
		for _, kv := range kvs {
			if _, ok := a.overlay[string(kv.Key)]; !ok && !a.inCleared(kv.Key) {
				n++
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
			n++
		}
	}
	return n, nil
}

type doneProposal struct {
	p   *proposal
	res *Result
	// err refuses the command: it changed nothing.
	err error
}

// applyLocked applies committed entries in order, in memory: it returns
// the writes (data, client sessions and the applied state, to go in the
// round's batch) and the proposals to answer once that batch is durable.
func (r *Replica) applyLocked(ents []*raftpb.Entry) ([]storage.Op, []doneProposal, error) {
	if len(ents) == 0 {
		return nil, nil, nil
	}
	a := &applier{r: r, overlay: map[string]overlayVal{}}
	var done []doneProposal
	for _, e := range ents {
		if e.GetIndex() <= r.mu.applied.GetIndex() {
			continue
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) == 0 {
				break
			}
			cmd := &raftmsgpb.Command{}
			if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
				r.log.Error("undecodable command skipped", slog.Uint64("index", e.GetIndex()), slog.Any("error", err))
				break
			}
			res, refusal, err := r.applyCommandLocked(a, cmd)
			if err != nil {
				return nil, nil, err
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
				return nil, nil, fmt.Errorf("multiraft: decode conf change: %w", err)
			}
			r.mu.log.cs = r.mu.rn.ApplyConfChange(cc)
			r.noteConfChangeLocked(r.mu.log.cs, e.GetIndex())
		case raftpb.EntryConfChangeV2:
			cc := &raftpb.ConfChangeV2{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return nil, nil, fmt.Errorf("multiraft: decode conf change: %w", err)
			}
			if err := r.applyConfChangeLocked(a, cc, e.GetIndex()); err != nil {
				return nil, nil, err
			}
		}
		r.mu.applied.Index, r.mu.applied.Term = e.GetIndex(), e.GetTerm()
	}
	if err := r.flushSessionsLocked(a); err != nil {
		return nil, nil, err
	}
	b, err := proto.Marshal(r.mu.applied)
	if err != nil {
		return nil, nil, err
	}
	ops := append(a.ops, storage.Put(storage.Raft, storage.AppliedStateKey(r.rangeID), b))
	r.mu.log.applied, r.mu.log.appliedTerm = r.mu.applied.GetIndex(), r.mu.applied.GetTerm()
	return ops, done, nil
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
	maxTS, _ := hlc.FromProto(r.mu.applied.GetMaxTimestamp())
	if !maxTS.Less(ts) {
		ts = maxTS.Next()
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
			a.put(op.GetPut().GetKey(), op.GetPut().GetValue(), ts)
		case op.GetDelete() != nil:
			_, _, found, err := a.get(op.GetDelete().GetKey())
			if err != nil {
				return nil, err
			}
			if found {
				a.del(op.GetDelete().GetKey())
				res.Deleted[i] = true
			}
		case op.GetCas() != nil:
			c := op.GetCas()
			if c.GetDelete() {
				a.del(c.GetKey())
			} else {
				a.put(c.GetKey(), c.GetNewValue(), ts)
			}
		case op.GetDeleteRange() != nil:
			start, end := clipSpan(op.GetDeleteRange().GetStart(), op.GetDeleteRange().GetEnd(), desc)
			n, err := a.delRange(start, end)
			if err != nil {
				return nil, err
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
