package storage

import (
	"context"
	"fmt"

	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// Stored is the production Engine: the node's stored over the bus.
type Stored struct {
	c *storeclient.Client
}

// NewStored returns an Engine calling stored through c.
func NewStored(c *storeclient.Client) *Stored { return &Stored{c: c} }

func storeCF(cf CF) (storeclient.CF, error) {
	switch cf {
	case Local:
		return storeclient.Local, nil
	case Raft:
		return storeclient.Raft, nil
	case Data:
		return storeclient.Data, nil
	}
	return 0, fmt.Errorf("storage: unknown column family %d", cf)
}

// Write implements Engine.
func (s *Stored) Write(ctx context.Context, ops []Op, sync bool) error {
	var b storeclient.Batch
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
			if op.End == nil {
				return fmt.Errorf("storage: delete range without end")
			}
			b.DeleteRange(cf, op.Key, op.End)
		default:
			return fmt.Errorf("storage: unknown op kind %d", op.Kind)
		}
	}
	if _, err := s.c.Write(ctx, &b, sync); err != nil {
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

// Scan implements Engine, paging through stored as needed.
func (s *Stored) Scan(ctx context.Context, cf CF, start, end []byte, limit int, reverse bool) ([]KV, error) {
	scf, err := storeCF(cf)
	if err != nil {
		return nil, err
	}
	opts := storeclient.ScanOptions{Reverse: reverse}
	if limit > 0 {
		opts.Limit = limit
	}
	it := s.c.Iterator(storeclient.Span{CF: scf, Start: start, End: end}, opts)
	var out []KV
	for (limit == 0 || len(out) < limit) && it.Next(ctx) {
		kv := it.KV()
		out = append(out, KV{Key: kv.Key, Value: kv.Value})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("storage: stored scan: %w", err)
	}
	return out, nil
}
