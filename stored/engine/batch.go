package engine

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/linxGnu/grocksdb"
)

// Batch is one atomic write: puts, deletes and range deletions over any
// column families, applied in order by Engine.Write. Each operation is
// validated when added; the first invalid one marks the batch, and Write
// refuses a marked batch whole, so a rejected batch leaves no trace.
//
// A Batch is encoded in Go memory in RocksDB's WriteBatch format and
// handed to RocksDB in one call by Write, so building one costs no cgo
// calls and touches no RocksDB state (it is safe even while the engine
// closes). Reset reuses its memory. A Batch is not safe for concurrent
// use.
type Batch struct {
	e     *Engine
	limit int
	rep   []byte
	err   error
	bytes int
	n     int
}

// WriteBatch record tags (RocksDB db/dbformat.h, ValueType) for records
// naming their column family.
const (
	tagCFDeletion      = 0x4
	tagCFValue         = 0x5
	tagCFRangeDeletion = 0xE
	// batchHeader is the 8-byte sequence number and the 4-byte count.
	batchHeader = 12
)

// NewBatch returns an empty batch for e, bounded by Options.MaxBatchBytes.
func (e *Engine) NewBatch() *Batch { return e.NewBatchLimit(e.opts.MaxBatchBytes) }

// NewBatchLimit returns an empty batch bounded by maxBytes instead of
// Options.MaxBatchBytes, for bulk writes such as a range ingest.
func (e *Engine) NewBatchLimit(maxBytes int) *Batch {
	return &Batch{e: e, limit: maxBytes, rep: make([]byte, batchHeader, 256)}
}

// open reports whether operations may be added: no error yet and not
// closed.
func (b *Batch) open() bool {
	if b.err == nil && b.rep == nil {
		b.fail(invalidf("batch is closed"))
	}
	return b.err == nil
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

// record appends one record: tag, column family id, then each field as a
// length-prefixed string, and counts it in the header.
func (b *Batch) record(tag byte, cf CF, fields ...[]byte) {
	b.rep = append(b.rep, tag)
	b.rep = binary.AppendUvarint(b.rep, uint64(b.e.cfIDs[cf]))
	for _, f := range fields {
		b.rep = binary.AppendUvarint(b.rep, uint64(len(f)))
		b.rep = append(b.rep, f...)
	}
	binary.LittleEndian.PutUint32(b.rep[8:batchHeader], binary.LittleEndian.Uint32(b.rep[8:batchHeader])+1)
}

// Put sets key of cf to value.
func (b *Batch) Put(cf CF, key, value []byte) {
	defer func() { b.n++ }()
	if !b.open() {
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
		b.record(tagCFValue, cf, key, value)
	}
}

// Delete removes key of cf.
func (b *Batch) Delete(cf CF, key []byte) {
	defer func() { b.n++ }()
	if !b.open() {
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
		b.record(tagCFDeletion, cf, key)
	}
}

// DeleteRange removes every key of span; span.End must be set and an
// empty Start means the family's beginning.
func (b *Batch) DeleteRange(span Span) {
	defer func() { b.n++ }()
	if !b.open() {
		return
	}
	if err := b.e.checkSpan("delete range", span, true); err != nil {
		b.fail(err)
		return
	}
	if b.grow(len(span.Start) + len(span.End)) {
		b.record(tagCFRangeDeletion, span.CF, span.Start, span.End)
	}
}

// Grow makes room for about n more bytes of operations (each costs its key
// and value plus a few bytes), sparing reallocations while a batch of
// known size is built.
func (b *Batch) Grow(n int) {
	if b.rep != nil && n > 0 {
		b.rep = slices.Grow(b.rep, n)
	}
}

// Err returns the first invalid operation's error, if any.
func (b *Batch) Err() error { return b.err }

// Len returns the number of operations added.
func (b *Batch) Len() int { return b.n }

// Bytes returns the key and value bytes added.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties the batch and clears its error, keeping its memory; a
// closed batch becomes usable again.
func (b *Batch) Reset() {
	if b.rep == nil {
		b.rep = make([]byte, batchHeader, 256)
	}
	clear(b.rep[:batchHeader])
	b.rep = b.rep[:batchHeader]
	b.err, b.bytes, b.n = nil, 0, 0
}

// Close drops the batch's memory; later operations on it are refused.
// Calling it is optional (a Batch holds Go memory only).
func (b *Batch) Close() {
	b.rep = nil
}

// Write applies b atomically. With sync it returns once the write is in
// the fsynced WAL; concurrent sync writes are merged into one RocksDB
// write and share one fsync (see the package doc on group commit). A
// write without sync never waits for an fsync. It returns RocksDB's
// latest sequence number after the write (concurrent writes may have
// raised it further).
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
	if b.rep == nil {
		return 0, invalidf("write: batch is closed")
	}
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	if sync {
		if err := e.syncer.commit(b.rep); err != nil {
			return 0, noSpace(err)
		}
	} else {
		if err := e.syncer.failed(); err != nil {
			return 0, err
		}
		wb := grocksdb.WriteBatchFrom(b.rep)
		err := e.db.Write(e.woAsync, wb)
		wb.Destroy()
		if err != nil {
			return 0, noSpace(fmt.Errorf("engine: write: %w", err))
		}
	}
	e.writes.Add(1)
	seq := e.db.GetLatestSequenceNumber()
	return seq, nil
}
