package storage

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// Stored is the production Engine: the node's stored over the bus.
type Stored struct {
	c *storeclient.Client
	// scanSnapshots reads a snapshot's ranges with Scan calls.
	scanSnapshots bool
	// batches recycles the write buffers: the rounds' writes are tens of
	// KiB each, and growing a fresh one per write was a large share of
	// raftd's allocation.
	batches sync.Pool
}

// NewStored returns an Engine calling stored through c. scanSnapshots
// makes a snapshot's StreamRange read its chunks with Scan calls
// (storeclient's ScanRange) instead of a server stream: for a bus with a
// local socket to stored, which unary calls take and streams do not.
func NewStored(c *storeclient.Client, scanSnapshots bool) *Stored {
	return &Stored{c: c, scanSnapshots: scanSnapshots}
}

// storeCF checks cf before a call.
func storeCF(cf CF) (storeclient.CF, error) {
	return cf, validCF(cf)
}

// Write implements Engine.
func (s *Stored) Write(ctx context.Context, ops []Op, sync bool) error {
	return s.write(ctx, ops, sync, false)
}

// WriteReserve implements Engine with stored's reserve writes.
func (s *Stored) WriteReserve(ctx context.Context, ops []Op, sync bool) error {
	return s.write(ctx, ops, sync, true)
}

func (s *Stored) write(ctx context.Context, ops []Op, sync, reserve bool) error {
	b, _ := s.batches.Get().(*storeclient.Batch)
	if b == nil {
		b = new(storeclient.Batch)
	}
	defer func() {
		b.Reset()
		s.batches.Put(b)
	}()
	for _, op := range ops {
		cf, err := storeCF(op.CF)
		if err != nil {
			return err
		}
		switch op.Kind {
		case OpPut:
			b.Put(cf, op.Key, op.Value)
		case OpDelete:
			b.Delete(cf, op.Key)
		case OpDeleteRange:
			end := op.End
			if end == nil {
				end = maxKeyEnd
			}
			b.DeleteRange(cf, op.Key, end)
		default:
			return fmt.Errorf("storage: unknown op kind %d", op.Kind)
		}
	}
	write := s.c.Write
	if reserve {
		write = s.c.WriteReserve
	}
	if _, err := write(ctx, b, sync); err != nil {
		return fmt.Errorf("storage: stored write of %d ops: %w", len(ops), err)
	}
	return nil
}

// Get implements Engine.
func (s *Stored) Get(ctx context.Context, cf CF, key []byte) ([]byte, bool, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, false, err
	}
	v, ok, err := s.c.Get(ctx, scf, key)
	if err != nil {
		return nil, false, fmt.Errorf("storage: stored get: %w", err)
	}
	return v, ok, nil
}

// multiGetKeys bounds the keys of one stored MultiGet call.
const multiGetKeys = 512

// MultiGet implements Engine, multiGetKeys keys a call.
func (s *Stored) MultiGet(ctx context.Context, cf CF, keys [][]byte) ([][]byte, []bool, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, nil, err
	}
	values, found := make([][]byte, 0, len(keys)), make([]bool, 0, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), multiGetKeys)
		res, err := s.c.MultiGet(ctx, scf, keys[:n])
		if err != nil {
			return nil, nil, fmt.Errorf("storage: stored multiget: %w", err)
		}
		for _, r := range res {
			values, found = append(values, r.Value), append(found, r.Found)
		}
		keys = keys[n:]
	}
	return values, found, nil
}

// ApproximateSize implements Engine with stored's estimate.
func (s *Stored) ApproximateSize(ctx context.Context, cf CF, start, end []byte) (uint64, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return 0, err
	}
	n, err := s.c.ApproximateSize(ctx, storeclient.Span{CF: scf, Start: start, End: end})
	if err != nil {
		return 0, fmt.Errorf("storage: stored approximate size: %w", err)
	}
	return n, nil
}

