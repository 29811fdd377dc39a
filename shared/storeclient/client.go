package storeclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Method names of stored's bus protocol (wire.ProtoStore).
const (
	MethodGet             = "Get"
	MethodMultiGet        = "MultiGet"
	MethodScan            = "Scan"
	MethodWrite           = "Write"
	MethodOpenSnapshot    = "OpenSnapshot"
	MethodReleaseSnapshot = "ReleaseSnapshot"
	MethodStreamRange     = "StreamRange"
	MethodIngestRange     = "IngestRange"
	MethodApproximateSize = "ApproximateSize"
	MethodCompact         = "Compact"
	MethodCheckpoint      = "Checkpoint"
	MethodStats           = "Stats"
	MethodWatchDisk       = "WatchDisk"
)

// CF names a column family.
type CF = storepb.ColumnFamily

// The column families of stored.
const (
	Local = storepb.ColumnFamily_COLUMN_FAMILY_LOCAL
	Raft  = storepb.ColumnFamily_COLUMN_FAMILY_RAFT
	Data  = storepb.ColumnFamily_COLUMN_FAMILY_DATA
	// Versions holds the versions of range data (raftd's MVCC history).
	Versions = storepb.ColumnFamily_COLUMN_FAMILY_VERSIONS
)

// Span is the half-open key interval [Start, End) of one column family.
// An empty Start is the family's beginning, an empty End its end.
type Span struct {
	CF         CF
	Start, End []byte
}

func (s Span) proto() *storepb.Span {
	return &storepb.Span{Cf: s.CF, Start: s.Start, End: s.End}
}

// KV is one entry.
type KV struct {
	Key, Value []byte
}

// Result is the outcome of reading one key.
type Result struct {
	Value []byte
	Found bool
}

// ScanOptions shape one Scan page.
type ScanOptions struct {
	// Limit caps the entries of a page; 0 means the server default.
	Limit int
	// MaxBytes caps the key and value bytes of a page; 0 means the server
	// default. A page always holds at least one entry.
	MaxBytes int
	// Reverse scans from the end of the span down.
	Reverse bool
	// KeysOnly leaves values empty.
	KeysOnly bool
}

// Page is one Scan answer.
type Page struct {
	KVs []KV
	// More reports that the span holds further entries; Resume is where
	// the next page starts (the next span's Start for a forward scan, its
	// End for a reverse one).
	More   bool
	Resume []byte
}

// Client calls one stored over a bus. It is safe for concurrent use.
type Client struct {
	b    *bus.Bus
	addr string
}

// New returns a client of the stored at addr, calling through b.
func New(b *bus.Bus, addr string) *Client { return &Client{b: b, addr: addr} }

// Addr returns the stored's bus address.
func (c *Client) Addr() string { return c.addr }

func (c *Client) call(ctx context.Context, method string, req, resp proto.Message) error {
	if err := c.b.Call(ctx, c.addr, wire.ProtoStore, method, req, resp); err != nil {
		return fmt.Errorf("storeclient: %s: %w", method, err)
	}
	return nil
}

// Get reads key of cf at the latest state.
func (c *Client) Get(ctx context.Context, cf CF, key []byte) (value []byte, found bool, err error) {
	return c.get(ctx, 0, cf, key)
}

func (c *Client) get(ctx context.Context, snap uint64, cf CF, key []byte) ([]byte, bool, error) {
	var resp storepb.GetResponse
	if err := c.call(ctx, MethodGet, &storepb.GetRequest{Cf: cf, Key: key, SnapshotId: snap}, &resp); err != nil {
		return nil, false, err
	}
	return resp.Value, resp.Found, nil
}

// MultiGet reads keys of cf at the latest state; the results are in the
// order of keys.
func (c *Client) MultiGet(ctx context.Context, cf CF, keys [][]byte) ([]Result, error) {
	return c.multiGet(ctx, 0, cf, keys)
}

func (c *Client) multiGet(ctx context.Context, snap uint64, cf CF, keys [][]byte) ([]Result, error) {
	var resp storepb.MultiGetResponse
	if err := c.call(ctx, MethodMultiGet, &storepb.MultiGetRequest{Cf: cf, Keys: keys, SnapshotId: snap}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Results) != len(keys) {
		return nil, fmt.Errorf("storeclient: MultiGet: %d results for %d keys", len(resp.Results), len(keys))
	}
	out := make([]Result, len(keys))
	for i, r := range resp.Results {
		out[i] = Result{Value: r.Value, Found: r.Found}
	}
	return out, nil
}

