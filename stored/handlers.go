package stored

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/stored/engine"
)

// errUnavailable answers calls before Start and after Stop.
var errUnavailable = bus.Errorf(bus.CodeUnavailable, "stored: not serving")

// wireErr gives engine errors their wire codes.
func wireErr(err error) error {
	var be *bus.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &be):
		return err
	case errors.Is(err, engine.ErrInvalid):
		return bus.Errorf(bus.CodeInvalidArgument, "%v", err)
	case errors.Is(err, engine.ErrReleased):
		return bus.Errorf(bus.CodeFailedPrecondition, "%v", err)
	case errors.Is(err, engine.ErrClosed):
		return errUnavailable
	}
	return err
}

// unary registers a timed unary handler that gets the open engine.
func unary[Req any, Resp proto.Message, PReq interface {
	*Req
	proto.Message
}](s *Server, b *bus.Bus, method string, h func(context.Context, *engine.Engine, PReq) (Resp, error)) {
	obs := s.metrics.latency.WithLabelValues(method)
	bus.HandleUnary(b, wire.ProtoStore, method, func(ctx context.Context, req PReq) (Resp, error) {
		start := time.Now()
		defer func() { obs.Observe(time.Since(start).Seconds()) }()
		e := s.eng.Load()
		if e == nil {
			var zero Resp
			return zero, errUnavailable
		}
		resp, err := h(ctx, e, req)
		if errors.Is(err, engine.ErrNoSpace) {
			err = s.disk.noSpace(err)
		}
		return resp, wireErr(err)
	})
}

// register registers stored's handlers; their authorization is rules
// (authz.go).
func (s *Server) register(b *bus.Bus) {
	b.Authorize(wire.ProtoStore, s.rules())
	unary(s, b, storeclient.MethodGet, s.get)
	unary(s, b, storeclient.MethodMultiGet, s.multiGet)
	unary(s, b, storeclient.MethodScan, s.scan)
	unary(s, b, storeclient.MethodWrite, s.write)
	unary(s, b, storeclient.MethodOpenSnapshot, s.openSnapshot)
	unary(s, b, storeclient.MethodReleaseSnapshot, s.releaseSnapshot)
	unary(s, b, storeclient.MethodIngestRange, s.ingestRange)
	unary(s, b, storeclient.MethodApproximateSize, s.approximateSize)
	unary(s, b, storeclient.MethodCompact, s.compact)
	unary(s, b, storeclient.MethodCheckpoint, s.checkpoint)
	unary(s, b, storeclient.MethodStats, s.stats)
	obs := s.metrics.latency.WithLabelValues(storeclient.MethodStreamRange)
	bus.HandleStream(b, wire.ProtoStore, storeclient.MethodStreamRange, func(ctx context.Context, req *storepb.StreamRangeRequest, send func(*storepb.RangeChunk) error) error {
		start := time.Now()
		defer func() { obs.Observe(time.Since(start).Seconds()) }()
		e := s.eng.Load()
		if e == nil {
			return errUnavailable
		}
		return wireErr(s.streamRange(ctx, e, req, send))
	})
	bus.HandleStream(b, wire.ProtoStore, storeclient.MethodWatchDisk, func(ctx context.Context, _ *storepb.WatchDiskRequest, send func(*storepb.DiskStatus) error) error {
		if s.eng.Load() == nil {
			return errUnavailable
		}
		return s.disk.watch(ctx, s.stopc, send)
	})
}

func spanOf(p *storepb.Span) engine.Span {
	return engine.Span{CF: engine.CF(p.GetCf()), Start: p.GetStart(), End: p.GetEnd()}
}

// snapshot returns the open snapshot id (renewing its lease), nil for 0.
func (s *Server) snapshot(id uint64) (*engine.Snapshot, error) {
	if id == 0 {
		return nil, nil
	}
	return s.snaps.get(id, s.now(), "snapshot")
}

