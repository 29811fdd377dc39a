package kvclient

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// ScanOptions shape a Scan.
type ScanOptions struct {
	// Limit caps the number of entries returned in all; 0 means no cap.
	Limit int
	// PageSize caps each page (one call) in entries; 0 means the server's
	// default. Pages also end at the server's byte cap (4 MiB of keys and
	// values, at least one entry).
	PageSize int
	// Reverse returns keys in descending order.
	Reverse bool
	// KeysOnly returns keys without values.
	KeysOnly bool
	// Consistency of every page (default Linearizable).
	Consistency Consistency
	// ReadAt, when set, scans as of that timestamp: each key's newest
	// version written at or before it (a key deleted then is left out),
	// within the cluster's version retention window (an older timestamp
	// fails with an error IsCompacted reports). Every page reads at the
	// same timestamp, so such a scan is one consistent view.
	ReadAt hlc.Timestamp
	// MaxStaleness makes the scan a bounded-staleness read (see the
	// MaxStaleness read option): the nearest node serves its first page at
	// its replica's closed timestamp when at most this old, and every
	// later page reads at that same timestamp (Iterator.ReadAt), so the
	// scan is one consistent view.
	MaxStaleness time.Duration
}

// Iterator walks the entries of a Scan, fetching one page at a time:
//
//	it := c.Scan(ctx, start, end, kvclient.ScanOptions{})
//	for it.Next() {
//		kv := it.KV()
//		...
//	}
//	if err := it.Err(); err != nil { ... }
//
// Each page is read at its own time: a scan over many pages is not one
// snapshot, unless ScanOptions.ReadAt names its timestamp. An Iterator is not safe for concurrent use.
type Iterator struct {
	c          *Client
	ctx        context.Context
	start, end []byte
	opts       ScanOptions
	page       []*kvpb.KeyValue
	pos        int
	cur        KeyValue
	returned   int
	done       bool
	err        error
	servedAt   hlc.Timestamp
}

// ReadAt returns the timestamp a bounded-staleness scan was served at
// (ScanOptions.MaxStaleness), once its first page was fetched; zero when
// the leader served it linearizably or it is not such a scan.
func (it *Iterator) ReadAt() hlc.Timestamp { return it.servedAt }

// Scan returns an iterator over [start, end) (end empty: to the end of the
// keyspace), across ranges. Nothing is fetched until the first Next.
func (c *Client) Scan(ctx context.Context, start, end []byte, opts ScanOptions) *Iterator {
	it := &Iterator{c: c, ctx: ctx, start: start, end: end, opts: opts}
	if opts.Limit < 0 || opts.PageSize < 0 {
		it.err, it.done = fmt.Errorf("client: Scan: negative limit or page size"), true
	}
	if err := checkStaleness(opts.MaxStaleness, opts.Consistency); err != nil {
		it.err, it.done = err, true
	}
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		it.done = true
	}
	return it
}

// Next advances to the next entry; it returns false at the end or on an
// error (see Err).
func (it *Iterator) Next() bool {
	for it.pos >= len(it.page) {
		if it.done || it.err != nil {
			return false
		}
		it.fetch()
	}
	kv := it.page[it.pos]
	it.pos++
	it.returned++
	it.cur = KeyValue{Key: kv.GetKey(), Value: kv.GetValue().GetValue(), Timestamp: timestamp(kv.GetValue().GetTimestamp())}
	if it.opts.Limit > 0 && it.returned >= it.opts.Limit {
		it.done = true
		it.page = it.page[:it.pos]
	}
	return true
}

// KV returns the current entry; valid after Next returned true, until the
// next call of Next.
func (it *Iterator) KV() KeyValue { return it.cur }

// Err returns the error that ended the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// fetch reads the next page.
func (it *Iterator) fetch() {
	limit := it.opts.PageSize
	if it.opts.Limit > 0 {
		rest := it.opts.Limit - it.returned
		if limit == 0 || rest < limit {
			limit = rest
		}
	}
	h := &kvpb.Header{ReadConsistency: it.opts.Consistency.proto(), MaxStalenessNanos: int64(it.opts.MaxStaleness)}
	req := &kvpb.ScanRequest{Header: h, Start: it.start, End: it.end, Limit: uint32(limit), Reverse: it.opts.Reverse, KeysOnly: it.opts.KeysOnly}
	if !it.opts.ReadAt.IsZero() {
		req.ReadAt = it.opts.ReadAt.Proto()
	}
	r := route{key: it.start, slow: true}
	switch {
	case it.opts.MaxStaleness > 0:
		r = route{near: true, slow: true}
	case it.opts.Consistency == Stale:
		r = route{near: true, slow: true}
	case it.opts.Reverse:
		r = route{any: true, slow: true}
	}
	var resp kvpb.ScanResponse
	if err := it.c.invoke(it.ctx, MethodScan, r, h, req, &resp); err != nil {
		it.err = err
		return
	}
	it.page, it.pos = resp.GetKvs(), 0
	if at := timestamp(resp.GetReadAt()); !at.IsZero() && it.opts.ReadAt.IsZero() {
		// Later pages read where the first was served.
		it.opts.ReadAt, it.servedAt = at, at
	}
	resume := resp.GetResumeKey()
	if len(resume) == 0 {
		it.done = true
		return
	}
	// A resume key must move the scan on, or the iteration would loop.
	if it.opts.Reverse {
		if len(it.end) > 0 && bytes.Compare(resume, it.end) >= 0 {
			it.err = fmt.Errorf("client: Scan: reverse resume key %q does not precede end %q", resume, it.end)
			return
		}
		it.end = resume
	} else {
		if bytes.Compare(resume, it.start) <= 0 {
			it.err = fmt.Errorf("client: Scan: resume key %q does not follow start %q", resume, it.start)
			return
		}
		it.start = resume
	}
}

// Collect runs the scan to its end and returns every entry.
func (it *Iterator) Collect() ([]KeyValue, error) {
	var out []KeyValue
	for it.Next() {
		out = append(out, it.KV())
	}
	return out, it.Err()
}
