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
	for _, cf := range []CF{Local, Raft, Data} {
		m.mu.cur[cf] = btree.NewG(16, less)
		m.mu.durable[cf] = m.mu.cur[cf].Clone()
	}
	return m
}

func validCF(cf CF) error {
	if cf < Local || cf > Data {
		return fmt.Errorf("storage: unknown column family %d", cf)
	}
	return nil
}

// Write implements Engine.
func (m *Mem) Write(ctx context.Context, ops []Op, sync bool) error {
	for _, op := range ops {
		if err := validCF(op.CF); err != nil {
			return err
		}
		if op.Kind == OpDeleteRange && op.End == nil {
			return fmt.Errorf("storage: delete range without end")
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
			t.AscendRange(item{key: op.Key}, item{key: op.End}, func(it item) bool {
				del = append(del, it.key)
				return true
			})
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

// Scan implements Engine.
func (m *Mem) Scan(ctx context.Context, cf CF, start, end []byte, limit int, reverse bool) ([]KV, error) {
	if err := validCF(cf); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []KV
	visit := func(it item) bool {
		if bytes.Compare(it.key, start) < 0 || (end != nil && bytes.Compare(it.key, end) >= 0) {
			return !reverse || bytes.Compare(it.key, start) >= 0
		}
		out = append(out, KV{Key: bytes.Clone(it.key), Value: bytes.Clone(it.value)})
		return limit == 0 || len(out) < limit
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
