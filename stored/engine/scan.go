package engine

import (
	"bytes"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// KV is one entry.
type KV struct {
	Key, Value []byte
}

// ScanOptions bound one Scan page.
type ScanOptions struct {
	// Limit caps the entries returned; 0 means DefaultScanLimit.
	Limit int
	// MaxBytes caps the key and value bytes returned (at least one entry
	// is returned); 0 means DefaultScanBytes.
	MaxBytes int
	// Reverse scans from the end of the span down.
	Reverse bool
	// KeysOnly leaves values nil.
	KeysOnly bool
	// Snapshot, if set, reads at it instead of the latest state.
	Snapshot *Snapshot
}

// Page defaults.
const (
	DefaultScanLimit = 1000
	DefaultScanBytes = 1 << 20
)

// Page is one Scan answer.
type Page struct {
	KVs []KV
	// More reports that the span holds further entries; Resume is then
	// where the next page starts: the next span's Start for a forward scan
	// (the first key not returned), its End for a reverse scan (the last
	// key returned, End being exclusive).
	More   bool
	Resume []byte
}

// Scan reads one page of span.
func (e *Engine) Scan(span Span, o ScanOptions) (Page, error) {
	if err := e.checkSpan("scan", span, false); err != nil {
		return Page{}, err
	}
	if o.Limit < 0 || o.MaxBytes < 0 {
		return Page{}, invalidf("scan: negative limit")
	}
	limit, maxBytes := o.Limit, o.MaxBytes
	if limit == 0 {
		limit = DefaultScanLimit
	}
	if maxBytes == 0 {
		maxBytes = DefaultScanBytes
	}
	if err := e.enter(); err != nil {
		return Page{}, err
	}
	defer e.closeMu.RUnlock()
	it, err := e.newIter(span, o.Snapshot)
	if err != nil {
		return Page{}, err
	}
	defer it.close()
	var p Page
	var a arena
	size := 0
	it.first(o.Reverse)
	c := newCursor(it.it, o.Reverse, o.KeysOnly)
	for ok := c.load(); ok; ok = c.step() {
		if len(p.KVs) >= limit || (len(p.KVs) > 0 && size >= maxBytes) {
			p.More = true
			if o.Reverse {
				p.Resume = p.KVs[len(p.KVs)-1].Key
			} else {
				p.Resume = bytes.Clone(c.key())
			}
			break
		}
		kv := KV{Key: a.copy(c.key()), Value: a.copy(c.value())}
		size += len(kv.Key) + len(kv.Value)
		p.KVs = append(p.KVs, kv)
	}
	if err := it.it.Err(); err != nil {
		return Page{}, fmt.Errorf("engine: scan: %w", err)
	}
	return p, nil
}

// iter is a bounded RocksDB iterator; the caller holds closeMu shared
// (and, with a snapshot, the snapshot's read lock until close).
type iter struct {
	it   *grocksdb.Iterator
	ro   *grocksdb.ReadOptions
	snap *Snapshot
	span Span
}

func (e *Engine) newIter(span Span, snap *Snapshot) (*iter, error) {
	if snap != nil {
		snap.mu.RLock()
		if snap.e != e || snap.released.Load() {
			snap.mu.RUnlock()
			if snap.e != e {
				return nil, invalidf("snapshot of another engine")
			}
			return nil, ErrReleased
		}
	}
	ro := grocksdb.NewDefaultReadOptions()
	if snap != nil {
		ro.SetSnapshot(snap.s)
	}
	if len(span.Start) > 0 {
		ro.SetIterateLowerBound(span.Start)
	}
	if len(span.End) > 0 {
		ro.SetIterateUpperBound(span.End)
	}
	ro.SetFillCache(true)
	return &iter{it: e.db.NewIteratorCF(ro, e.cfs[span.CF]), ro: ro, snap: snap, span: span}, nil
}

func (it *iter) first(reverse bool) {
	switch {
	case reverse:
		it.it.SeekToLast()
	case len(it.span.Start) > 0:
		it.it.Seek(it.span.Start)
	default:
		it.it.SeekToFirst()
	}
}

func (it *iter) close() {
	it.it.Close()
	it.ro.Destroy()
	if it.snap != nil {
		it.snap.mu.RUnlock()
	}
}

// Stream calls fn with successive chunks of span in ascending key order,
// each about chunkBytes of keys and values (0: DefaultScanBytes), at snap
// or, if nil, at an implicit snapshot taken at the call. fn owns each
// chunk; an error from fn (or from stop, if not nil, checked before each
// chunk) ends the stream and is returned.
func (e *Engine) Stream(span Span, snap *Snapshot, chunkBytes int, stop func() error, fn func([]KV) error) error {
	if err := e.checkSpan("stream", span, false); err != nil {
		return err
	}
	if chunkBytes < 0 {
		return invalidf("stream: negative chunk size")
	}
	if chunkBytes == 0 {
		chunkBytes = DefaultScanBytes
	}
	if stop == nil {
		stop = func() error { return nil }
	}
	if snap == nil {
		s, err := e.NewSnapshot()
		if err != nil {
			return err
		}
		defer s.Release()
		snap = s
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	it, err := e.newIter(span, snap)
	if err != nil {
		return err
	}
	defer it.close()
	var chunk []KV
	var a arena
	size := 0
	it.first(false)
	c := newCursor(it.it, false, false)
	for ok := c.load(); ok; ok = c.step() {
		kv := KV{Key: a.copy(c.key()), Value: a.copy(c.value())}
		chunk = append(chunk, kv)
		size += len(kv.Key) + len(kv.Value)
		if size >= chunkBytes {
			if err := stop(); err != nil {
				return err
			}
			if err := fn(chunk); err != nil {
				return err
			}
			chunk, size, a = nil, 0, arena{}
		}
	}
	if err := it.it.Err(); err != nil {
		return fmt.Errorf("engine: stream: %w", err)
	}
	if len(chunk) > 0 {
		return fn(chunk)
	}
	return nil
}

// arena copies many small byte slices into a few large allocations; the
// copies stay valid after the arena grows (they keep the old buffer).
type arena struct{ buf []byte }

const arenaBlock = 32 << 10

func (a *arena) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) > arenaBlock/4 {
		return bytes.Clone(b)
	}
	if len(a.buf)+len(b) > cap(a.buf) {
		a.buf = make([]byte, 0, arenaBlock)
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[n : n+len(b) : n+len(b)]
}