func (s *Server) get(_ context.Context, e *engine.Engine, req *storepb.GetRequest) (*storepb.GetResponse, error) {
	snap, err := s.snapshot(req.SnapshotId)
	if err != nil {
		return nil, err
	}
	v, ok, err := e.Get(engine.CF(req.Cf), req.Key, snap)
	if err != nil {
		return nil, err
	}
	return &storepb.GetResponse{Found: ok, Value: v}, nil
}

func (s *Server) multiGet(_ context.Context, e *engine.Engine, req *storepb.MultiGetRequest) (*storepb.MultiGetResponse, error) {
	snap, err := s.snapshot(req.SnapshotId)
	if err != nil {
		return nil, err
	}
	vals, found, err := e.MultiGet(engine.CF(req.Cf), req.Keys, snap)
	if err != nil {
		return nil, err
	}
	resp := &storepb.MultiGetResponse{Results: make([]*storepb.GetResponse, len(req.Keys))}
	all := make([]storepb.GetResponse, len(req.Keys))
	for i := range all {
		all[i].Found, all[i].Value = found[i], vals[i]
		resp.Results[i] = &all[i]
	}
	return resp, nil
}

func (s *Server) scan(_ context.Context, e *engine.Engine, req *storepb.ScanRequest) (*storepb.ScanResponse, error) {
	if req.Span == nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: scan: no span")
	}
	snap, err := s.snapshot(req.SnapshotId)
	if err != nil {
		return nil, err
	}
	limit := min(int(req.Limit), s.cfg.MaxScanLimit)
	maxBytes := min(int(req.MaxBytes), s.cfg.MaxScanBytes)
	p, err := e.Scan(spanOf(req.Span), engine.ScanOptions{
		Limit: limit, MaxBytes: maxBytes, Reverse: req.Reverse, KeysOnly: req.KeysOnly, Snapshot: snap,
	})
	if err != nil {
		return nil, err
	}
	resp := &storepb.ScanResponse{ResumeKey: p.Resume, More: p.More}
	if req.Packed {
		resp.Packed = pack(p.KVs)
	} else {
		resp.Kvs = kvsProto(p.KVs)
	}
	return resp, nil
}

// pack encodes kvs as a packed entry list (see store.proto).
func pack(kvs []engine.KV) []byte {
	size := 0
	for _, kv := range kvs {
		size += len(kv.Key) + len(kv.Value) + 2*binary.MaxVarintLen32
	}
	b := make([]byte, 0, size)
	for _, kv := range kvs {
		b = storepb.AppendPacked(b, kv.Key, kv.Value)
	}
	return b
}

func kvsProto(kvs []engine.KV) []*storepb.KeyValue {
	out := make([]*storepb.KeyValue, len(kvs))
	all := make([]storepb.KeyValue, len(kvs))
	for i, kv := range kvs {
		all[i].Key, all[i].Value = kv.Key, kv.Value
		out[i] = &all[i]
	}
	return out
}

// fillBatch adds ops to b; b's error records the first invalid one.
func fillBatch(b *engine.Batch, ops []*storepb.Op) error {
	for i, op := range ops {
		switch o := op.GetOp().(type) {
		case *storepb.Op_Put:
			b.Put(engine.CF(o.Put.GetCf()), o.Put.GetKey(), o.Put.GetValue())
		case *storepb.Op_Delete:
			b.Delete(engine.CF(o.Delete.GetCf()), o.Delete.GetKey())
		case *storepb.Op_DeleteRange:
			if o.DeleteRange.GetSpan() == nil {
				return bus.Errorf(bus.CodeInvalidArgument, "stored: write: operation %d: delete range without span", i)
			}
			b.DeleteRange(spanOf(o.DeleteRange.Span))
		default:
			return bus.Errorf(bus.CodeInvalidArgument, "stored: write: operation %d is empty", i)
		}
	}
	return b.Err()
}

