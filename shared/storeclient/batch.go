package storeclient

import "github.com/pleiades-db/pleiades/shared/proto/storepb"

// Batch builds one atomic write: puts, deletes and range deletions over
// any column families, applied in order by Client.Write. Its zero value is
// empty and ready to use. Reset empties it and keeps its memory, so a hot
// loop reuses one Batch without allocating per operation.
//
// A Batch keeps references to the keys and values passed to it; they must
// not change until the Write that sends them returns. A Batch is not safe
// for concurrent use.
type Batch struct {
	req storepb.WriteRequest
	ops []*storepb.Op
	// Pools reused across Reset; entry i of a pool is in use when i < its n.
	puts  pool[storepb.Op_Put, storepb.Put]
	dels  pool[storepb.Op_Delete, storepb.Delete]
	drs   pool[storepb.Op_DeleteRange, storepb.DeleteRange]
	opsP  []storepb.Op
	spans []storepb.Span
	nOps  int
	nSp   int
	bytes int
}

type pool[W, M any] struct {
	wrappers []W
	msgs     []M
	n        int
}

// next returns the pool's next wrapper and message, growing it if needed.
func (p *pool[W, M]) next() (*W, *M) {
	if p.n == len(p.msgs) {
		p.wrappers = append(p.wrappers, *new(W))
		p.msgs = append(p.msgs, *new(M))
		// append may have moved the arrays: old pointers held by ops stay
		// valid (they point into the old arrays), new ones use the new.
	}
	w, m := &p.wrappers[p.n], &p.msgs[p.n]
	p.n++
	return w, m
}

func (b *Batch) op() *storepb.Op {
	if b.nOps == len(b.opsP) {
		b.opsP = append(b.opsP, storepb.Op{})
	}
	o := &b.opsP[b.nOps]
	b.nOps++
	return o
}

// Put sets key of cf to value.
func (b *Batch) Put(cf CF, key, value []byte) *Batch {
	w, m := b.puts.next()
	m.Cf, m.Key, m.Value = cf, key, value
	w.Put = m
	o := b.op()
	o.Op = w
	b.ops = append(b.ops, o)
	b.bytes += len(key) + len(value)
	return b
}

// Delete removes key of cf.
func (b *Batch) Delete(cf CF, key []byte) *Batch {
	w, m := b.dels.next()
	m.Cf, m.Key = cf, key
	w.Delete = m
	o := b.op()
	o.Op = w
	b.ops = append(b.ops, o)
	b.bytes += len(key)
	return b
}

// DeleteRange removes every key of cf in [start, end); end must be set.
func (b *Batch) DeleteRange(cf CF, start, end []byte) *Batch {
	w, m := b.drs.next()
	if b.nSp == len(b.spans) {
		b.spans = append(b.spans, storepb.Span{})
	}
	sp := &b.spans[b.nSp]
	b.nSp++
	sp.Cf, sp.Start, sp.End = cf, start, end
	m.Span = sp
	w.DeleteRange = m
	o := b.op()
	o.Op = w
	b.ops = append(b.ops, o)
	b.bytes += len(start) + len(end)
	return b
}

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Bytes returns the key and value bytes in the batch.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties the batch, keeping its memory for reuse.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
	b.puts.n, b.dels.n, b.drs.n, b.nOps, b.nSp, b.bytes = 0, 0, 0, 0, 0, 0
}