// Scan reads one page of span at the latest state.
func (c *Client) Scan(ctx context.Context, span Span, opts ScanOptions) (Page, error) {
	return c.scan(ctx, 0, span, opts)
}

func (c *Client) scan(ctx context.Context, snap uint64, span Span, opts ScanOptions) (Page, error) {
	if opts.Limit < 0 || opts.MaxBytes < 0 {
		return Page{}, errors.New("storeclient: Scan: negative limit")
	}
	req := storepb.ScanRequest{
		Span: span.proto(), Limit: uint32(opts.Limit), MaxBytes: uint32(opts.MaxBytes),
		Reverse: opts.Reverse, KeysOnly: opts.KeysOnly, SnapshotId: snap, Packed: true,
	}
	var resp storepb.ScanResponse
	if err := c.call(ctx, MethodScan, &req, &resp); err != nil {
		return Page{}, err
	}
	kvs, err := kvsFrom(resp.Kvs, resp.Packed)
	if err != nil {
		return Page{}, fmt.Errorf("storeclient: Scan: %w", err)
	}
	return Page{KVs: kvs, More: resp.More, Resume: resp.ResumeKey}, nil
}

// kvsFrom returns the entries of an answer: packed if the server packed
// them (it does when asked), else the message list. Packed entries alias
// packed, which the answer owns.
func kvsFrom(kvs []*storepb.KeyValue, packed []byte) ([]KV, error) {
	if len(packed) == 0 {
		out := make([]KV, len(kvs))
		for i, kv := range kvs {
			out[i] = KV{Key: kv.Key, Value: kv.Value}
		}
		return out, nil
	}
	n, err := storepb.CountPacked(packed)
	if err != nil {
		return nil, err
	}
	out := make([]KV, n)
	for i := range out {
		out[i].Key, out[i].Value, packed, _ = storepb.NextPacked(packed)
	}
	return out, nil
}

// Iterator walks every entry of a span page by page:
//
//	it := c.Iterator(span, storeclient.ScanOptions{})
//	for it.Next(ctx) {
//		kv := it.KV()
//	}
//	if err := it.Err(); err != nil { ... }
//
// Without a snapshot, each page reads the latest state, so entries written
// during the walk may or may not be seen; iterate a Snapshot for one view.
type Iterator struct {
	c    *Client
	snap uint64
	span Span
	opts ScanOptions
	page []KV
	i    int
	more bool
	err  error
	kv   KV
}

// Iterator returns an iterator over span at the latest state.
func (c *Client) Iterator(span Span, opts ScanOptions) *Iterator {
	return &Iterator{c: c, span: span, opts: opts, more: true, i: -1}
}

// Next advances to the next entry, fetching a page when needed; it returns
// false at the end of the span or on an error (see Err).
func (it *Iterator) Next(ctx context.Context) bool {
	if it.err != nil {
		return false
	}
	it.i++
	for it.i >= len(it.page) {
		if !it.more {
			return false
		}
		p, err := it.c.scan(ctx, it.snap, it.span, it.opts)
		if err != nil {
			it.err = err
			return false
		}
		it.page, it.i, it.more = p.KVs, 0, p.More
		if p.More {
			if it.opts.Reverse {
				it.span.End = p.Resume
			} else {
				it.span.Start = p.Resume
			}
		}
	}
	it.kv = it.page[it.i]
	return true
}

// KV returns the current entry.
func (it *Iterator) KV() KV { return it.kv }

// Err returns the error that stopped the iteration, if any.
func (it *Iterator) Err() error { return it.err }

// Write applies b atomically: every operation or none. With sync the write
// is durable (WAL fsync, shared with concurrent sync writes) before Write
// returns. It returns RocksDB's sequence number after the write. b may be
// reset and reused once Write returns.
//
// A batch larger than fits one bus frame goes in parts of about
// WritePartBytes, staged in stored and written there as one batch with the
// last part (WriteRequest.stage); atomicity and durability are the same.
// A single operation must still fit one frame.
func (c *Client) Write(ctx context.Context, b *Batch, sync bool) (uint64, error) {
	return c.write(ctx, b, sync, false)
}

