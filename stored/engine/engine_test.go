package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/stored/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testOptions() engine.Options {
	o := engine.DefaultOptions()
	o.BlockCacheBytes = 8 << 20
	o.WriteBufferBytes = 4 << 20
	o.MaxKeyBytes = 16
	o.MaxValueBytes = 64
	o.MaxBatchBytes = 256
	return o
}

func open(t testing.TB, dir string, o engine.Options) *engine.Engine {
	t.Helper()
	e, err := engine.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func write(t testing.TB, e *engine.Engine, sync bool, fill func(b *engine.Batch)) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	fill(b)
	if _, err := e.Write(b, sync); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, e *engine.Engine, cf engine.CF, key string, snap *engine.Snapshot) (string, bool) {
	t.Helper()
	v, ok, err := e.Get(cf, []byte(key), snap)
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

// dump returns every entry of every family as "cf/key=value" lines.
func dump(t testing.TB, e *engine.Engine) string {
	t.Helper()
	var sb strings.Builder
	for _, cf := range engine.CFs() {
		p, err := e.Scan(engine.Span{CF: cf}, engine.ScanOptions{Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range p.KVs {
			fmt.Fprintf(&sb, "%s/%s=%s\n", cf, kv.Key, kv.Value)
		}
	}
	return sb.String()
}

func TestRejectedBatchLeavesNoTrace(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	write(t, e, true, func(b *engine.Batch) { b.Put(engine.Data, []byte("keep"), []byte("v")) })
	before := dump(t, e)
	long := bytes.Repeat([]byte("k"), 17)
	for _, tt := range []struct {
		name string
		bad  func(b *engine.Batch)
	}{
		{"unknown cf", func(b *engine.Batch) { b.Put(engine.CF(9), []byte("a"), nil) }},
		{"cf zero (default)", func(b *engine.Batch) { b.Delete(engine.CF(0), []byte("a")) }},
		{"empty key put", func(b *engine.Batch) { b.Put(engine.Data, nil, []byte("v")) }},
		{"empty key delete", func(b *engine.Batch) { b.Delete(engine.Raft, []byte{}) }},
		{"key over limit", func(b *engine.Batch) { b.Put(engine.Data, long, nil) }},
		{"value over limit", func(b *engine.Batch) { b.Put(engine.Data, []byte("a"), make([]byte, 65)) }},
		{"batch over limit", func(b *engine.Batch) {
			for i := 0; i < 10; i++ {
				b.Put(engine.Data, []byte{byte('a' + i)}, make([]byte, 60))
			}
		}},
		{"range start > end", func(b *engine.Batch) {
			b.DeleteRange(engine.Span{CF: engine.Data, Start: []byte("z"), End: []byte("a")})
		}},
		{"range without end", func(b *engine.Batch) { b.DeleteRange(engine.Span{CF: engine.Data, Start: []byte("a")}) }},
		{"range unknown cf", func(b *engine.Batch) { b.DeleteRange(engine.Span{CF: 7, End: []byte("a")}) }},
		{"range bound over limit", func(b *engine.Batch) { b.DeleteRange(engine.Span{CF: engine.Data, End: long}) }},
		{"closed batch", func(b *engine.Batch) { b.Close() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := e.NewBatch()
			defer b.Close()
			// Valid operations first: they must not land either.
			b.Put(engine.Local, []byte("x"), []byte("1"))
			b.DeleteRange(engine.Span{CF: engine.Data, Start: []byte("a"), End: []byte("zz")})
			tt.bad(b)
			b.Put(engine.Raft, []byte("y"), []byte("2"))
			for _, sync := range []bool{false, true} {
				_, err := e.Write(b, sync)
				if !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("Write(sync=%v) = %v; want ErrInvalid", sync, err)
				}
			}
			if got := dump(t, e); got != before {
				t.Errorf("after a rejected batch the store holds\n%s\nwant\n%s", got, before)
			}
		})
	}
}

func TestReadValidation(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	long := bytes.Repeat([]byte("k"), 17)
	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"get empty key", func() error { _, _, err := e.Get(engine.Data, nil, nil); return err }},
		{"get long key", func() error { _, _, err := e.Get(engine.Data, long, nil); return err }},
		{"get unknown cf", func() error { _, _, err := e.Get(99, []byte("a"), nil); return err }},
		{"multiget empty key", func() error { _, _, err := e.MultiGet(engine.Data, [][]byte{[]byte("a"), nil}, nil); return err }},
		{"scan start > end", func() error {
			_, err := e.Scan(engine.Span{CF: engine.Data, Start: []byte("b"), End: []byte("a")}, engine.ScanOptions{})
			return err
		}},
		{"scan unknown cf", func() error { _, err := e.Scan(engine.Span{CF: 0}, engine.ScanOptions{}); return err }},
		{"scan negative limit", func() error {
			_, err := e.Scan(engine.Span{CF: engine.Data}, engine.ScanOptions{Limit: -1})
			return err
		}},
		{"size start > end", func() error {
			_, err := e.ApproximateSize(engine.Span{CF: engine.Data, Start: []byte("b"), End: []byte("a")})
			return err
		}},
		{"compact unknown cf", func() error { return e.Compact(engine.Span{CF: 12}) }},
		{"checkpoint existing dir", func() error { return e.Checkpoint(t.TempDir()) }},
		{"stream start > end", func() error {
			return e.Stream(engine.Span{CF: engine.Data, Start: []byte("b"), End: []byte("a")}, nil, 0, nil, nil)
		}},
	} {
		if err := tt.call(); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%s: err = %v; want ErrInvalid", tt.name, err)
		}
	}
}

