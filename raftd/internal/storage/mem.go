package storage

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/google/btree"
)

type item struct {
	key, value []byte
}

func less(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 }

// Mem is an in-memory Engine that can simulate a crash. The zero value is
// not usable; call NewMem.
type Mem struct {
	mu struct {
		sync.Mutex
		cur, durable map[CF]*btree.BTreeG[item]
		failErr      error
		writes       int
		syncs        int
	}
}

// NewMem returns an empty in-memory engine.
func NewMem() *Mem {
	m := &Mem{}
	m.mu.cur = map[CF]*btree.BTreeG[item]{}
	m.mu.durable = map[CF]*btree.BTreeG[item]{}
	for _, cf := range []CF{Local, Raft, Data, Versions} {
		m.mu.cur[cf] = btree.NewG(16, less)
		m.mu.durable[cf] = m.mu.cur[cf].Clone()
	}
	return m
}

// validCF refuses a column family stored does not have.
func validCF(cf CF) error {
	if cf < Local || cf > Versions {
		return fmt.Errorf("storage: unknown column family %d", cf)
	}
	return nil
}

// WriteReserve implements Engine: Mem has no free-space floor, so it is
// Write.
func (m *Mem) WriteReserve(ctx context.Context, ops []Op, sync bool) error {
	return m.Write(ctx, ops, sync)
}

// Write implements Engine.
func (m *Mem) Write(ctx context.Context, ops []Op, sync bool) error {
	for _, op := range ops {
		if err := validCF(op.CF); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.failErr != nil {
		return m.mu.failErr
	}
	m.mu.writes++
	for _, op := range ops {
		t := m.mu.cur[op.CF]
		switch op.Kind {
		case OpPut:
			t.ReplaceOrInsert(item{key: bytes.Clone(op.Key), value: bytes.Clone(op.Value)})
		case OpDelete:
			t.Delete(item{key: op.Key})
		case OpDeleteRange:
			var del [][]byte
			collect := func(it item) bool {
				del = append(del, it.key)
				return true
			}
			if op.End == nil {
				t.AscendGreaterOrEqual(item{key: op.Key}, collect)
			} else {
				t.AscendRange(item{key: op.Key}, item{key: op.End}, collect)
			}
			for _, k := range del {
				t.Delete(item{key: k})
			}
		default:
			return fmt.Errorf("storage: unknown op kind %d", op.Kind)
		}
	}
	if sync {
		m.mu.syncs++
		for cf, t := range m.mu.cur {
			m.mu.durable[cf] = t.Clone()
		}
	}
	return nil
}

// Get implements Engine.
func (m *Mem) Get(ctx context.Context, cf CF, key []byte) ([]byte, bool, error) {
	if err := validCF(cf); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.mu.cur[cf].Get(item{key: key})
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(it.value), true, nil
}

// MultiGet implements Engine.
func (m *Mem) MultiGet(ctx context.Context, cf CF, keys [][]byte) ([][]byte, []bool, error) {
	if err := validCF(cf); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	for i, k := range keys {
		if it, ok := m.mu.cur[cf].Get(item{key: k}); ok {
			values[i], found[i] = bytes.Clone(it.value), true
		}
	}
	return values, found, nil
}

// ApproximateSize implements Engine: the keys and values in the span.
func (m *Mem) ApproximateSize(ctx context.Context, cf CF, start, end []byte) (uint64, error) {
	if err := validCF(cf); err != nil {
		return 0, err
	}
	if end != nil && bytes.Compare(start, end) > 0 {
		return 0, fmt.Errorf("storage: span start %q after its end %q", start, end)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	m.mu.cur[cf].AscendGreaterOrEqual(item{key: start}, func(it item) bool {
		if end != nil && bytes.Compare(it.key, end) >= 0 {
			return false
		}
		n += uint64(len(it.key) + len(it.value))
		return true
	})
	return n, nil
}

// Scan implements Engine.
func (m *Mem) Scan(ctx context.Context, cf CF, start, end []byte, opts ScanOptions) ([]KV, error) {
	limit, maxBytes, reverse := opts.Limit, opts.MaxBytes, opts.Reverse
	if err := validCF(cf); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []KV
	size := 0
	visit := func(it item) bool {
		if bytes.Compare(it.key, start) < 0 || (end != nil && bytes.Compare(it.key, end) >= 0) {
			return !reverse || bytes.Compare(it.key, start) >= 0
		}
		kv := KV{Key: bytes.Clone(it.key)}
		if !opts.KeysOnly {
			kv.Value = bytes.Clone(it.value)
		}
		out = append(out, kv)
		size += len(it.key) + len(it.value)
		return (limit == 0 || len(out) < limit) && (maxBytes == 0 || size < maxBytes)
	}
	t := m.mu.cur[cf]
	if reverse {
		if end == nil {
			t.Descend(visit)
		} else {
			t.DescendLessOrEqual(item{key: end}, visit)
		}
	} else {
		t.AscendGreaterOrEqual(item{key: start}, visit)
	}
	return out, nil
}

// Crash drops every write that was not made durable by a synced write, as
// a power loss would.
func (m *Mem) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for cf, t := range m.mu.durable {
		m.mu.cur[cf] = t.Clone()
	}
}

// FailWrites makes every later Write fail with err (nil restores).
func (m *Mem) FailWrites(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.failErr = err
}

// Stats returns how many writes and synced writes the engine took.
func (m *Mem) Stats() (writes, syncs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.writes, m.mu.syncs
}

// memChunkBytes is Mem's default StreamRange chunk size.
const memChunkBytes = 64 << 10

type memSnapshot struct {
	trees map[CF]*btree.BTreeG[item]
}

// OpenSnapshot implements Engine: a copy-on-write clone of the current
// state.
func (m *Mem) OpenSnapshot(ctx context.Context) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &memSnapshot{trees: map[CF]*btree.BTreeG[item]{}}
	for cf, t := range m.mu.cur {
		s.trees[cf] = t.Clone()
	}
	return s, nil
}

