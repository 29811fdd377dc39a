package multiraft

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// raftLog is one replica's raft.Storage: the durable log in the engine's
// raft column family plus an in-memory cache of the hot tail. It is used
// only with the replica's mutex held.
type raftLog struct {
	rangeID  uint64
	eng      storage.Engine
	timeout  time.Duration
	hs       *raftpb.HardState
	cs       *raftpb.ConfState
	trunc    *raftmsgpb.TruncatedState
	last     uint64
	lastTerm uint64
	// cache holds entries [cache[0].Index, last]: at most cacheMax, and
	// about cacheBytes of entry data (at least the last entry).
	cache      []*raftpb.Entry
	cacheData  int // entry data bytes in cache
	cacheMax   int
	cacheBytes int
	// applied and appliedTerm describe the state machine, for Snapshot.
	applied, appliedTerm uint64
	// bytes estimates the log's size.
	bytes uint64
}

var _ raft.Storage = (*raftLog)(nil)

func (l *raftLog) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), l.timeout)
}

// load reads the durable state of the range's log.
func loadRaftLog(eng storage.Engine, rangeID uint64, cs *raftpb.ConfState, cacheMax, cacheBytes int, timeout time.Duration) (*raftLog, error) {
	l := &raftLog{rangeID: rangeID, eng: eng, timeout: timeout, cs: cs, cacheMax: cacheMax, cacheBytes: cacheBytes,
		hs: &raftpb.HardState{}, trunc: &raftmsgpb.TruncatedState{}}
	ctx, cancel := l.ctx()
	defer cancel()
	if v, ok, err := eng.Get(ctx, storage.Raft, storage.HardStateKey(rangeID)); err != nil {
		return nil, fmt.Errorf("load hard state of range %d: %w", rangeID, err)
	} else if ok {
		if err := proto.Unmarshal(v, l.hs); err != nil {
			return nil, fmt.Errorf("decode hard state of range %d: %w", rangeID, err)
		}
	}
	if v, ok, err := eng.Get(ctx, storage.Raft, storage.TruncatedStateKey(rangeID)); err != nil {
		return nil, fmt.Errorf("load truncated state of range %d: %w", rangeID, err)
	} else if ok {
		if err := proto.Unmarshal(v, l.trunc); err != nil {
			return nil, fmt.Errorf("decode truncated state of range %d: %w", rangeID, err)
		}
	}
	l.last, l.lastTerm = l.trunc.GetIndex(), l.trunc.GetTerm()
	kvs, err := eng.Scan(ctx, storage.Raft, storage.LogKey(rangeID, 0), storage.LogKey(rangeID, ^uint64(0)), storage.ScanOptions{Limit: cacheMax, MaxBytes: cacheBytes, Reverse: true})
	if err != nil {
		return nil, fmt.Errorf("load log tail of range %d: %w", rangeID, err)
	}
	for i := len(kvs) - 1; i >= 0; i-- {
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(kvs[i].Value, e); err != nil {
			return nil, fmt.Errorf("decode entry of range %d: %w", rangeID, err)
		}
		if e.GetIndex() <= l.trunc.GetIndex() {
			continue
		}
		l.cache = append(l.cache, e)
		l.cacheData += len(e.GetData())
		l.bytes += uint64(len(kvs[i].Value))
	}
	if n := len(l.cache); n > 0 {
		l.last, l.lastTerm = l.cache[n-1].GetIndex(), l.cache[n-1].GetTerm()
	}
	return l, nil
}

// InitialState implements raft.Storage.
func (l *raftLog) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return proto.Clone(l.hs).(*raftpb.HardState), proto.Clone(l.cs).(*raftpb.ConfState), nil
}

// FirstIndex implements raft.Storage.
func (l *raftLog) FirstIndex() (uint64, error) { return l.trunc.GetIndex() + 1, nil }

// LastIndex implements raft.Storage.
func (l *raftLog) LastIndex() (uint64, error) { return l.last, nil }

func (l *raftLog) cached(i uint64) *raftpb.Entry {
	if len(l.cache) == 0 || i < l.cache[0].GetIndex() || i > l.last {
		return nil
	}
	return l.cache[i-l.cache[0].GetIndex()]
}

// Term implements raft.Storage.
func (l *raftLog) Term(i uint64) (uint64, error) {
	switch {
	case i == l.trunc.GetIndex():
		return l.trunc.GetTerm(), nil
	case i < l.trunc.GetIndex():
		return 0, raft.ErrCompacted
	case i > l.last:
		return 0, raft.ErrUnavailable
	}
	if e := l.cached(i); e != nil {
		return e.GetTerm(), nil
	}
	ents, err := l.Entries(i, i+1, 0)
	if err != nil {
		return 0, err
	}
	return ents[0].GetTerm(), nil
}

// Entries implements raft.Storage.
func (l *raftLog) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if lo <= l.trunc.GetIndex() {
		return nil, raft.ErrCompacted
	}
	if hi > l.last+1 || lo >= hi {
		return nil, raft.ErrUnavailable
	}
	var out []*raftpb.Entry
	var size uint64
	add := func(e *raftpb.Entry) bool {
		s := uint64(proto.Size(e))
		if len(out) > 0 && maxSize > 0 && size+s > maxSize {
			return false
		}
		size += s
		out = append(out, e)
		return true
	}
	i := lo
	if len(l.cache) == 0 || lo < l.cache[0].GetIndex() {
		end := hi
		if len(l.cache) > 0 && l.cache[0].GetIndex() < end {
			end = l.cache[0].GetIndex()
		}
		ctx, cancel := l.ctx()
		kvs, err := l.eng.Scan(ctx, storage.Raft, storage.LogKey(l.rangeID, lo), storage.LogKey(l.rangeID, end), storage.ScanOptions{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read log of range %d: %w", l.rangeID, err)
		}
		for _, kv := range kvs {
			e := &raftpb.Entry{}
			if err := proto.Unmarshal(kv.Value, e); err != nil {
				return nil, fmt.Errorf("decode entry of range %d: %w", l.rangeID, err)
			}
			if e.GetIndex() != i {
				return nil, raft.ErrUnavailable
			}
			if !add(e) {
				return out, nil
			}
			i++
		}
		if i < end {
			return nil, raft.ErrUnavailable
		}
	}
	for ; i < hi; i++ {
		if !add(l.cached(i)) {
			break
		}
	}
	return out, nil
}