// fillPacked adds packed operations to b.
func fillPacked(b *engine.Batch, packed []byte) error {
	for i := 0; len(packed) > 0; i++ {
		op, rest, err := storepb.NextOp(packed)
		if err != nil {
			return bus.Errorf(bus.CodeInvalidArgument, "stored: write: packed operation %d: %v", i, err)
		}
		switch op.Kind {
		case storepb.OpPut:
			b.Put(engine.CF(op.CF), op.Key, op.Value)
		case storepb.OpDelete:
			b.Delete(engine.CF(op.CF), op.Key)
		case storepb.OpDeleteRange:
			b.DeleteRange(engine.Span{CF: engine.CF(op.CF), Start: op.Key, End: op.Value})
		}
		packed = rest
	}
	return b.Err()
}

func (s *Server) write(_ context.Context, e *engine.Engine, req *storepb.WriteRequest) (*storepb.WriteResponse, error) {
	if len(req.Ops) > 0 && len(req.PackedOps) > 0 {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: write: both ops and packed_ops are set")
	}
	if !req.Abort {
		if err := s.disk.admit(req.Reserve, writeBytes(req)); err != nil {
			if req.StageId != 0 {
				s.stages.remove(req.StageId) // refused, the staged write ends
			}
			return nil, err
		}
	}
	if req.Stage || req.StageId != 0 || req.Abort {
		return s.stagedWrite(e, req)
	}
	b := e.NewBatch()
	defer b.Close()
	if err := fillWrite(b, req); err != nil {
		return nil, err
	}
	seq, err := e.Write(b, req.Sync)
	if err != nil {
		s.checkFailed(e)
		return nil, err
	}
	return &storepb.WriteResponse{Sequence: seq}, nil
}

// writeBytes is about what req's operations add to the database.
func writeBytes(req *storepb.WriteRequest) int {
	if len(req.PackedOps) > 0 {
		return len(req.PackedOps)
	}
	n := 0
	for _, op := range req.Ops {
		n += proto.Size(op)
	}
	return n
}

// fillWrite adds req's operations to b; on an error b is left unusable
// (the engine batch keeps its first error).
func fillWrite(b *engine.Batch, req *storepb.WriteRequest) error {
	if len(req.PackedOps) > 0 {
		// The packed form is about as long as RocksDB's encoding.
		b.Grow(len(req.PackedOps) + len(req.PackedOps)/8)
		return fillPacked(b, req.PackedOps)
	}
	return fillBatch(b, req.Ops)
}

// staged is a write batch built over several requests (WriteRequest.stage).
type staged struct {
	mu     sync.Mutex
	b      *engine.Batch
	closed bool
}

func (st *staged) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.closed {
		st.closed = true
		st.b.Close()
	}
}

// stagedWrite adds to, writes or aborts a staged write. A request whose
// operations are invalid or over the batch limit ends the staged write
// (its caller cannot know how much of it was taken).
func (s *Server) stagedWrite(e *engine.Engine, req *storepb.WriteRequest) (*storepb.WriteResponse, error) {
	if req.Abort {
		if req.Stage || len(req.Ops) > 0 || len(req.PackedOps) > 0 || req.StageId == 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: write: an abort names a staged write and carries nothing else")
		}
		if !s.stages.remove(req.StageId) {
			return nil, bus.Errorf(bus.CodeFailedPrecondition, "stored: staged write %d is unknown, written or expired", req.StageId)
		}
		return &storepb.WriteResponse{StageId: req.StageId}, nil
	}
	id := req.StageId
	var st *staged
	if id == 0 {
		st = &staged{b: e.NewBatch()}
		var err error
		if id, _, err = s.stages.add(st, s.cfg.IngestLease, s.now()); err != nil {
			st.b.Close()
			return nil, err
		}
	} else {
		var err error
		if st, err = s.stages.get(id, s.now(), "staged write"); err != nil {
			return nil, err
		}
	}
	resp, end, err := s.addStaged(e, st, id, req)
	if end {
		// Written, failed or refused, the staged write ends here.
		s.stages.remove(id)
	}
	return resp, err
}

