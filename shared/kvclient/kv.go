package kvclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// Consistency chooses how a read is served.
type Consistency int

const (
	// Linearizable reads (the default) see every write acknowledged
	// before they started: served by the leaseholder, or through ReadIndex.
	Linearizable Consistency = iota
	// Stale reads are served by whichever replica receives them, from its
	// applied state; they may miss recent writes, but any node answers.
	Stale
)

// String returns "linearizable" or "stale".
func (c Consistency) String() string {
	if c == Stale {
		return "stale"
	}
	return "linearizable"
}

// ParseConsistency parses "linearizable" (or "l") and "stale" (or "s",
// "serializable").
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "linearizable", "l", "":
		return Linearizable, nil
	case "stale", "s", "serializable":
		return Stale, nil
	}
	return 0, errors.New("client: consistency must be linearizable or stale")
}

func (c Consistency) proto() kvpb.ReadConsistency {
	if c == Stale {
		return kvpb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return kvpb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// Value is a stored value and the HLC timestamp of the write that made it.
type Value struct {
	Value []byte
	// Timestamp is the HLC timestamp of the write that made this version
	// (the key's modify timestamp).
	Timestamp hlc.Timestamp
	// CreateTimestamp is the timestamp of the write that created the key
	// (its first write since it was last absent); zero from a server
	// that keeps no versions.
	CreateTimestamp hlc.Timestamp
	// Version counts the key's writes since it was created (1 for the
	// creating write); 0 from a server that keeps no versions.
	Version uint64
}

// KeyValue is one entry of a scan. Value is nil for keys-only scans.
type KeyValue struct {
	Key       []byte
	Value     []byte
	Timestamp hlc.Timestamp
}

// ReadOption changes how a read is served.
type ReadOption func(*readOptions)

type readOptions struct {
	consistency Consistency
	at          hlc.Timestamp
	staleness   time.Duration
	servedAt    *hlc.Timestamp
}

// MaxStalenessLimit bounds MaxStaleness (kvpb: raftd refuses more).
const MaxStalenessLimit = 24 * time.Hour

// MaxStaleness makes a read (Get; a Scan takes ScanOptions.MaxStaleness)
// a bounded-staleness read: the nearest node (the first configured address
// that is not suspect) serves it from its replica, leader or not, at the
// replica's closed timestamp when that is at most d old (raftd closes
// timestamps about 3s behind its clock, so d below that falls back to the
// leader), with no round to the leader. The value is exactly the key's
// value at that timestamp, which ServedAt reports; a node whose replica
// cannot serve it sends it to the leader, which serves it the same way or
// linearizably (ServedAt then zero). With ReadAt, a replica serves it at
// that timestamp once its closed timestamp reaches it. d must be positive
// and at most MaxStalenessLimit, and excludes Stale.
func MaxStaleness(d time.Duration) ReadOption {
	return func(o *readOptions) { o.staleness = d }
}

// ServedAt stores in *ts the timestamp a bounded-staleness read was
// served at (zero when the leader served it linearizably).
func ServedAt(ts *hlc.Timestamp) ReadOption {
	return func(o *readOptions) { o.servedAt = ts }
}

// checkStaleness validates a bound (0: none) against c.
func checkStaleness(d time.Duration, c Consistency) error {
	switch {
	case d == 0:
		return nil
	case d < 0:
		return fmt.Errorf("client: max staleness %v is negative", d)
	case d > MaxStalenessLimit:
		return fmt.Errorf("client: max staleness %v exceeds %v", d, MaxStalenessLimit)
	case c == Stale:
		return errors.New("client: max staleness and stale consistency are exclusive")
	}
	return nil
}

// ReadAt reads as of ts (Get; a Scan takes ScanOptions.ReadAt): the newest version of the key written
// at or before ts, within the cluster's version retention window (a few
// hours by default). A timestamp older than the window fails with an
// error IsCompacted reports.
func ReadAt(ts hlc.Timestamp) ReadOption {
	return func(o *readOptions) { o.at = ts }
}

// IsCompacted reports whether err refuses a read at (or a watch from) a
// timestamp older than the version retention window.
func IsCompacted(err error) bool {
	return bus.CodeOf(err) == bus.CodeFailedPrecondition && bus.ReasonOf(err) == kvpb.ReasonCompacted
}

// WithConsistency sets a read's consistency (default Linearizable).
func WithConsistency(c Consistency) ReadOption {
	return func(o *readOptions) { o.consistency = c }
}

func readOpts(opts []ReadOption) readOptions {
	var o readOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// readRoute routes a read of key: to its leader when linearizable, to
// the nearest node when stale.
func readRoute(key []byte, c Consistency) route {
	if c == Stale {
		return route{near: true, hedge: true}
	}
	return route{key: key, pointOp: true, hedge: true}
}

// pointRoute routes a point write of key whose request carries about
// size bytes: to the leader, and bounded by SlowAttemptTimeout when large.
func pointRoute(key []byte, size int) route {
	return route{key: key, pointOp: true, slow: size > LargeRequestBytes}
}

// with returns r making write w.
func (r route) with(w *write) route {
	r.w = w
	return r
}

func timestamp(p *hlcpb.Timestamp) hlc.Timestamp {
	return hlc.Timestamp{WallTime: p.GetWallTime(), Logical: p.GetLogical()}
}

// Get reads key. found is false when the key does not exist.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (v Value, found bool, err error) {
	o := readOpts(opts)
	if err := checkStaleness(o.staleness, o.consistency); err != nil {
		return Value{}, false, err
	}
	h := &kvpb.Header{ReadConsistency: o.consistency.proto(), MaxStalenessNanos: int64(o.staleness)}
	req := &kvpb.GetRequest{Header: h, Key: key}
	if !o.at.IsZero() {
		req.ReadAt = o.at.Proto()
	}
	rt := readRoute(key, o.consistency)
	if o.staleness > 0 {
		rt = route{near: true, hedge: true}
	}
	var resp kvpb.GetResponse
	if err := c.invoke(ctx, MethodGet, rt, h, req, &resp); err != nil {
		return Value{}, false, err
	}
	if o.servedAt != nil {
		*o.servedAt = timestamp(resp.GetReadAt())
	}
	if !resp.GetFound() {
		return Value{}, false, nil
	}
	rv := resp.GetValue()
	return Value{Value: rv.GetValue(), Timestamp: timestamp(rv.GetTimestamp()), CreateTimestamp: timestamp(rv.GetCreateTimestamp()), Version: rv.GetVersion()}, true, nil
}

// Put writes value under key and returns the write's HLC timestamp.
// However often the client retries it, the write applies once; a retry
// of an applied Put returns its original timestamp.
func (c *Client) Put(ctx context.Context, key, value []byte) (hlc.Timestamp, error) {
	w, err := c.beginWrite(ctx)
	if err != nil {
		return hlc.Timestamp{}, fmt.Errorf("client: %s: %w", MethodPut, err)
	}
	defer w.end()
	h := w.header()
	var resp kvpb.PutResponse
	if err := c.invoke(ctx, MethodPut, pointRoute(key, len(key)+len(value)).with(w), h, &kvpb.PutRequest{Header: h, Key: key, Value: value}, &resp); err != nil {
		return hlc.Timestamp{}, err
	}
	ts := timestamp(resp.GetTimestamp())
	c.observeClock(ts, false)
	return ts, nil
}

// Delete deletes key; deleted is false when it did not exist.
func (c *Client) Delete(ctx context.Context, key []byte) (deleted bool, err error) {
	w, err := c.beginWrite(ctx)
	if err != nil {
		return false, fmt.Errorf("client: %s: %w", MethodDelete, err)
	}
	defer w.end()
	h := w.header()
	var resp kvpb.DeleteResponse
	if err := c.invoke(ctx, MethodDelete, route{key: key, pointOp: true, w: w}, h, &kvpb.DeleteRequest{Header: h, Key: key}, &resp); err != nil {
		return false, err
	}
	return resp.GetDeleted(), nil
}

// DeleteRange deletes every key in [start, end) across ranges (end empty:
// to the end of the keyspace) and returns how many it deleted. It is
// atomic per range only; retried, each range deletes once and the count
// is the original one.
func (c *Client) DeleteRange(ctx context.Context, start, end []byte) (uint64, error) {
	w, err := c.beginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("client: %s: %w", MethodDeleteRange, err)
	}
	defer w.end()
	h := w.header()
	var resp kvpb.DeleteRangeResponse
	if err := c.invoke(ctx, MethodDeleteRange, route{key: start, slow: true, w: w}, h, &kvpb.DeleteRangeRequest{Header: h, Start: start, End: end}, &resp); err != nil {
		return 0, err
	}
	return resp.GetDeleted(), nil
}

// CAS is a conditional write of one key: when the key's current value
// matches the expectation, write NewValue (or delete the key).
type CAS struct {
	Key []byte
	// ExpectAbsent requires the key not to exist; otherwise its value
	// must equal Expected.
	ExpectAbsent bool
	Expected     []byte
	// Delete deletes the key on success instead of writing NewValue.
	Delete   bool
	NewValue []byte
}

func (x CAS) proto(h *kvpb.Header) *kvpb.CompareAndSwapRequest {
	return &kvpb.CompareAndSwapRequest{Header: h, Key: x.Key, ExpectAbsent: x.ExpectAbsent, ExpectedValue: x.Expected, Delete: x.Delete, NewValue: x.NewValue}
}

// CASResult is the outcome of a CompareAndSwap.
type CASResult struct {
	// Succeeded is true when the comparison held and the write happened.
	Succeeded bool
	// Current is the value found when the comparison failed;
	// CurrentFound is false when the key did not exist.
	Current      Value
	CurrentFound bool
	// Timestamp is the write's HLC timestamp when it succeeded.
	Timestamp hlc.Timestamp
}

// CompareAndSwap writes or deletes x.Key if its current value matches.
// A failed comparison is not an error: see CASResult.Succeeded. However
// often the client retries it, it applies once: a retry of an applied
// CompareAndSwap returns the original result.
func (c *Client) CompareAndSwap(ctx context.Context, x CAS) (CASResult, error) {
	w, err := c.beginWrite(ctx)
	if err != nil {
		return CASResult{}, fmt.Errorf("client: %s: %w", MethodCompareAndSwap, err)
	}
	defer w.end()
	h := w.header()
	var resp kvpb.CompareAndSwapResponse
	if err := c.invoke(ctx, MethodCompareAndSwap, pointRoute(x.Key, len(x.Key)+len(x.Expected)+len(x.NewValue)).with(w), h, x.proto(h), &resp); err != nil {
		return CASResult{}, err
	}
	r := CASResult{Succeeded: resp.GetSucceeded(), Timestamp: timestamp(resp.GetTimestamp())}
	if cur := resp.GetCurrent(); cur != nil {
		r.Current = Value{Value: cur.GetValue(), Timestamp: timestamp(cur.GetTimestamp())}
		r.CurrentFound = true
	}
	c.observeClock(r.Timestamp, false)
	return r, nil
}
