package storeclient

import "github.com/pleiades-db/pleiades/shared/proto/storepb"

// Batch builds one atomic write: puts, deletes and range deletions over
// any column families, applied in order by Client.Write. Its zero value is
// empty and ready to use. Operations are packed into one buffer as they
// are added (keys and values are copied, so the caller may reuse its
// buffers at once); Reset empties the batch and keeps the buffer, so a hot
// loop reuses one Batch without allocating. A Batch is not safe for
// concurrent use.
type Batch struct {
	packed []byte
	n      int
	bytes  int
}

// Put sets key of cf to value.
func (b *Batch) Put(cf CF, key, value []byte) *Batch {
	b.packed = storepb.AppendPut(b.packed, cf, key, value)
	b.n++
	b.bytes += len(key) + len(value)
	return b
}

// Delete removes key of cf.
func (b *Batch) Delete(cf CF, key []byte) *Batch {
	b.packed = storepb.AppendDelete(b.packed, cf, key)
	b.n++
	b.bytes += len(key)
	return b
}

// DeleteRange removes every key of cf in [start, end); end must be set.
func (b *Batch) DeleteRange(cf CF, start, end []byte) *Batch {
	b.packed = storepb.AppendDeleteRange(b.packed, cf, start, end)
	b.n++
	b.bytes += len(start) + len(end)
	return b
}

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return b.n }

// Bytes returns the key and value bytes in the batch.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties the batch, keeping its memory for reuse.
func (b *Batch) Reset() {
	b.packed, b.n, b.bytes = b.packed[:0], 0, 0
}