// addStaged adds req's operations to st and, on the last part, writes it.
// end reports that the staged write is over.
func (s *Server) addStaged(e *engine.Engine, st *staged, id uint64, req *storepb.WriteRequest) (resp *storepb.WriteResponse, end bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, true, bus.Errorf(bus.CodeFailedPrecondition, "stored: staged write %d expired", id)
	}
	if err := fillWrite(st.b, req); err != nil {
		return nil, true, fmt.Errorf("stored: staged write %d: %w", id, err)
	}
	if req.Stage {
		return &storepb.WriteResponse{StageId: id}, false, nil
	}
	seq, err := e.Write(st.b, req.Sync)
	if err != nil {
		s.checkFailed(e)
		return nil, true, err
	}
	return &storepb.WriteResponse{Sequence: seq, StageId: id}, true, nil
}

// checkFailed reports a failed WAL fsync on Err: the daemon must restart
// (reopening replays the WAL) before it takes writes again.
func (s *Server) checkFailed(e *engine.Engine) {
	if err := e.Failed(); err != nil {
		select {
		case s.errc <- fmt.Errorf("stored: %w", err):
		default:
		}
	}
}

func (s *Server) openSnapshot(_ context.Context, e *engine.Engine, req *storepb.OpenSnapshotRequest) (*storepb.OpenSnapshotResponse, error) {
	snap, err := e.NewSnapshot()
	if err != nil {
		return nil, err
	}
	id, expires, err := s.snaps.add(snap, leaseFor(req.LeaseMs, s.cfg.SnapshotLease, s.cfg.MaxSnapshotLease), s.now())
	if err != nil {
		snap.Release()
		return nil, err
	}
	return &storepb.OpenSnapshotResponse{SnapshotId: id, Sequence: snap.Sequence(), ExpiresUnixMs: expires.UnixMilli()}, nil
}

func (s *Server) releaseSnapshot(_ context.Context, _ *engine.Engine, req *storepb.ReleaseSnapshotRequest) (*storepb.ReleaseSnapshotResponse, error) {
	if !s.snaps.remove(req.SnapshotId) {
		return nil, bus.Errorf(bus.CodeFailedPrecondition, "stored: snapshot %d is unknown, released or expired", req.SnapshotId)
	}
	return &storepb.ReleaseSnapshotResponse{}, nil
}

func (s *Server) streamRange(ctx context.Context, e *engine.Engine, req *storepb.StreamRangeRequest, send func(*storepb.RangeChunk) error) error {
	if req.Span == nil {
		return bus.Errorf(bus.CodeInvalidArgument, "stored: stream range: no span")
	}
	snap, err := s.snapshot(req.SnapshotId)
	if err != nil {
		return err
	}
	chunk := int(req.ChunkBytes)
	if chunk == 0 {
		chunk = engine.DefaultScanBytes
	}
	chunk = min(chunk, s.cfg.MaxScanBytes)
	stop := func() error {
		select {
		case <-s.stopc:
			return errUnavailable
		default:
		}
		// Renew the lease: a long stream must not lose its snapshot. (A
		// release here would wait for this very stream's read.)
		if req.SnapshotId != 0 && !s.snaps.renew(req.SnapshotId, s.now()) {
			return bus.Errorf(bus.CodeFailedPrecondition, "stored: snapshot %d expired during the stream", req.SnapshotId)
		}
		return ctx.Err()
	}
	return e.Stream(spanOf(req.Span), snap, chunk, stop, func(kvs []engine.KV) error {
		if req.Packed {
			return send(&storepb.RangeChunk{Packed: pack(kvs)})
		}
		return send(&storepb.RangeChunk{Kvs: kvsProto(kvs)})
	})
}

