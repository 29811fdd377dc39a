package multiraft

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// splitLoop splits, every SplitCheckInterval, the user ranges this node
// leads whose data grew past SplitBytes, at their middle key, and those
// that served more than SplitQPS requests a second, at the median of the
// keys requested.
func (s *Store) splitLoop() {
	defer s.wg.Done()
	if s.cfg.SplitBytes <= 0 && s.cfg.SplitQPS <= 0 {
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
			byLoad := r.loadSplitKey(s.cfg.SplitQPS, s.cfg.SplitCheckInterval)
			// A range is measured once its writes since the last
			// measure could have taken it past the threshold (at first,
			// every range is).
			bySize := s.cfg.SplitBytes > 0 && r.written.Load() >= s.cfg.SplitBytes/8
			if r.rangeID == MetaRangeID || !r.IsLeader() || (!bySize && byLoad == nil) {
				continue
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*s.cfg.StorageTimeout)
			key, err := byLoad, error(nil)
			if key == nil {
				r.written.Store(0)
				key, err = s.splitKeyBySize(ctx, r.Descriptor())
			}
			if err == nil && key != nil {
				_, err = s.AdminSplit(ctx, &kvpb.AdminSplitRequest{Header: &kvpb.Header{}, Key: key})
				if err == nil {
					s.metrics.autoSplits.Add(1)
					if byLoad != nil {
						s.metrics.loadSplits.Add(1)
					}
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

// loadSample is how many of a window's requested keys a leader keeps
// (reservoir sampling) to pick a split key by load.
const loadSample = 64

// loadStats counts a leader's requests in the current window and keeps a
// uniform sample of their keys.
type loadStats struct {
	sync.Mutex
	n      uint64
	sample [][]byte
	rng    *rand.Rand
}

// noteRequest counts a request for key served by this replica (leader).
func (r *Replica) noteRequest(key []byte) {
	if r.s.cfg.SplitQPS <= 0 {
		return
	}
	l := &r.load
	l.Lock()
	defer l.Unlock()
	l.n++
	switch {
	case len(l.sample) < loadSample:
		l.sample = append(l.sample, bytes.Clone(key))
	default:
		if l.rng == nil {
			l.rng = rand.New(rand.NewPCG(r.rangeID, uint64(time.Now().UnixNano())))
		}
		if i := l.rng.Uint64N(l.n); i < loadSample {
			l.sample[i] = bytes.Clone(key)
		}
	}
}

// loadSplitKey ends the window: when the range served more than qps
// requests a second over it (window long), it returns the median of the
// sampled keys that lie strictly inside the range, else nil.
func (r *Replica) loadSplitKey(qps float64, window time.Duration) []byte {
	l := &r.load
	l.Lock()
	n, sample := l.n, l.sample
	l.n, l.sample = 0, nil
	l.Unlock()
	if qps <= 0 || float64(n) < qps*window.Seconds() {
		return nil
	}
	d := r.Descriptor()
	inside := sample[:0]
	for _, k := range sample {
		if spanContains(d, k) && !bytes.Equal(k, d.GetStartKey()) && k[0] != 0x00 && !bytes.HasPrefix(k, []byte{0xff, 0xff}) {
			inside = append(inside, k)
		}
	}
	if len(inside) < 2 {
		return nil
	}
	slices.SortFunc(inside, bytes.Compare)
	return inside[len(inside)/2]
}