// Scan implements Engine, paging through stored as needed.
func (s *Stored) Scan(ctx context.Context, cf CF, start, end []byte, opts ScanOptions) ([]KV, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, err
	}
	limit, maxBytes := opts.Limit, opts.MaxBytes
	so := storeclient.ScanOptions{Reverse: opts.Reverse, KeysOnly: opts.KeysOnly}
	if limit > 0 {
		so.Limit = limit
	}
	it := s.c.Iterator(storeclient.Span{CF: scf, Start: start, End: end}, so)
	var out []KV
	size := 0
	for (limit == 0 || len(out) < limit) && (maxBytes == 0 || size < maxBytes) && it.Next(ctx) {
		kv := it.KV()
		out = append(out, KV{Key: kv.Key, Value: kv.Value})
		size += len(kv.Key) + len(kv.Value)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("storage: stored scan: %w", err)
	}
	return out, nil
}

// storedLease bounds how long an idle ingest session or snapshot
// stays open on stored.
const storedLease = time.Minute

// maxKeyEnd is the ingest end used for an unbounded span (stored's
// IngestRange needs an end): stored's default key limit (64 KiB) of 0xff
// bytes, above every key stored accepts but that one.
var maxKeyEnd = bytes.Repeat([]byte{0xff}, 64<<10)

// OpenSnapshot implements Engine with stored's OpenSnapshot.
func (s *Stored) OpenSnapshot(ctx context.Context) (Snapshot, error) {
	sn, err := s.c.OpenSnapshot(ctx, storedLease)
	if err != nil {
		return nil, fmt.Errorf("storage: stored snapshot: %w", err)
	}
	return storedSnapshot{sn: sn, scan: s.scanSnapshots}, nil
}

type storedSnapshot struct {
	sn   *storeclient.Snapshot
	scan bool // StreamRange reads with ScanRange
}

func (s storedSnapshot) Get(ctx context.Context, cf CF, key []byte) ([]byte, bool, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, false, err
	}
	v, ok, err := s.sn.Get(ctx, scf, key)
	if err != nil {
		return nil, false, fmt.Errorf("storage: stored snapshot get: %w", err)
	}
	return v, ok, nil
}

func (s storedSnapshot) StreamRange(ctx context.Context, cf CF, start, end []byte, chunkBytes int, fn func([]KV) error) error {
	scf, err := storeCF(cf)
	if err != nil {
		return err
	}
	read := s.sn.StreamRange
	if s.scan {
		read = s.sn.ScanRange
	}
	err = read(ctx, storeclient.Span{CF: scf, Start: start, End: end}, chunkBytes, func(chunk []storeclient.KV) error {
		kvs := make([]KV, 0, len(chunk))
		for _, kv := range chunk {
			kvs = append(kvs, KV{Key: kv.Key, Value: kv.Value})
		}
		return fn(kvs)
	})
	if err != nil {
		return fmt.Errorf("storage: stored stream: %w", err)
	}
	return nil
}

func (s storedSnapshot) Release(ctx context.Context) error { return s.sn.Release(ctx) }

// IngestRange implements Engine with stored's IngestRange.
func (s *Stored) IngestRange(ctx context.Context, cf CF, start, end []byte) (Ingest, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, err
	}
	if end == nil {
		end = maxKeyEnd
	}
	in, err := s.c.IngestRange(ctx, storeclient.Span{CF: scf, Start: start, End: end}, storedLease)
	if err != nil {
		return nil, fmt.Errorf("storage: stored ingest: %w", err)
	}
	return storedIngest{in}, nil
}

type storedIngest struct{ in *storeclient.Ingest }

func (s storedIngest) Add(ctx context.Context, kvs ...KV) error {
	skvs := make([]storeclient.KV, len(kvs))
	for i, kv := range kvs {
		skvs[i] = storeclient.KV{Key: kv.Key, Value: kv.Value}
	}
	if err := s.in.Add(ctx, skvs...); err != nil {
		return fmt.Errorf("storage: stored ingest add: %w", err)
	}
	return nil
}

func (s storedIngest) Finish(ctx context.Context) error {
	if _, err := s.in.Finish(ctx); err != nil {
		return fmt.Errorf("storage: stored ingest finish: %w", err)
	}
	return nil
}

func (s storedIngest) Abort(ctx context.Context) error { return s.in.Abort(ctx) }