// ingest is one IngestRange session: the span's replacement staged in an
// SST file (engine.Ingester) that begins with the span's deletion.
type ingest struct {
	span engine.Span

	mu     sync.Mutex
	w      *engine.Ingester
	seq    uint64
	last   []byte
	keys   uint64
	bytes  uint64
	closed bool
	// turn is closed, and replaced, whenever seq moves or the session
	// closes: it wakes the chunks waiting for the ones before them.
	turn chan struct{}
}

// ingestWindow is how many chunks of a session a client may have in
// flight (IngestRangeResponse.window): a chunk up to ingestWindow-1 ahead
// of the next one waits for its turn, so the transfer of the next chunks
// overlaps with staging one. Memory: that many chunks (each at most the
// bus's frame limit) per session.
const ingestWindow = 4

func (in *ingest) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.closed {
		in.closed = true
		in.w.Close()
		close(in.turn)
	}
}

// awaitTurn waits until chunk seq is the next one the session takes, or
// refuses it: a chunk that is not ahead of the next one, or that is a
// window or more ahead, is left to addChunk's refusal at once; a chunk
// whose turn does not come before ctx ends (a chunk before it was lost
// or refused) is refused.
func (in *ingest) awaitTurn(ctx context.Context, seq uint64) error {
	for {
		in.mu.Lock()
		next, turn, closed := in.seq+1, in.turn, in.closed
		in.mu.Unlock()
		if closed || seq <= next || seq >= next+ingestWindow {
			return nil
		}
		select {
		case <-turn:
		case <-ctx.Done():
			return bus.Errorf(bus.CodeFailedPrecondition, "stored: ingest chunk %d: chunk %d did not come: %v", seq, next, ctx.Err())
		}
	}
}

func (s *Server) ingestRange(ctx context.Context, e *engine.Engine, req *storepb.IngestRangeRequest) (*storepb.IngestRangeResponse, error) {
	if !req.Abort {
		// The entries are staged in a file on the same disk. The done
		// frame, whose ingest moves that file in and needs no room of its
		// own, may use the reserve: a session staged before the disk
		// filled still completes.
		size := len(req.Packed)
		for _, kv := range req.Kvs {
			size += len(kv.Key) + len(kv.Value)
		}
		if err := s.disk.admit(req.Done, size); err != nil {
			if req.IngestId != 0 && !req.Done {
				s.ingests.remove(req.IngestId) // the session cannot go on
			}
			return nil, err
		}
	}
	if req.IngestId == 0 {
		return s.beginIngest(e, req)
	}
	in, err := s.ingests.get(req.IngestId, s.now(), "ingest session")
	if err != nil {
		return nil, err
	}
	if req.Abort {
		s.ingests.remove(req.IngestId)
		return &storepb.IngestRangeResponse{IngestId: req.IngestId}, nil
	}
	if err := in.awaitTurn(ctx, req.Seq); err != nil {
		return nil, err
	}
	resp, finish, err := in.addChunk(e, req, s.cfg.MaxIngestBytes)
	if err != nil || !finish {
		return resp, err
	}
	// Finish: the session ends whatever the write's outcome.
	defer s.ingests.remove(req.IngestId)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil, bus.Errorf(bus.CodeFailedPrecondition, "stored: ingest session %d expired", req.IngestId)
	}
	seq, err := in.w.Ingest()
	if err != nil {
		return nil, err
	}
	resp.Sequence = seq
	return resp, nil
}

