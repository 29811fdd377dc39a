package multiraft

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// batchLimitEngine refuses writes over limit bytes, as stored refuses a
// batch over its MaxBatchBytes, and records the largest it took.
type batchLimitEngine struct {
	storage.Engine
	limit   uint64
	largest atomic.Uint64
}

func (e *batchLimitEngine) Write(ctx context.Context, ops []storage.Op, sync bool) error {
	n := opsBytes(ops)
	if n > e.limit {
		return fmt.Errorf("batch of %d bytes over the limit of %d (test)", n, e.limit)
	}
	for {
		l := e.largest.Load()
		if n <= l || e.largest.CompareAndSwap(l, n) {
			break
		}
	}
	return e.Engine.Write(ctx, ops, sync)
}

// TestDeleteRangeOfManyKeys range-deletes many more keys than one engine
// write may carry tombstones for (an engine that refuses larger writes,
// as stored does, scaled down): the delete applies, counts every key,
// leaves none live, writes a tombstone for each, and scans at a
// timestamp before and after it find every key and none.
func TestDeleteRangeOfManyKeys(t *testing.T) {
	const keys = 20000
	c := newTestCluster(t, 1, nil, func(cfg *Config) {
		cfg.DeleteRangeBatchBytes = 16 << 10
		cfg.MaxRoundWriteBytes = 64 << 10
		cfg.VersionGCInterval = -1
	})
	lim := &batchLimitEngine{Engine: c.disks[1].Engine, limit: 256 << 10}
	c.stop(1)
	c.disks[1].Engine = lim
	c.start(1)
	c.bootstrap(&kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	w := &sessWriter{c: c}
	loadKeys(t, ctx, c, w, keys, 500)
	before := c.store(1).d.Clock.Now()
	// A watch of the span takes every tombstone, those written ahead
	// included, once each.
	var mu sync.Mutex
	deletes := map[string]int{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watching, watched := make(chan struct{}), make(chan error, 1)
	go func() {
		first := true
		watched <- c.store(1).Watch(wctx, &kvpb.WatchRequest{Start: []byte("key-"), End: []byte("key-~"), CheckpointMillis: 20}, func(r *kvpb.WatchResponse) error {
			if first {
				first = false
				close(watching)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range r.GetEvents() {
				if ev.GetDeleted() {
					deletes[string(ev.GetKey())]++
				}
			}
			return nil
		})
	}()
	<-watching
	h := w.header()
	var resp *kvpb.DeleteRangeResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Header: h, Start: []byte("key-"), End: []byte("key-~")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if resp.GetDeleted() != keys {
		t.Errorf("DeleteRange deleted %d; want %d", resp.GetDeleted(), keys)
	}
	after := c.store(1).d.Clock.Now()
	for _, tc := range []struct {
		name string
		at   hlc.Timestamp
		want int
	}{
		{"latest", hlc.Timestamp{}, 0},
		{"before the delete", before, keys},
		{"after the delete", after, 0},
	} {
		req := &kvpb.ScanRequest{Start: []byte("key-"), End: []byte("key-~"), KeysOnly: true, Limit: 5000}
		if !tc.at.IsZero() {
			req.ReadAt = tc.at.Proto()
		}
		got, err := c.scanPages(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("scan %s found %d keys; want %d", tc.name, len(got), tc.want)
		}
	}
	tombs := 0
	for _, kv := range c.versionsOf(1) {
		if _, _, deleted, _ := storage.DecodeRecord(kv.Value); deleted {
			tombs++
		}
	}
	if tombs != keys {
		t.Errorf("%d tombstones; want %d", tombs, keys)
	}
	waitFor(t, 10*time.Second, "the watch to take every tombstone", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deletes) == keys
	})
	wcancel()
	<-watched
	for k, n := range deletes {
		if n != 1 {
			t.Errorf("the watch took %d deletes of %s; want 1", n, k)
		}
	}
	t.Logf("largest write %d bytes (limit %d)", lim.largest.Load(), lim.limit)
}

// failRangeDeleteEngine refuses, while armed, every write that carries a
// range delete of the data family: the round's write of a DeleteRange
// fails after its tombstones were written ahead, as a kill of stored
// between them would leave it.
type failRangeDeleteEngine struct {
	storage.Engine
	armed atomic.Bool
}

func (e *failRangeDeleteEngine) Write(ctx context.Context, ops []storage.Op, sync bool) error {
	for _, op := range ops {
		if e.armed.Load() && op.CF == storage.Data && op.Kind == storage.OpDeleteRange {
			return fmt.Errorf("stored killed (test)")
		}
	}
	return e.Engine.Write(ctx, ops, sync)
}

// TestDeleteRangeCutAfterTombstones fails the round's write of a range
// delete after its tombstones were written ahead, restarts the node, and
// checks the delete then completes: every key gone, one tombstone each,
// none twice, and the keys readable as of before it.
func TestDeleteRangeCutAfterTombstones(t *testing.T) {
	const keys = 3000
	c := newTestCluster(t, 1, nil, func(cfg *Config) {
		cfg.DeleteRangeBatchBytes = 8 << 10
		cfg.VersionGCInterval = -1
	})
	cut := &failRangeDeleteEngine{Engine: c.disks[1].Engine}
	c.stop(1)
	c.disks[1].Engine = cut
	c.start(1)
	c.bootstrap(&kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	w := &sessWriter{c: c}
	loadKeys(t, ctx, c, w, keys, 500)
	before := c.store(1).d.Clock.Now()
	cut.armed.Store(true)
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	// The answer may come (a committed command's is final) or not.
	_, _ = c.store(1).DeleteRange(dctx, &kvpb.DeleteRangeRequest{Header: w.header(), Start: []byte("key-"), End: []byte("key-~")})
	dcancel()
	tombs := func() int {
		n := 0
		for _, kv := range c.versionsOf(1) {
			if _, _, deleted, _ := storage.DecodeRecord(kv.Value); deleted {
				n++
			}
		}
		return n
	}
	if n := tombs(); n == 0 || n >= keys {
		t.Fatalf("%d tombstones written ahead; want some, not all %d", n, keys)
	}
	c.stop(1)
	cut.armed.Store(false)
	c.start(1)
	waitFor(t, 30*time.Second, "the range delete to apply after the restart", func() bool {
		got, err := c.scanPages(ctx, &kvpb.ScanRequest{Start: []byte("key-"), End: []byte("key-~"), KeysOnly: true})
		return err == nil && len(got) == 0
	})
	if n := tombs(); n != keys {
		t.Errorf("%d tombstones after the restart; want %d", n, keys)
	}
	got, err := c.scanPages(ctx, &kvpb.ScanRequest{Start: []byte("key-"), End: []byte("key-~"), KeysOnly: true, ReadAt: before.Proto()})
	if err != nil || len(got) != keys {
		t.Errorf("scan before the delete found %d keys, %v; want %d", len(got), err, keys)
	}
}

// BenchmarkDeleteRangeOfAMillionKeys range-deletes a million keys through
// an engine that refuses writes over stored's MaxBatchBytes (64 MiB),
// with the default DeleteRangeBatchBytes, and reports the largest write
// it made and the time of the delete.
//
//	go test ./raftd/internal/multiraft/ -run '^$' -bench BenchmarkDeleteRangeOfAMillionKeys -benchtime 1x
func BenchmarkDeleteRangeOfAMillionKeys(b *testing.B) {
	const keys = 1000000
	c := newTestCluster(b, 1, nil, func(cfg *Config) { cfg.VersionGCInterval = -1 })
	lim := &batchLimitEngine{Engine: c.disks[1].Engine, limit: 64 << 20}
	c.stop(1)
	c.disks[1].Engine = lim
	c.start(1)
	c.bootstrap(&kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	for b.Loop() {
		b.StopTimer()
		w := &sessWriter{c: c}
		loadKeys(b, ctx, c, w, keys, 2000)
		lim.largest.Store(0)
		b.StartTimer()
		h := w.header()
		var resp *kvpb.DeleteRangeResponse
		if err := c.do(ctx, func(ctx context.Context, s *Store) error {
			var err error
			resp, err = s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Header: h, Start: []byte("key-"), End: []byte("key-~")})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		if resp.GetDeleted() != keys {
			b.Fatalf("DeleteRange deleted %d; want %d", resp.GetDeleted(), keys)
		}
	}
	b.ReportMetric(float64(lim.largest.Load()), "largest-write-bytes")
}

// TestDeleteRangeRetryAfterSplitCountsOnce: a DeleteRange whose answer
// was lost is retried (same session write) after its range split, once
// and twice, and after a split inside its span: every retry answers the
// count of the first attempt, nothing more is deleted, and writes after
// it stand. Before each side of a split kept the whole count, a retry
// visiting both added it once per side.
func TestDeleteRangeRetryAfterSplitCountsOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start, end string
		splits     []string
		want       uint64
	}{
		{"span across the split", "k00", "k20", []string{"k10"}, 20},
		{"span starting right of the split", "k12", "k20", []string{"k10"}, 8},
		{"span ending left of the split", "k02", "k07", []string{"k10"}, 5},
		{"two splits inside the span", "k03", "", []string{"k10", "k15"}, 17},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3, &kvpb.InitRequest{})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			for i := range 20 {
				if err := c.put(ctx, fmt.Sprintf("k%02d", i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			sess := session(9, 1, 1, c.now())
			del := func() (uint64, error) {
				var resp *kvpb.DeleteRangeResponse
				err := c.do(ctx, func(ctx context.Context, s *Store) error {
					var err error
					resp, err = s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Header: hdr(sess), Start: []byte(tc.start), End: []byte(tc.end)})
					return err
				})
				return resp.GetDeleted(), err
			}
			first, err := del()
			if err != nil || first != tc.want {
				t.Fatalf("DeleteRange = %d, %v; want %d", first, err, tc.want)
			}
			// Written after the delete: a retry that applied again would
			// delete it.
			if err := c.put(ctx, tc.start, "after"); err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.splits {
				if _, err := c.split(ctx, k); err != nil {
					t.Fatalf("split at %s: %v", k, err)
				}
				for range 2 {
					n, err := del()
					if err != nil || n != first {
						t.Fatalf("retry after the split at %s = %d, %v; want the first count %d", k, n, err, first)
					}
				}
			}
			if v, _, err := c.get(ctx, tc.start); err != nil || v != "after" {
				t.Fatalf("%s = %q, %v after the retries; want the write after the delete", tc.start, v, err)
			}
		})
	}
}

// loadKeys writes key-00000000 .. key-<n-1> (value "v") in batches of
// per, through w's session.
func loadKeys(t testing.TB, ctx context.Context, c *testCluster, w *sessWriter, n, per int) {
	t.Helper()
	for i := 0; i < n; i += per {
		req := &kvpb.BatchRequest{Header: w.header()}
		for j := i; j < min(i+per, n); j++ {
			req.Ops = append(req.Ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte(fmt.Sprintf("key-%08d", j)), Value: []byte("v")}}})
		}
		if err := c.do(ctx, func(ctx context.Context, s *Store) error {
			_, err := s.Batch(ctx, req)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}