// WriteReserve writes b like Write, but may use the space stored keeps
// below its free-space floor (WriteRequest.reserve): for the small writes
// that must go through while ordinary writes are refused because the disk
// is full (raft votes and hard state, log truncation, start-up records,
// the clock bound). It is refused too once even that reserve is used up.
func (c *Client) WriteReserve(ctx context.Context, b *Batch, sync bool) (uint64, error) {
	return c.write(ctx, b, sync, true)
}

func (c *Client) write(ctx context.Context, b *Batch, sync, reserve bool) (uint64, error) {
	limit := c.writePartBytes()
	if len(b.packed) <= limit {
		req := storepb.WriteRequest{PackedOps: b.packed, Sync: sync, Reserve: reserve}
		var resp storepb.WriteResponse
		if err := c.call(ctx, MethodWrite, &req, &resp); err != nil {
			return 0, err
		}
		return resp.Sequence, nil
	}
	parts, err := splitPacked(b.packed, limit)
	if err != nil {
		return 0, fmt.Errorf("storeclient: %s: %w", MethodWrite, err)
	}
	var id uint64
	for i, part := range parts {
		last := i == len(parts)-1
		req := storepb.WriteRequest{PackedOps: part, Stage: !last, StageId: id, Sync: sync && last, Reserve: reserve}
		var resp storepb.WriteResponse
		if err := c.call(ctx, MethodWrite, &req, &resp); err != nil {
			if id != 0 && !last {
				c.abortStaged(ctx, id)
			}
			return 0, fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
		}
		if last {
			return resp.Sequence, nil
		}
		id = resp.StageId
	}
	panic("unreachable")
}

// WritePartBytes is the largest part of a staged write (less when the
// bus frame limit is lower).
const WritePartBytes = 4 << 20

func (c *Client) writePartBytes() int {
	// Half a frame leaves room for the envelope and for a part that ends
	// with an operation over the target.
	return min(WritePartBytes, c.b.MaxFrameSize()/2)
}

// abortStaged drops a staged write a failed part left behind (best
// effort: stored drops it anyway once its lease runs out).
func (c *Client) abortStaged(ctx context.Context, id uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = c.call(ctx, MethodWrite, &storepb.WriteRequest{StageId: id, Abort: true}, &storepb.WriteResponse{})
}

// splitPacked cuts packed operations into parts of at most limit bytes at
// operation boundaries (an operation over limit is a part of its own).
func splitPacked(packed []byte, limit int) ([][]byte, error) {
	var parts [][]byte
	start, off := 0, 0
	for rest := packed; len(rest) > 0; {
		_, next, err := storepb.NextOp(rest)
		if err != nil {
			return nil, err
		}
		n := len(rest) - len(next)
		if off > start && off+n-start > limit {
			parts = append(parts, packed[start:off])
			start = off
		}
		off += n
		rest = next
	}
	return append(parts, packed[start:off]), nil
}

// Snapshot is a consistent view of the whole store held open by a lease
// on the server. Every read at it renews the lease. It is safe for
// concurrent use.
type Snapshot struct {
	c       *Client
	id, seq uint64
	expires time.Time
}

// OpenSnapshot opens a snapshot whose lease lasts lease after each use;
// 0 means the server default.
func (c *Client) OpenSnapshot(ctx context.Context, lease time.Duration) (*Snapshot, error) {
	if lease < 0 {
		return nil, errors.New("storeclient: OpenSnapshot: negative lease")
	}
	var resp storepb.OpenSnapshotResponse
	if err := c.call(ctx, MethodOpenSnapshot, &storepb.OpenSnapshotRequest{LeaseMs: uint32(lease / time.Millisecond)}, &resp); err != nil {
		return nil, err
	}
	return &Snapshot{c: c, id: resp.SnapshotId, seq: resp.Sequence, expires: time.UnixMilli(resp.ExpiresUnixMs)}, nil
}

// ID returns the snapshot's server-side id.
func (s *Snapshot) ID() uint64 { return s.id }

// Sequence returns RocksDB's sequence number at the snapshot.
func (s *Snapshot) Sequence() uint64 { return s.seq }

// Expires returns when the lease ran out as of opening (reads renew it).
func (s *Snapshot) Expires() time.Time { return s.expires }