func (s *Server) beginIngest(e *engine.Engine, req *storepb.IngestRangeRequest) (*storepb.IngestRangeResponse, error) {
	if req.Span == nil || len(req.Kvs) > 0 || len(req.Packed) > 0 || req.Done || req.Abort || req.Seq != 0 {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest range: a session begins with a span alone")
	}
	span := spanOf(req.Span)
	w, err := e.NewIngester(span)
	if err != nil {
		return nil, err
	}
	in := &ingest{span: span, w: w, turn: make(chan struct{})}
	id, _, err := s.ingests.add(in, leaseFor(req.LeaseMs, s.cfg.IngestLease, s.cfg.MaxSnapshotLease), s.now())
	if err != nil {
		w.Close()
		return nil, err
	}
	return &storepb.IngestRangeResponse{IngestId: id, Window: ingestWindow}, nil
}

// addChunk validates the frame's entries whole, then stages them; an
// invalid chunk leaves the session as it was. finish reports done.
func (in *ingest) addChunk(e *engine.Engine, req *storepb.IngestRangeRequest, maxBytes int) (*storepb.IngestRangeResponse, bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil, false, bus.Errorf(bus.CodeFailedPrecondition, "stored: ingest session %d expired", req.IngestId)
	}
	if len(req.Kvs) > 0 && len(req.Packed) > 0 {
		return nil, false, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d: both kvs and packed are set", req.Seq)
	}
	if len(req.Kvs) > 0 || len(req.Packed) > 0 || req.Seq != 0 {
		if req.Seq != in.seq+1 {
			return nil, false, bus.Errorf(bus.CodeFailedPrecondition, "stored: ingest session %d: chunk %d, want %d", req.IngestId, req.Seq, in.seq+1)
		}
		entries, err := chunkEntries(req)
		if err != nil {
			return nil, false, err
		}
		opts := e.Options()
		last, size := in.last, in.bytes
		for i, kv := range entries {
			switch {
			case len(kv.Key) == 0 || len(kv.Key) > opts.MaxKeyBytes:
				return nil, false, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d entry %d: key of %d bytes (limit %d, not empty)", req.Seq, i, len(kv.Key), opts.MaxKeyBytes)
			case len(kv.Value) > opts.MaxValueBytes:
				return nil, false, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d entry %d: value of %d bytes exceeds the limit of %d", req.Seq, i, len(kv.Value), opts.MaxValueBytes)
			case !in.span.Contains(kv.Key):
				return nil, false, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d entry %d: key %q outside the span", req.Seq, i, kv.Key)
			case last != nil && bytes.Compare(kv.Key, last) <= 0:
				return nil, false, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d entry %d: key %q not above the previous %q", req.Seq, i, kv.Key, last)
			}
			last = kv.Key
			size += uint64(len(kv.Key) + len(kv.Value))
		}
		if size > uint64(maxBytes) {
			return nil, false, bus.Errorf(bus.CodeResourceExhausted, "stored: ingest session %d exceeds the limit of %d bytes", req.IngestId, maxBytes)
		}
		for _, kv := range entries {
			if err := in.w.Put(kv.Key, kv.Value); err != nil {
				// Unreachable after the checks above; the session is
				// unusable (part of the chunk is in its file).
				in.closed = true
				in.w.Close()
				close(in.turn)
				return nil, false, fmt.Errorf("stored: ingest staging: %w", err)
			}
		}
		in.seq, in.last, in.bytes = req.Seq, bytes.Clone(last), size
		in.keys += uint64(len(entries))
		close(in.turn)
		in.turn = make(chan struct{})
	}
	return &storepb.IngestRangeResponse{IngestId: req.IngestId, Keys: in.keys, Bytes: in.bytes}, req.Done, nil
}

// chunkEntries returns the entries of an ingest chunk, packed or not.
func chunkEntries(req *storepb.IngestRangeRequest) ([]engine.KV, error) {
	if len(req.Packed) == 0 {
		out := make([]engine.KV, len(req.Kvs))
		for i, kv := range req.Kvs {
			out[i] = engine.KV{Key: kv.Key, Value: kv.Value}
		}
		return out, nil
	}
	n, err := storepb.CountPacked(req.Packed)
	if err != nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: ingest chunk %d: %v", req.Seq, err)
	}
	out := make([]engine.KV, n)
	b := req.Packed
	for i := range out {
		out[i].Key, out[i].Value, b, _ = storepb.NextPacked(b)
	}
	return out, nil
}