// Snapshot implements raft.Storage: the snapshot is the state machine at
// the applied index; its data travels out of band.
func (l *raftLog) Snapshot() (*raftpb.Snapshot, error) {
	return &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(l.applied), Term: proto.Uint64(l.appliedTerm), ConfState: proto.Clone(l.cs).(*raftpb.ConfState),
	}}, nil
}

// appendOps returns the writes that append ents (replacing any conflicting
// suffix) and updates the in-memory view.
func (l *raftLog) appendOps(ents []*raftpb.Entry) ([]storage.Op, error) {
	if len(ents) == 0 {
		return nil, nil
	}
	first, lastNew := ents[0].GetIndex(), ents[len(ents)-1].GetIndex()
	var ops []storage.Op
	for _, e := range ents {
		b, err := proto.Marshal(e)
		if err != nil {
			return nil, err
		}
		l.bytes += uint64(len(b))
		ops = append(ops, storage.Put(storage.Raft, storage.LogKey(l.rangeID, e.GetIndex()), b))
	}
	if lastNew < l.last {
		ops = append(ops, storage.DeleteRange(storage.Raft, storage.LogKey(l.rangeID, lastNew+1), storage.LogKey(l.rangeID, l.last+1)))
	}
	// Cache: keep the contiguous prefix before first, then the new entries.
	if len(l.cache) > 0 && first > l.cache[0].GetIndex() && first <= l.last+1 {
		keep := first - l.cache[0].GetIndex()
		for _, e := range l.cache[keep:] {
			l.cacheData -= len(e.GetData())
		}
		l.cache = l.cache[:keep]
	} else {
		l.cache, l.cacheData = l.cache[:0], 0
	}
	for _, e := range ents {
		l.cacheData += len(e.GetData())
	}
	l.cache = append(l.cache, ents...)
	l.trimCache()
	l.last, l.lastTerm = lastNew, ents[len(ents)-1].GetTerm()
	return ops, nil
}

// trimCache drops the cache's oldest entries beyond cacheMax entries or
// cacheBytes of entry data, keeping at least the last entry.
func (l *raftLog) trimCache() {
	for len(l.cache) > l.cacheMax || (len(l.cache) > 1 && l.cacheData > l.cacheBytes) {
		l.dropCacheFront()
	}
}

// dropCacheFront drops the cache's oldest entry (appends reallocate the
// array as it is consumed from the front, so it does not grow).
func (l *raftLog) dropCacheFront() {
	l.cacheData -= len(l.cache[0].GetData())
	l.cache[0] = nil
	l.cache = l.cache[1:]
}

// truncateOps removes entries up to and including index.
func (l *raftLog) truncateOps(index uint64) ([]storage.Op, error) {
	if index <= l.trunc.GetIndex() || index > l.last {
		return nil, nil
	}
	term, err := l.Term(index)
	if err != nil {
		return nil, err
	}
	ts := &raftmsgpb.TruncatedState{Index: index, Term: term}
	b, err := proto.Marshal(ts)
	if err != nil {
		return nil, err
	}
	ops := []storage.Op{
		// From the log's start, not the last truncation: entries a
		// truncation refused for want of space left go too.
		storage.DeleteRange(storage.Raft, storage.LogKey(l.rangeID, 0), storage.LogKey(l.rangeID, index+1)),
		storage.Put(storage.Raft, storage.TruncatedStateKey(l.rangeID), b),
	}
	removed := index - l.trunc.GetIndex()
	if total := l.last - l.trunc.GetIndex(); total > 0 {
		l.bytes -= l.bytes * removed / total
	}
	l.trunc = ts
	for len(l.cache) > 0 && l.cache[0].GetIndex() <= index {
		l.dropCacheFront()
	}
	return ops, nil
}

// snapshotOps resets the log to a snapshot at (index, term).
func (l *raftLog) snapshotOps(index, term uint64) ([]storage.Op, error) {
	ts := &raftmsgpb.TruncatedState{Index: index, Term: term}
	b, err := proto.Marshal(ts)
	if err != nil {
		return nil, err
	}
	s := storage.LogKey(l.rangeID, 0)
	e := storage.LogKey(l.rangeID, ^uint64(0))
	ops := []storage.Op{storage.DeleteRange(storage.Raft, s, e), storage.Put(storage.Raft, storage.TruncatedStateKey(l.rangeID), b)}
	l.trunc = ts
	l.last, l.lastTerm = index, term
	l.cache, l.cacheData = nil, 0
	l.bytes = 0
	return ops, nil
}

func (l *raftLog) hardStateOp(hs *raftpb.HardState) (storage.Op, error) {
	b, err := proto.Marshal(hs)
	if err != nil {
		return storage.Op{}, err
	}
	l.hs = proto.Clone(hs).(*raftpb.HardState)
	return storage.Put(storage.Raft, storage.HardStateKey(l.rangeID), b), nil
}
