package multiraft

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// splitLoop splits, every SplitCheckInterval, the user ranges this node
// leads whose data grew past SplitBytes, at the end of its first half, and those
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
			// A range's size is measured when its last measure plus the
			// bytes written since (an estimate: overwrites and deletes
			// count as growth) reach the threshold; at first every range
			// is measured once (sizeEst starts at -1).
			est := r.sizeEst.Load()
			if est >= 0 {
				est += r.written.Swap(0)
				r.sizeEst.Store(est)
			}
			bySize := s.cfg.SplitBytes > 0 && (est < 0 || est >= s.cfg.SplitBytes)
			if r.rangeID == MetaRangeID || !r.IsLeader() || (!bySize && byLoad == nil) {
				continue
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*s.cfg.StorageTimeout)
			key, err := byLoad, error(nil)
			if key == nil {
				r.written.Store(0)
				var size int64
				key, size, err = s.splitKeyBySize(ctx, r.Descriptor())
				if err == nil {
					r.sizeEst.Store(size)
				}
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

// sizePage bounds one page of a size measure.
const sizePage = 4 << 20

// splitKeyBySize measures d's data (keys and values as stored, read a
// page at a time) up to SplitBytes: past it, it returns the key at which
// the first half of SplitBytes ended (the right side starts there), else
// nil. size is what it read (all of the range's data when below the
// threshold).
func (s *Store) splitKeyBySize(ctx context.Context, d *kvpb.RangeDescriptor) (key []byte, size int64, err error) {
	half := s.cfg.SplitBytes / 2
	from, end := clipSpan(nil, nil, d)
	for {
		kvs, err := s.d.Engine.Scan(ctx, storage.Data, from, end, storage.ScanOptions{Limit: 4096, MaxBytes: sizePage})
		if err != nil {
			return nil, size, err
		}
		for _, kv := range kvs {
			if size >= half && key == nil {
				key = bytes.Clone(kv.Key)
			}
			size += int64(len(kv.Key) + len(kv.Value))
			if size > s.cfg.SplitBytes && key != nil {
				if !spanContains(d, key) || bytes.Equal(key, d.GetStartKey()) || key[0] == 0x00 || bytes.HasPrefix(key, []byte{0xff, 0xff}) {
					return nil, size, nil
				}
				return key, size, nil
			}
		}
		if len(kvs) == 0 || (len(kvs) < 4096 && pageBytes(kvs) < sizePage) {
			return nil, size, nil
		}
		from = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
	}
}

func pageBytes(kvs []storage.KV) int {
	n := 0
	for _, kv := range kvs {
		n += len(kv.Key) + len(kv.Value)
	}
	return n
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

// loadWindow is how many whole seconds a leader's request rate spans
// (ReplicaStatus.requests_per_sec).
const loadWindow = 10

// loadMeter counts requests per second of the clock in a ring of
// loadWindow+1 slots (the seconds of the window and the current one),
// without locks: a slot is claimed for its second by a compare-and-swap
// of its second, then zeroed. A request counted by another goroutine
// between the two can be lost; the rate is an estimate.
type loadMeter struct {
	slots [loadWindow + 1]struct {
		sec atomic.Int64
		n   atomic.Uint64
	}
}

// add counts one request at now.
func (m *loadMeter) add(now time.Time) {
	sec := now.Unix()
	s := &m.slots[sec%int64(len(m.slots))]
	if old := s.sec.Load(); old != sec && s.sec.CompareAndSwap(old, sec) {
		s.n.Store(0)
	}
	s.n.Add(1)
}

// rate returns the requests per second over the loadWindow whole seconds
// before now's.
func (m *loadMeter) rate(now time.Time) float64 {
	cur := now.Unix()
	var n uint64
	for i := range m.slots {
		s := &m.slots[i]
		if sec := s.sec.Load(); sec < cur && sec >= cur-loadWindow {
			n += s.n.Load()
		}
	}
	return float64(n) / loadWindow
}

// RequestsPerSec returns the key requests this replica served as leader
// per second over the last loadWindow whole seconds.
func (r *Replica) RequestsPerSec() float64 { return r.meter.rate(time.Now()) }

// noteRequest counts a request for key served by this replica (leader):
// in its request rate, and, with splits by load, in the window's load.
func (r *Replica) noteRequest(key []byte) {
	r.meter.add(time.Now())
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