func TestWriteReadScan(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	write(t, e, true, func(b *engine.Batch) {
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			b.Put(engine.Data, []byte(k), []byte("v"+k))
		}
		b.Put(engine.Raft, []byte("a"), []byte("raft"))
	})
	write(t, e, false, func(b *engine.Batch) {
		b.Delete(engine.Data, []byte("b"))
		b.DeleteRange(engine.Span{CF: engine.Data, Start: []byte("d"), End: []byte("e")})
	})
	if v, ok := get(t, e, engine.Data, "a", nil); !ok || v != "va" {
		t.Errorf("Get(a) = %q, %v; want va", v, ok)
	}
	if _, ok := get(t, e, engine.Data, "b", nil); ok {
		t.Error("deleted b found")
	}
	if v, _ := get(t, e, engine.Raft, "a", nil); v != "raft" {
		t.Errorf("raft/a = %q; want raft (families are separate)", v)
	}
	vals, found, err := e.MultiGet(engine.Data, [][]byte{[]byte("c"), []byte("d"), []byte("a")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !found[0] || found[1] || !found[2] || string(vals[0]) != "vc" || string(vals[2]) != "va" {
		t.Errorf("MultiGet = %q %v", vals, found)
	}
	if got, want := dump(t, e), "raft/a=raft\ndata/a=va\ndata/c=vc\ndata/e=ve\n"; got != want {
		t.Errorf("dump =\n%s\nwant\n%s", got, want)
	}

	for _, tt := range []struct {
		name string
		span engine.Span
		o    engine.ScanOptions
		want []string // pages of keys
	}{
		{"forward pages", engine.Span{CF: engine.Data}, engine.ScanOptions{Limit: 2}, []string{"a c", "e"}},
		{"reverse pages", engine.Span{CF: engine.Data}, engine.ScanOptions{Limit: 2, Reverse: true}, []string{"e c", "a"}},
		{"bounded", engine.Span{CF: engine.Data, Start: []byte("b"), End: []byte("e")}, engine.ScanOptions{}, []string{"c"}},
		{"byte cap", engine.Span{CF: engine.Data}, engine.ScanOptions{MaxBytes: 1}, []string{"a", "c", "e"}},
		{"reverse bounded", engine.Span{CF: engine.Data, Start: []byte("a"), End: []byte("e")}, engine.ScanOptions{Reverse: true, Limit: 1}, []string{"c", "a"}},
		{"keys only", engine.Span{CF: engine.Data}, engine.ScanOptions{KeysOnly: true}, []string{"a c e"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			span := tt.span
			var pages []string
			for i := 0; i < 10; i++ {
				p, err := e.Scan(span, tt.o)
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, kv := range p.KVs {
					keys = append(keys, string(kv.Key))
					if tt.o.KeysOnly != (kv.Value == nil) {
						t.Errorf("key %s value %q with KeysOnly %v", kv.Key, kv.Value, tt.o.KeysOnly)
					}
				}
				pages = append(pages, strings.Join(keys, " "))
				if !p.More {
					break
				}
				if tt.o.Reverse {
					span.End = p.Resume
				} else {
					span.Start = p.Resume
				}
			}
			if got := strings.Join(pages, "|"); got != strings.Join(tt.want, "|") {
				t.Errorf("pages = %q; want %q", got, strings.Join(tt.want, "|"))
			}
		})
	}
}

func TestSnapshotIsolation(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	write(t, e, false, func(b *engine.Batch) { b.Put(engine.Data, []byte("k"), []byte("old")) })
	snap, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, false, func(b *engine.Batch) {
		b.Put(engine.Data, []byte("k"), []byte("new"))
		b.Put(engine.Data, []byte("k2"), []byte("new"))
	})
	if v, _ := get(t, e, engine.Data, "k", snap); v != "old" {
		t.Errorf("Get at snapshot = %q; want old", v)
	}
	if _, ok := get(t, e, engine.Data, "k2", snap); ok {
		t.Error("k2, written after the snapshot, is visible at it")
	}
	p, err := e.Scan(engine.Span{CF: engine.Data}, engine.ScanOptions{Snapshot: snap})
	if err != nil || len(p.KVs) != 1 || string(p.KVs[0].Value) != "old" {
		t.Errorf("Scan at snapshot = %v, %v; want [k=old]", p.KVs, err)
	}
	if v, _ := get(t, e, engine.Data, "k", nil); v != "new" {
		t.Errorf("latest Get = %q; want new", v)
	}
	snap.Release()
	snap.Release()
	if _, _, err := e.Get(engine.Data, []byte("k"), snap); !errors.Is(err, engine.ErrReleased) {
		t.Errorf("Get at released snapshot: %v; want ErrReleased", err)
	}
}