// Get reads key of cf at the snapshot.
func (s *Snapshot) Get(ctx context.Context, cf CF, key []byte) ([]byte, bool, error) {
	return s.c.get(ctx, s.id, cf, key)
}

// MultiGet reads keys of cf at the snapshot.
func (s *Snapshot) MultiGet(ctx context.Context, cf CF, keys [][]byte) ([]Result, error) {
	return s.c.multiGet(ctx, s.id, cf, keys)
}

// Scan reads one page of span at the snapshot.
func (s *Snapshot) Scan(ctx context.Context, span Span, opts ScanOptions) (Page, error) {
	return s.c.scan(ctx, s.id, span, opts)
}

// Iterator returns an iterator over span at the snapshot.
func (s *Snapshot) Iterator(span Span, opts ScanOptions) *Iterator {
	it := s.c.Iterator(span, opts)
	it.snap = s.id
	return it
}

// StreamRange streams span at the snapshot; see Client.StreamRange.
func (s *Snapshot) StreamRange(ctx context.Context, span Span, chunkBytes int, fn func(chunk []KV) error) error {
	return s.c.streamRange(ctx, s.id, span, chunkBytes, fn)
}

// ScanRange calls fn with every entry of span at the snapshot, in chunks
// of about chunkBytes (0: the server default, 1 MiB) in ascending key
// order, as StreamRange does, but reads each chunk with a Scan call
// instead of taking them from a server stream. Unary calls go over the
// bus's local socket to stored when it has one, and server streams stay
// on QUIC, whose per-packet cost caps a stream at tens of MB/s: over the
// socket, a round trip per chunk costs less. An error from fn ends the
// scan and is returned; chunk and its entries belong to fn's caller after
// fn returns.
func (s *Snapshot) ScanRange(ctx context.Context, span Span, chunkBytes int, fn func(chunk []KV) error) error {
	if chunkBytes < 0 {
		return errors.New("storeclient: ScanRange: negative chunk size")
	}
	for {
		// The entry limit is stored's cap (MaxScanLimit): chunks end by bytes.
		page, err := s.c.scan(ctx, s.id, span, ScanOptions{Limit: math.MaxInt32, MaxBytes: chunkBytes})
		if err != nil {
			return fmt.Errorf("storeclient: ScanRange: %w", err)
		}
		if len(page.KVs) > 0 {
			if err := fn(page.KVs); err != nil {
				return err
			}
		}
		if !page.More {
			return nil
		}
		span.Start = page.Resume
	}
}

// Release closes the snapshot; later reads at it fail with
// bus.ErrFailedPrecondition. Releasing twice is an error of that kind too.
func (s *Snapshot) Release(ctx context.Context) error {
	return s.c.call(ctx, MethodReleaseSnapshot, &storepb.ReleaseSnapshotRequest{SnapshotId: s.id}, &storepb.ReleaseSnapshotResponse{})
}

// StreamRange streams every entry of span, at a snapshot the server takes
// when the stream starts, calling fn once per chunk of about chunkBytes
// (0: the server default) in ascending key order. An error from fn ends
// the stream and is returned. chunk and its entries belong to fn's caller
// after fn returns.
func (c *Client) StreamRange(ctx context.Context, span Span, chunkBytes int, fn func(chunk []KV) error) error {
	return c.streamRange(ctx, 0, span, chunkBytes, fn)
}

func (c *Client) streamRange(ctx context.Context, snap uint64, span Span, chunkBytes int, fn func([]KV) error) error {
	if chunkBytes < 0 {
		return errors.New("storeclient: StreamRange: negative chunk size")
	}
	st, err := c.b.Stream(ctx, c.addr, wire.ProtoStore, MethodStreamRange,
		&storepb.StreamRangeRequest{Span: span.proto(), SnapshotId: snap, ChunkBytes: uint32(chunkBytes), Packed: true})
	if err != nil {
		return fmt.Errorf("storeclient: StreamRange: %w", err)
	}
	defer st.Close()
	for {
		var chunk storepb.RangeChunk
		if err := st.Recv(&chunk); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("storeclient: StreamRange: %w", err)
		}
		kvs, err := kvsFrom(chunk.Kvs, chunk.Packed)
		if err != nil {
			return fmt.Errorf("storeclient: StreamRange: %w", err)
		}
		if err := fn(kvs); err != nil {
			return err
		}
	}
}

