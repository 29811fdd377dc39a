package engine

import (
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// Batch is one atomic write: puts, deletes and range deletions over any
// column families, applied in order by Engine.Write. Each operation is
// validated when added; the first invalid one marks the batch, and Write
// refuses a marked batch whole, so a rejected batch leaves no trace.
// Close a batch when done (it holds C memory); Reset reuses it. A Batch
// is not safe for concurrent use.
type Batch struct {
	e     *Engine
	limit int
	wb    *grocksdb.WriteBatch
	err   error
	bytes int
	n     int
}

// NewBatch returns an empty batch for e, bounded by Options.MaxBatchBytes.
func (e *Engine) NewBatch() *Batch { return e.NewBatchLimit(e.opts.MaxBatchBytes) }

// NewBatchLimit returns an empty batch bounded by maxBytes instead of
// Options.MaxBatchBytes, for bulk writes such as a range ingest.
func (e *Engine) NewBatchLimit(maxBytes int) *Batch {
	return &Batch{e: e, limit: maxBytes, wb: grocksdb.NewWriteBatch()}
}

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = fmt.Errorf("operation %d: %w", b.n, err)
	}
}

func (b *Batch) grow(n int) bool {
	b.bytes += n
	if b.bytes > b.limit {
		b.fail(invalidf("batch exceeds the limit of %d bytes", b.limit))
		return false
	}
	return true
}

// Put sets key of cf to value.
func (b *Batch) Put(cf CF, key, value []byte) {
	defer func() { b.n++ }()
	if b.err != nil {
		return
	}
	if err := checkCF("put", cf); err != nil {
		b.fail(err)
		return
	}
	if err := b.e.checkKey("put", key); err != nil {
		b.fail(err)
		return
	}
	if len(value) > b.e.opts.MaxValueBytes {
		b.fail(invalidf("put: value of %d bytes exceeds the limit of %d", len(value), b.e.opts.MaxValueBytes))
		return
	}
	if b.grow(len(key) + len(value)) {
		b.wb.PutCF(b.e.cfs[cf], key, value)
	}
}

// Delete removes key of cf.
func (b *Batch) Delete(cf CF, key []byte) {
	defer func() { b.n++ }()
	if b.err != nil {
		return
	}
	if err := checkCF("delete", cf); err != nil {
		b.fail(err)
		return
	}
	if err := b.e.checkKey("delete", key); err != nil {
		b.fail(err)
		return
	}
	if b.grow(len(key)) {
		b.wb.DeleteCF(b.e.cfs[cf], key)
	}
}

// DeleteRange removes every key of span; span.End must be set and an
// empty Start means the family's beginning.
func (b *Batch) DeleteRange(span Span) {
	defer func() { b.n++ }()
	if b.err != nil {
		return
	}
	if err := b.e.checkSpan("delete range", span, true); err != nil {
		b.fail(err)
		return
	}
	if b.grow(len(span.Start) + len(span.End)) {
		b.wb.DeleteRangeCF(b.e.cfs[span.CF], span.Start, span.End)
	}
}

// Err returns the first invalid operation's error, if any.
func (b *Batch) Err() error { return b.err }

// Len returns the number of operations added.
func (b *Batch) Len() int { return b.n }

// Bytes returns the key and value bytes added.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties the batch and clears its error.
func (b *Batch) Reset() {
	b.wb.Clear()
	b.err, b.bytes, b.n = nil, 0, 0
}

// Close frees the batch; it is idempotent.
func (b *Batch) Close() {
	if b.wb != nil {
		b.wb.Destroy()
		b.wb = nil
	}
}

// Write applies b atomically. With sync it returns once the write is in
// the fsynced WAL; concurrent sync writes share one fsync (see the
// package doc on group commit). A write without sync never waits for an
// fsync. It returns the sequence number after the write.
//
// HAZARD: a sync write becomes visible to readers when it is applied,
// just before its WAL fsync; a crash in between loses a write that a
// reader may have seen, but never one whose Write returned.
func (e *Engine) Write(b *Batch, sync bool) (uint64, error) {
	if b.e != e {
		return 0, invalidf("write: batch of another engine")
	}
	if b.err != nil {
		return 0, fmt.Errorf("write: %w", b.err)
	}
	if b.wb == nil {
		return 0, invalidf("write: batch is closed")
	}
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	if err := e.syncer.failed(); err != nil {
		return 0, err
	}
	if err := e.db.Write(e.woAsync, b.wb); err != nil {
		return 0, fmt.Errorf("engine: write: %w", err)
	}
	seq := e.db.GetLatestSequenceNumber()
	e.writes.Add(1)
	if !sync {
		return seq, nil
	}
	e.syncWrites.Add(1)
	if err := e.syncer.sync(); err != nil {
		return 0, err
	}
	return seq, nil
}