func (s *memSnapshot) Get(ctx context.Context, cf CF, key []byte) ([]byte, bool, error) {
	if err := validCF(cf); err != nil {
		return nil, false, err
	}
	it, ok := s.trees[cf].Get(item{key: key})
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(it.value), true, nil
}

func (s *memSnapshot) StreamRange(ctx context.Context, cf CF, start, end []byte, chunkBytes int, fn func([]KV) error) error {
	if err := validCF(cf); err != nil {
		return err
	}
	if chunkBytes <= 0 {
		chunkBytes = memChunkBytes
	}
	var chunk []KV
	size := 0
	var ferr error
	s.trees[cf].AscendGreaterOrEqual(item{key: start}, func(it item) bool {
		if end != nil && bytes.Compare(it.key, end) >= 0 {
			return false
		}
		if err := ctx.Err(); err != nil {
			ferr = err
			return false
		}
		chunk = append(chunk, KV{Key: bytes.Clone(it.key), Value: bytes.Clone(it.value)})
		size += len(it.key) + len(it.value)
		if size >= chunkBytes {
			ferr = fn(chunk)
			chunk, size = nil, 0
		}
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	if len(chunk) > 0 {
		return fn(chunk)
	}
	return nil
}

func (s *memSnapshot) Release(ctx context.Context) error { return nil }

type memIngest struct {
	m          *Mem
	cf         CF
	start, end []byte
	kvs        []KV
	done       bool
}

// IngestRange implements Engine. Finish respects FailWrites and is synced.
func (m *Mem) IngestRange(ctx context.Context, cf CF, start, end []byte) (Ingest, error) {
	if err := validCF(cf); err != nil {
		return nil, err
	}
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil, fmt.Errorf("storage: empty ingest span [%q, %q)", start, end)
	}
	return &memIngest{m: m, cf: cf, start: bytes.Clone(start), end: bytes.Clone(end)}, nil
}

func (in *memIngest) Add(ctx context.Context, kvs ...KV) error {
	if in.done {
		return fmt.Errorf("storage: ingest session ended")
	}
	for _, kv := range kvs {
		if bytes.Compare(kv.Key, in.start) < 0 || (in.end != nil && bytes.Compare(kv.Key, in.end) >= 0) {
			return fmt.Errorf("storage: ingest key %q outside the span", kv.Key)
		}
		if n := len(in.kvs); n > 0 && bytes.Compare(in.kvs[n-1].Key, kv.Key) >= 0 {
			return fmt.Errorf("storage: ingest key %q not above %q", kv.Key, in.kvs[n-1].Key)
		}
		in.kvs = append(in.kvs, KV{Key: bytes.Clone(kv.Key), Value: bytes.Clone(kv.Value)})
	}
	return nil
}

func (in *memIngest) Finish(ctx context.Context) error {
	if in.done {
		return fmt.Errorf("storage: ingest session ended")
	}
	in.done = true
	m := in.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.failErr != nil {
		return m.mu.failErr
	}
	m.mu.writes++
	t := m.mu.cur[in.cf]
	var del [][]byte
	t.AscendGreaterOrEqual(item{key: in.start}, func(it item) bool {
		if in.end != nil && bytes.Compare(it.key, in.end) >= 0 {
			return false
		}
		del = append(del, it.key)
		return true
	})
	for _, k := range del {
		t.Delete(item{key: k})
	}
	for _, kv := range in.kvs {
		t.ReplaceOrInsert(item{key: kv.Key, value: kv.Value})
	}
	in.kvs = nil
	m.mu.syncs++
	for cf, t := range m.mu.cur {
		m.mu.durable[cf] = t.Clone()
	}
	return nil
}

func (in *memIngest) Abort(ctx context.Context) error {
	in.done, in.kvs = true, nil
	return nil
}