// Ingest is an IngestRange session: the entries added replace span
// atomically at Finish. It is not safe for concurrent use.
//
// When the server offers a window (IngestRangeResponse.window), Add sends
// its chunks without waiting for their answers, up to that many in
// flight (each on a goroutine of the session, all waited for by Finish
// and Abort); a failure is returned by a later Add, or by Finish.
type Ingest struct {
	c       *Client
	id, seq uint64
	pending []byte // packed entries not sent yet
	chunk   int
	keys    uint64
	bytes   uint64
	done    bool

	// Chunks in flight (window > 1): slots holds one token per chunk in
	// flight; wg counts their goroutines; err is the first failure; the
	// sends run under actx (cancelled by Abort and after a failure),
	// each within the deadline of the Add that sent it.
	window  int
	slots   chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	actx    context.Context
	acancel context.CancelFunc
}

// IngestResult summarises a finished ingest.
type IngestResult struct {
	Keys, Bytes uint64
	// Sequence is RocksDB's sequence number after the replacing write.
	Sequence uint64
}

// DefaultIngestChunkBytes is the size at which Ingest.Add sends a chunk.
const DefaultIngestChunkBytes = 1 << 20

// ingestChunkTimeout bounds a chunk in flight sent by an Add whose
// context has no deadline.
const ingestChunkTimeout = time.Minute

// maxIngestWindow bounds the chunks in flight of one session, whatever
// the server offers: memory is about that many chunks.
const maxIngestWindow = 4

// IngestRange begins a session that will replace span (whose End must be
// set). lease bounds how long the session may stay idle on the server; 0
// means the server default.
func (c *Client) IngestRange(ctx context.Context, span Span, lease time.Duration) (*Ingest, error) {
	if lease < 0 {
		return nil, errors.New("storeclient: IngestRange: negative lease")
	}
	var resp storepb.IngestRangeResponse
	if err := c.call(ctx, MethodIngestRange, &storepb.IngestRangeRequest{Span: span.proto(), LeaseMs: uint32(lease / time.Millisecond)}, &resp); err != nil {
		return nil, err
	}
	in := &Ingest{c: c, id: resp.IngestId, chunk: DefaultIngestChunkBytes, window: min(int(resp.Window), maxIngestWindow)}
	if in.window > 1 {
		in.slots = make(chan struct{}, in.window)
		in.actx, in.acancel = context.WithCancel(context.Background())
	}
	return in, nil
}

// ID returns the session's server-side id.
func (in *Ingest) ID() uint64 { return in.id }