func (s *Server) approximateSize(_ context.Context, e *engine.Engine, req *storepb.ApproximateSizeRequest) (*storepb.ApproximateSizeResponse, error) {
	if req.Span == nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: approximate size: no span")
	}
	n, err := e.ApproximateSize(spanOf(req.Span))
	if err != nil {
		return nil, err
	}
	return &storepb.ApproximateSizeResponse{Bytes: n}, nil
}

func (s *Server) compact(_ context.Context, e *engine.Engine, req *storepb.CompactRequest) (*storepb.CompactResponse, error) {
	if req.Span == nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: compact: no span")
	}
	return &storepb.CompactResponse{}, e.Compact(spanOf(req.Span))
}

// within reports whether path lies strictly inside dir (both absolute).
func within(dir, path string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), path)
	return err == nil && rel != "." && filepath.IsLocal(rel)
}

func (s *Server) checkpoint(_ context.Context, e *engine.Engine, req *storepb.CheckpointRequest) (*storepb.CheckpointResponse, error) {
	dir := req.Dir
	switch {
	case dir == "":
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: checkpoint: empty directory")
	case filepath.IsAbs(dir):
		dir = filepath.Clean(dir)
		if !within(s.cfg.Dir, dir) || dir == filepath.Clean(s.cfg.DBDir()) || within(s.cfg.DBDir(), dir) {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: checkpoint: %s is not under the data dir %s (outside its db)", dir, s.cfg.Dir)
		}
	case filepath.IsLocal(dir):
		dir = filepath.Join(s.cfg.CheckpointDir(), dir)
	default:
		return nil, bus.Errorf(bus.CodeInvalidArgument, "stored: checkpoint: relative directory %q leaves the checkpoint directory", dir)
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, bus.Errorf(bus.CodeAlreadyExists, "stored: checkpoint: %s exists", dir)
	}
	if err := e.Checkpoint(dir); err != nil {
		return nil, err
	}
	return &storepb.CheckpointResponse{Dir: dir}, nil
}

func (s *Server) stats(_ context.Context, e *engine.Engine, _ *storepb.StatsRequest) (*storepb.StatsResponse, error) {
	st, err := e.Stats()
	if err != nil {
		return nil, err
	}
	resp := &storepb.StatsResponse{
		Path:                    st.Dir,
		BlockCacheUsageBytes:    st.BlockCacheUsage,
		BlockCacheCapacityBytes: st.BlockCacheCapacity,
		BlockCacheHitRate:       st.HitRate(),
		BlockCacheHits:          st.BlockCacheHits,
		BlockCacheMisses:        st.BlockCacheMisses,
		OpenSnapshots:           uint64(s.snaps.len()),
		OpenIngests:             uint64(s.ingests.len()),
		Writes:                  st.Writes,
		SyncWrites:              st.SyncWrites,
		WalSyncs:                st.WALSyncs,
		WriteStopped:            st.WriteStopped,
		WriteStallMicros:        st.WriteStallMicros,
		MaxKeyBytes:             uint64(st.MaxKeyBytes),
		MaxValueBytes:           uint64(st.MaxValueBytes),
		Disk:                    proto.Clone(s.disk.status()).(*storepb.DiskStatus),
	}
	for _, c := range st.CFs {
		resp.ColumnFamilies = append(resp.ColumnFamilies, &storepb.ColumnFamilyStats{
			Name: c.CF.String(), EstimatedKeys: c.EstimatedKeys, LiveDataBytes: c.LiveDataBytes,
			SstBytes: c.SSTBytes, MemtableBytes: c.MemtableBytes, L0Files: c.L0Files,
			PendingCompactionBytes: c.PendingCompactionBytes,
		})
	}
	return resp, nil
}
