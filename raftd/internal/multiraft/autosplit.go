package multiraft

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// splitLoop splits, every SplitCheckInterval, the user ranges this node
// leads whose data grew past SplitBytes, at their middle key.
func (s *Store) splitLoop() {
	defer s.wg.Done()
	if s.cfg.SplitBytes <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.SplitCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
		for _, r := range s.Replicas() {
			if s.stopping() {
				return
			}
			// A range is measured once its writes since the last
			// measure could have taken it past the threshold (at first,
			// every range is).
			if r.rangeID == MetaRangeID || !r.IsLeader() || r.written.Load() < s.cfg.SplitBytes/8 {
				continue
			}
			r.written.Store(0)
			ctx, cancel := context.WithTimeout(s.ctx, 10*s.cfg.StorageTimeout)
			key, err := s.splitKeyBySize(ctx, r.Descriptor())
			if err == nil && key != nil {
				_, err = s.AdminSplit(ctx, &kvpb.AdminSplitRequest{Header: &kvpb.Header{}, Key: key})
				if err == nil {
					s.metrics.autoSplits.Add(1)
				}
			}
			cancel()
			if err != nil && !s.stopping() {
				s.log.Warn("automatic split failed", slog.Uint64("range", r.rangeID), slog.Any("error", err))
			}
		}
	}
}

// splitKeyBySize returns the key that halves d's data by size when it
// holds more than SplitBytes (nil otherwise): keys-only scans, whose
// byte budget counts the values too, find the middle and whether as much
// again follows.
func (s *Store) splitKeyBySize(ctx context.Context, d *kvpb.RangeDescriptor) ([]byte, error) {
	half := int(min(s.cfg.SplitBytes/2, 1<<30))
	start, end := clipSpan(nil, nil, d)
	first, err := s.d.Engine.Scan(ctx, storage.Data, start, end, storage.ScanOptions{KeysOnly: true, MaxBytes: half})
	if err != nil || len(first) == 0 {
		return nil, err
	}
	mid := first[len(first)-1].Key
	rest, err := s.d.Engine.Scan(ctx, storage.Data, append(bytes.Clone(mid), 0), end, storage.ScanOptions{KeysOnly: true, MaxBytes: half})
	if err != nil || len(rest) == 0 {
		return nil, err
	}
	more, err := s.d.Engine.Scan(ctx, storage.Data, append(bytes.Clone(rest[len(rest)-1].Key), 0), end, storage.ScanOptions{KeysOnly: true, Limit: 1})
	if err != nil || len(more) == 0 {
		return nil, err // the second half ended below its budget
	}
	// The right side starts after the middle key.
	key := rest[0].Key
	if !spanContains(d, key) || bytes.Equal(key, d.GetStartKey()) || key[0] == 0x00 || bytes.HasPrefix(key, []byte{0xff, 0xff}) {
		return nil, nil
	}
	return bytes.Clone(key), nil
}