// Add queues entries (in strictly ascending key order across the session)
// and sends a chunk whenever DefaultIngestChunkBytes have accumulated. It
// copies the entries: the caller may reuse their memory at once.
func (in *Ingest) Add(ctx context.Context, kvs ...KV) error {
	if in.done {
		return errors.New("storeclient: IngestRange: session ended")
	}
	for _, kv := range kvs {
		in.pending = storepb.AppendPacked(in.pending, kv.Key, kv.Value)
		if len(in.pending) >= in.chunk {
			if in.window > 1 {
				if err := in.sendAsync(ctx); err != nil {
					return err
				}
				continue
			}
			if _, err := in.send(ctx, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// failed returns the first failure of a chunk in flight.
func (in *Ingest) failed() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// sendAsync sends the pending chunk on a goroutine of the session once
// fewer than window chunks are in flight.
func (in *Ingest) sendAsync(ctx context.Context) error {
	if err := in.failed(); err != nil {
		in.done = true
		return err
	}
	select {
	case in.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	in.seq++
	req := &storepb.IngestRangeRequest{IngestId: in.id, Seq: in.seq, Packed: in.pending}
	in.pending = make([]byte, 0, cap(in.pending))
	// The chunk outlives this Add's context (an Add returns before its
	// answer) but not its deadline (or ingestChunkTimeout).
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(ingestChunkTimeout)
	}
	cctx, cancel := context.WithDeadline(in.actx, d)
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		defer func() { <-in.slots }()
		defer cancel()
		var resp storepb.IngestRangeResponse
		if err := in.c.call(cctx, MethodIngestRange, req, &resp); err != nil {
			in.mu.Lock()
			if in.err == nil {
				in.err = err
			}
			in.mu.Unlock()
			in.acancel() // the chunks after it cannot be taken
		}
	}()
	return nil
}

// drain waits for the chunks in flight and returns the first failure.
func (in *Ingest) drain() error {
	if in.window <= 1 {
		return nil
	}
	in.wg.Wait()
	return in.failed()
}

func (in *Ingest) send(ctx context.Context, done bool) (*storepb.IngestRangeResponse, error) {
	req := storepb.IngestRangeRequest{IngestId: in.id, Done: done}
	if len(in.pending) > 0 {
		in.seq++
		req.Seq, req.Packed = in.seq, in.pending
	}
	var resp storepb.IngestRangeResponse
	if err := in.c.call(ctx, MethodIngestRange, &req, &resp); err != nil {
		in.done = true
		return nil, err
	}
	in.pending = in.pending[:0]
	in.keys, in.bytes = resp.Keys, resp.Bytes
	return &resp, nil
}

// Finish sends the remaining entries and replaces the span: one synced
// atomic write deletes the span and writes every entry of the session.
func (in *Ingest) Finish(ctx context.Context) (IngestResult, error) {
	if in.done {
		return IngestResult{}, errors.New("storeclient: IngestRange: session ended")
	}
	if err := in.drain(); err != nil {
		in.done = true
		return IngestResult{}, err
	}
	resp, err := in.send(ctx, true)
	in.done = true
	if in.acancel != nil {
		in.acancel()
	}
	if err != nil {
		return IngestResult{}, err
	}
	return IngestResult{Keys: resp.Keys, Bytes: resp.Bytes, Sequence: resp.Sequence}, nil
}

// Abort drops the session; nothing is written. Aborting an ended session
// does nothing.
func (in *Ingest) Abort(ctx context.Context) error {
	if in.acancel != nil {
		in.acancel()
		in.wg.Wait()
	}
	if in.done {
		return nil
	}
	in.done = true
	return in.c.call(ctx, MethodIngestRange, &storepb.IngestRangeRequest{IngestId: in.id, Abort: true}, &storepb.IngestRangeResponse{})
}

// ApproximateSize returns the approximate on-disk size of span, memtables
// included.
func (c *Client) ApproximateSize(ctx context.Context, span Span) (uint64, error) {
	var resp storepb.ApproximateSizeResponse
	if err := c.call(ctx, MethodApproximateSize, &storepb.ApproximateSizeRequest{Span: span.proto()}, &resp); err != nil {
		return 0, err
	}
	return resp.Bytes, nil
}

// Compact compacts span down to the bottom level; it returns when done.
func (c *Client) Compact(ctx context.Context, span Span) error {
	return c.call(ctx, MethodCompact, &storepb.CompactRequest{Span: span.proto()}, &storepb.CompactResponse{})
}

// Checkpoint makes a RocksDB checkpoint of the whole store in dir, which
// must not exist (a relative dir is taken under the server's checkpoint
// directory), and returns its absolute path on the server.
func (c *Client) Checkpoint(ctx context.Context, dir string) (string, error) {
	var resp storepb.CheckpointResponse
	if err := c.call(ctx, MethodCheckpoint, &storepb.CheckpointRequest{Dir: dir}, &resp); err != nil {
		return "", err
	}
	return resp.Dir, nil
}

// Stats returns the store's statistics.
func (c *Client) Stats(ctx context.Context) (*storepb.StatsResponse, error) {
	var resp storepb.StatsResponse
	if err := c.call(ctx, MethodStats, &storepb.StatsRequest{}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// DiskStream is a WatchDisk subscription.
type DiskStream struct{ s *bus.ClientStream }

// WatchDisk subscribes to stored's disk status: the current one first,
// then one each time writes start or stop being refused, the reserve runs
// out or returns, or the ballast file goes or comes back.
func (c *Client) WatchDisk(ctx context.Context) (*DiskStream, error) {
	s, err := c.b.Stream(ctx, c.addr, wire.ProtoStore, MethodWatchDisk, &storepb.WatchDiskRequest{})
	if err != nil {
		return nil, fmt.Errorf("storeclient: WatchDisk: %w", err)
	}
	return &DiskStream{s: s}, nil
}

// Recv returns the next status; io.EOF when stored ends the stream.
func (d *DiskStream) Recv() (*storepb.DiskStatus, error) {
	var m storepb.DiskStatus
	if err := d.s.Recv(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Close ends the subscription.
func (d *DiskStream) Close() error { return d.s.Close() }