func TestStreamChunks(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	var want []string
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("k%03d", i)
		write(t, e, false, func(b *engine.Batch) { b.Put(engine.Data, []byte(k), []byte("value")) })
		want = append(want, k)
	}
	var got []string
	chunks := 0
	err := e.Stream(engine.Span{CF: engine.Data}, nil, 40, func() error { return nil }, func(kvs []engine.KV) error {
		chunks++
		for _, kv := range kvs {
			got = append(got, string(kv.Key))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("streamed %v; want %v", got, want)
	}
	if chunks < 10 {
		t.Errorf("%d chunks of ~40 bytes for 450 bytes; want at least 10", chunks)
	}
	stopErr := errors.New("stop")
	if err := e.Stream(engine.Span{CF: engine.Data}, nil, 1, func() error { return stopErr }, func([]engine.KV) error { return nil }); !errors.Is(err, stopErr) {
		t.Errorf("stopped stream = %v; want %v", err, stopErr)
	}
}

func TestConcurrentSyncWritersShareFsyncs(t *testing.T) {
	e := open(t, t.TempDir(), engine.DefaultOptions())
	const writers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := e.NewBatch()
			defer b.Close()
			for i := 0; i < each; i++ {
				b.Reset()
				b.Put(engine.Raft, []byte(fmt.Sprintf("w%02d/%03d", w, i)), []byte("entry"))
				b.Put(engine.Raft, []byte(fmt.Sprintf("w%02d/last", w)), []byte(fmt.Sprint(i)))
				if _, err := e.Write(b, true); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p, err := e.Scan(engine.Span{CF: engine.Raft}, engine.ScanOptions{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.KVs) != writers*(each+1) {
		t.Errorf("%d entries; want %d", len(p.KVs), writers*(each+1))
	}
	writes, syncWrites, walSyncs := e.Counters()
	if writes != writers*each || syncWrites != writers*each {
		t.Errorf("writes %d, sync writes %d; want %d each", writes, syncWrites, writers*each)
	}
	if walSyncs == 0 || walSyncs > syncWrites {
		t.Errorf("wal syncs %d for %d sync writes; want 1..%d", walSyncs, syncWrites, syncWrites)
	}
	t.Logf("%d sync writes, %d WAL fsyncs", syncWrites, walSyncs)
}

func TestReopenAfterCleanClose(t *testing.T) {
	dir := t.TempDir()
	e, err := engine.Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, false, func(b *engine.Batch) { b.Put(engine.Local, []byte("id"), []byte("7")) })
	write(t, e, true, func(b *engine.Batch) { b.Put(engine.Data, []byte("k"), []byte("v")) })
	snap, _ := e.NewSnapshot() // left open: Close must release it
	want := dump(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	snap.Release()
	if _, _, err := e.Get(engine.Data, []byte("k"), nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Get after Close = %v; want ErrClosed", err)
	}
	e2 := open(t, dir, testOptions())
	if got := dump(t, e2); got != want {
		t.Errorf("after reopen:\n%s\nwant\n%s", got, want)
	}
}

func TestCheckpointOpens(t *testing.T) {
	e := open(t, t.TempDir(), testOptions())
	write(t, e, true, func(b *engine.Batch) { b.Put(engine.Data, []byte("k"), []byte("v")) })
	cp := filepath.Join(t.TempDir(), "cp")
	if err := e.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	write(t, e, true, func(b *engine.Batch) { b.Put(engine.Data, []byte("later"), []byte("v")) })
	c := open(t, cp, testOptions())
	if got, want := dump(t, c), "data/k=v\n"; got != want {
		t.Errorf("checkpoint holds\n%s\nwant\n%s", got, want)
	}
}

func TestStatsAndSizes(t *testing.T) {
	e := open(t, t.TempDir(), engine.DefaultOptions())
	write(t, e, true, func(b *engine.Batch) {
		for i := 0; i < 1000; i++ {
			b.Put(engine.Data, []byte(fmt.Sprintf("k%05d", i)), bytes.Repeat([]byte{byte(i)}, 100))
		}
	})
	if err := e.Compact(engine.Span{CF: engine.Data}); err != nil {
		t.Fatal(err)
	}
	n, err := e.ApproximateSize(engine.Span{CF: engine.Data})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10000 {
		t.Errorf("ApproximateSize after compaction = %d; want >= 10000 (100 KB written)", n)
	}
	if _, _, err := e.Get(engine.Data, []byte("k00001"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var data engine.CFStats
	for _, c := range st.CFs {
		if c.CF == engine.Data {
			data = c
		}
	}
	if data.SSTBytes == 0 || data.EstimatedKeys == 0 {
		t.Errorf("data family stats %+v; want SST bytes and keys", data)
	}
	if st.Writes != 1 || st.SyncWrites != 1 || st.WALSyncs != 1 {
		t.Errorf("counters %d/%d/%d; want 1/1/1", st.Writes, st.SyncWrites, st.WALSyncs)
	}
	if st.BlockCacheCapacity != engine.DefaultOptions().BlockCacheBytes || st.BlockCacheHits+st.BlockCacheMisses == 0 {
		t.Errorf("block cache capacity %d, lookups %d", st.BlockCacheCapacity, st.BlockCacheHits+st.BlockCacheMisses)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*engine.Options)
		ok   bool
	}{
		{"default", func(*engine.Options) {}, true},
		{"tiny cache", func(o *engine.Options) { o.BlockCacheBytes = 1 }, false},
		{"bad compression", func(o *engine.Options) { o.Compression = []string{"lz4", "brotli"} }, false},
		{"no compression list", func(o *engine.Options) { o.Compression = nil }, false},
		{"zero key limit", func(o *engine.Options) { o.MaxKeyBytes = 0 }, false},
		{"one write buffer", func(o *engine.Options) { o.MaxWriteBuffers = 1 }, false},
		{"no bloom", func(o *engine.Options) { o.BloomBitsPerKey = 0 }, true},
	} {
		o := engine.DefaultOptions()
		tt.mod(&o)
		if err := o.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// TestGroupCommit holds the first WAL fsync, queues sync writers behind
// it and checks that one more fsync serves them all, and that an unsynced
// write completes while the fsync is held.
func TestGroupCommit(t *testing.T) {
	entered := make(chan struct{}, 100)
	hold := make(chan struct{})
	o := testOptions()
	var first sync.Once
	o.Knobs = &engine.Knobs{BeforeWALSync: func() {
		entered <- struct{}{}
		first.Do(func() { <-hold })
	}}
	e := open(t, t.TempDir(), o)
	put := func(key string, sync bool) error {
		b := e.NewBatch()
		b.Put(engine.Raft, []byte(key), []byte("v"))
		_, err := e.Write(b, sync)
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	wg.Add(1)
	go func() { defer wg.Done(); errs <- put("leader", true) }()
	<-entered // the leader's fsync is held

	// An unsynced write does not wait for the held fsync.
	if err := put("async", false); err != nil {
		t.Fatal(err)
	}
	const followers = 10
	for i := 0; i < followers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- put(fmt.Sprintf("f%d", i), true) }()
	}
	// Wait until every follower holds its ticket behind the held fsync.
	for {
		if _, syncWrites, _ := e.Counters(); syncWrites == followers+1 {
			break
		}
		runtime.Gosched()
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	writes, syncWrites, walSyncs := e.Counters()
	if writes != followers+2 || syncWrites != followers+1 {
		t.Errorf("writes %d, sync writes %d; want %d, %d", writes, syncWrites, followers+2, followers+1)
	}
	if walSyncs != 2 {
		t.Errorf("%d WAL fsyncs for 1 leader and %d queued followers; want 2 (one for the queue)", walSyncs, followers)
	}
	t.Logf("%d WAL fsyncs for %d sync writes", walSyncs, syncWrites)
}

func TestIngesterReplacesSpan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	e := open(t, dir, testOptions())
	write(t, e, true, func(b *engine.Batch) {
		for _, k := range []string{"a", "b", "c", "m", "x"} {
			b.Put(engine.Data, []byte(k), []byte("old"))
		}
		b.Put(engine.Raft, []byte("b"), []byte("other family"))
	})
	snap, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()

	in, err := e.NewIngester(engine.Span{CF: engine.Data, Start: []byte("b"), End: []byte("m")})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, k := range []string{"b", "d"} {
		if err := in.Put([]byte(k), []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ key, value string }{
		{"c", "v"},                      // not above d
		{"n", "v"},                      // outside the span
		{"e", strings.Repeat("v", 100)}, // over the value limit
	} {
		if err := in.Put([]byte(tt.key), []byte(tt.value)); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("Put(%q): %v; want ErrInvalid", tt.key, err)
		}
	}
	if v, _ := get(t, e, engine.Data, "c", nil); v != "old" {
		t.Fatalf("c = %q before the ingest; want old", v)
	}
	if _, err := in.Ingest(); err != nil {
		t.Fatal(err)
	}
	want := "|raft/b=other family|data/a=old,data/b=new,data/d=new,data/m=old,data/x=old"
	if got := dumpLine(t, e); got != want {
		t.Errorf("after the ingest:\n%s\nwant\n%s", got, want)
	}
	if v, ok := get(t, e, engine.Data, "c", snap); !ok || v != "old" {
		t.Errorf("c at the snapshot taken before = %q, %v; want old", v, ok)
	}

	// Nothing added: the span is emptied. Closed without Ingest: nothing
	// changes and no file is left.
	empty, err := e.NewIngester(engine.Span{CF: engine.Data, Start: []byte("a"), End: []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Ingest(); err != nil {
		t.Fatal(err)
	}
	empty.Close()
	dropped, err := e.NewIngester(engine.Span{CF: engine.Data, Start: []byte("m"), End: []byte("z")})
	if err != nil {
		t.Fatal(err)
	}
	if err := dropped.Put([]byte("n"), []byte("never")); err != nil {
		t.Fatal(err)
	}
	dropped.Close()
	want = "|raft/b=other family|data/d=new,data/m=old,data/x=old"
	if got := dumpLine(t, e); got != want {
		t.Errorf("after an empty and a dropped ingest:\n%s\nwant\n%s", got, want)
	}
	if ents, _ := os.ReadDir(dir + ".ingest"); len(ents) != 0 {
		t.Errorf("%d files left in the ingest directory", len(ents))
	}

	// Durable: a reopened engine has it.
	e.Close()
	e = open(t, dir, testOptions())
	if got := dumpLine(t, e); got != want {
		t.Errorf("reopened:\n%s\nwant\n%s", got, want)
	}
	if _, err := e.NewIngester(engine.Span{CF: engine.Data, Start: []byte("a")}); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("ingest without a span end: %v; want ErrInvalid", err)
	}
}

// dumpLine is dump on one line: families separated by |, entries by ,.
func dumpLine(t testing.TB, e *engine.Engine) string {
	var fams []string
	for _, cf := range []engine.CF{engine.Local, engine.Raft, engine.Data} {
		page, err := e.Scan(engine.Span{CF: cf}, engine.ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var kvs []string
		for _, kv := range page.KVs {
			kvs = append(kvs, fmt.Sprintf("%v/%s=%s", cf, kv.Key, kv.Value))
		}
		fams = append(fams, strings.Join(kvs, ","))
	}
	return strings.Join(fams, "|")
}
