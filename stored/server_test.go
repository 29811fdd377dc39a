package stored_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/stored"
	"github.com/pleiades-db/pleiades/stored/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(dir string) stored.Config {
	c := stored.DefaultConfig()
	c.Dir = dir
	c.Engine.BlockCacheBytes = 8 << 20
	c.Engine.WriteBufferBytes = 4 << 20
	c.Engine.MaxKeyBytes = 32
	c.Engine.MaxValueBytes = 1024
	c.Engine.MaxBatchBytes = 64 << 10
	c.ReapInterval = 5 * time.Millisecond
	// Small sizes: the auto floor and ballast of the machine's disk would
	// be up to 2 GiB and 1 GiB.
	c.MinFreeBytes, c.BallastBytes = 1<<20, 1<<20
	return c
}

// fakeClock is a settable lease clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type node struct {
	rt  *daemon.Runtime
	srv *stored.Server
	c   *storeclient.Client
	cli *daemon.Runtime // c's runtime
}

// startNode starts a stored server on its own runtime and returns it with
// a client calling it from another runtime. Both stop at cleanup.
func startNode(t testing.TB, cfg stored.Config, clock *fakeClock) *node {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, stored.Name, daemontest.CA(t), daemontest.Common(t))
	deps := stored.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID}
	if clock != nil {
		deps.Now = clock.Now
	}
	srv, err := stored.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	client := daemontest.NewSameNodeRuntime(t, "client", rt)
	if p := rt.Bus.LocalPath(); p != "" {
		if err := client.Bus.AddLocalPeer(rt.Bus.Addr().String(), p); err != nil {
			t.Fatal(err)
		}
	}
	return &node{rt: rt, srv: srv, c: storeclient.New(client.Bus, rt.Bus.Addr().String()), cli: client}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dump lists every entry of every family over the bus, paging through.
func dump(t *testing.T, c *storeclient.Client) string {
	t.Helper()
	var sb strings.Builder
	for _, cf := range []storeclient.CF{storeclient.Local, storeclient.Raft, storeclient.Data} {
		it := c.Iterator(storeclient.Span{CF: cf}, storeclient.ScanOptions{Limit: 7})
		for it.Next(ctxT(t)) {
			fmt.Fprintf(&sb, "%v/%s=%s\n", cf, it.KV().Key, it.KV().Value)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return sb.String()
}

func mustWrite(t *testing.T, c *storeclient.Client, sync bool, fill func(b *storeclient.Batch)) uint64 {
	t.Helper()
	var b storeclient.Batch
	fill(&b)
	seq, err := c.Write(ctxT(t), &b, sync)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func TestServeStatusAndReady(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, stored.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := testConfig(t.TempDir())
	srv, err := stored.New(cfg, stored.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	client := func(c *daemon.Runtime) *storeclient.Client { return storeclient.New(c.Bus, rt.Bus.Addr().String()) }
	unavailable := func(when string) func(context.Context, *daemon.Runtime) {
		return func(ctx context.Context, c *daemon.Runtime) {
			if _, _, err := client(c).Get(ctx, storeclient.Data, []byte("k")); !errors.Is(err, bus.ErrUnavailable) {
				t.Errorf("Get %s = %v; want Unavailable", when, err)
			}
		}
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{
		Runtime: rt, Service: srv, ReadyCheck: stored.ReadyCheck,
		RuntimeStarted: unavailable("before Start"),
		Serving: func(ctx context.Context, c *daemon.Runtime) {
			mustWrite(t, client(c), true, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("k"), []byte("v")) })
		},
		Admin: map[string][]string{
			"/v1/store": {`"path": "` + cfg.DBDir() + `"`, `"name": "data"`, `"sync_writes": 1`},
			"/metrics": {
				`pleiades_stored_memtable_bytes{cf="raft"}`, "pleiades_stored_block_cache_hit_ratio",
				"pleiades_stored_pending_compaction_bytes", `pleiades_stored_l0_files{cf="data"}`,
				"pleiades_stored_write_stopped 0", "pleiades_stored_wal_syncs_total 1",
				`pleiades_stored_request_duration_seconds_count{method="Write"} 1`,
			},
		},
		Stopped: unavailable("after Stop"),
	})
}

func TestReadWrite(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()), nil)
	ctx := ctxT(t)
	var keys []string
	mustWrite(t, n.c, true, func(b *storeclient.Batch) {
		for i := 0; i < 30; i++ {
			k := fmt.Sprintf("k%02d", i)
			keys = append(keys, k)
			b.Put(storeclient.Data, []byte(k), []byte("v"+k))
		}
		b.Put(storeclient.Raft, []byte("k00"), []byte("raft"))
		b.Put(storeclient.Local, []byte("id"), []byte("1"))
	})
	seq := mustWrite(t, n.c, false, func(b *storeclient.Batch) {
		b.Delete(storeclient.Data, []byte("k01"))
		b.DeleteRange(storeclient.Data, []byte("k10"), []byte("k20"))
	})
	if seq == 0 {
		t.Error("Write sequence = 0")
	}
	if v, ok, err := n.c.Get(ctx, storeclient.Data, []byte("k05")); err != nil || !ok || string(v) != "vk05" {
		t.Errorf("Get(k05) = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := n.c.Get(ctx, storeclient.Data, []byte("k15")); err != nil || ok {
		t.Errorf("Get(k15) found=%v err=%v; want range-deleted", ok, err)
	}
	res, err := n.c.MultiGet(ctx, storeclient.Data, [][]byte{[]byte("k00"), []byte("k01"), []byte("k29")})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Found || res[1].Found || string(res[2].Value) != "vk29" {
		t.Errorf("MultiGet = %+v", res)
	}
	var want []string
	for _, k := range keys {
		if k != "k01" && (k < "k10" || k >= "k20") {
			want = append(want, k)
		}
	}
	for _, tt := range []struct {
		name string
		opts storeclient.ScanOptions
		want []string
	}{
		{"forward pages of 3", storeclient.ScanOptions{Limit: 3}, want},
		{"byte-capped pages", storeclient.ScanOptions{MaxBytes: 10}, want},
		{"reverse pages of 4", storeclient.ScanOptions{Limit: 4, Reverse: true}, reversed(want)},
		{"keys only", storeclient.ScanOptions{KeysOnly: true}, want},
	} {
		it := n.c.Iterator(storeclient.Span{CF: storeclient.Data}, tt.opts)
		var got []string
		for it.Next(ctx) {
			got = append(got, string(it.KV().Key))
			if v := it.KV().Value; tt.opts.KeysOnly != (len(v) == 0) {
				t.Errorf("%s: value %q", tt.name, v)
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
	p, err := n.c.Scan(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("k02"), End: []byte("k05")}, storeclient.ScanOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.KVs) != 2 || !p.More || string(p.Resume) != "k04" {
		t.Errorf("Scan page = %d entries, more %v, resume %q; want 2, true, k04", len(p.KVs), p.More, p.Resume)
	}
	// Operations as messages (rather than packed) are applied too.
	opsReq := &storepb.WriteRequest{Sync: true, Ops: []*storepb.Op{
		{Op: &storepb.Op_Put{Put: &storepb.Put{Cf: storeclient.Local, Key: []byte("msg"), Value: []byte("put")}}},
		{Op: &storepb.Op_Delete{Delete: &storepb.Delete{Cf: storeclient.Local, Key: []byte("id")}}},
		{Op: &storepb.Op_DeleteRange{DeleteRange: &storepb.DeleteRange{Span: &storepb.Span{Cf: storeclient.Raft, End: []byte("z")}}}},
	}}
	if err := n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodWrite, opsReq, &storepb.WriteResponse{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		cf    storeclient.CF
		key   string
		found bool
	}{{storeclient.Local, "msg", true}, {storeclient.Local, "id", false}, {storeclient.Raft, "k00", false}} {
		if _, ok, err := n.c.Get(ctx, k.cf, []byte(k.key)); err != nil || ok != k.found {
			t.Errorf("after a message write, %v/%s found=%v (%v); want %v", k.cf, k.key, ok, err, k.found)
		}
	}
	// Callers that do not ask for packed entries get messages.
	for _, packed := range []bool{false, true} {
		var resp storepb.ScanResponse
		req := &storepb.ScanRequest{Span: &storepb.Span{Cf: storeclient.Data, Start: []byte("k02"), End: []byte("k05")}, Packed: packed}
		if err := n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodScan, req, &resp); err != nil {
			t.Fatal(err)
		}
		if got := len(resp.Kvs); packed == (got != 0) || (!packed && (got != 3 || string(resp.Kvs[2].Value) != "vk04")) {
			t.Errorf("raw Scan(packed=%v): %d message entries %v", packed, got, resp.Kvs)
		}
		if n, err := storepb.CountPacked(resp.Packed); err != nil || (packed && n != 3) || (!packed && n != 0) {
			t.Errorf("raw Scan(packed=%v): %d packed entries, %v", packed, n, err)
		}
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestBadInputChangesNothing(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()), nil)
	mustWrite(t, n.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("keep"), []byte("v")) })
	before := dump(t, n.c)
	long := bytes.Repeat([]byte("k"), 33)
	raw := func(req *storepb.WriteRequest) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodWrite, req, &storepb.WriteResponse{})
		}
	}
	for _, tt := range []struct {
		name string
		call func(ctx context.Context) error
		want error
	}{
		{"unknown cf", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), nil).Put(9, []byte("b"), nil), true)
			return err
		}, bus.ErrInvalidArgument},
		{"empty key", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), nil).Delete(storeclient.Raft, nil), false)
			return err
		}, bus.ErrInvalidArgument},
		{"key over limit", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), nil).Put(storeclient.Data, long, nil), true)
			return err
		}, bus.ErrInvalidArgument},
		{"value over limit", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), make([]byte, 1025)), true)
			return err
		}, bus.ErrInvalidArgument},
		{"batch over limit", func(ctx context.Context) error {
			var b storeclient.Batch
			for i := 0; i < 100; i++ {
				b.Put(storeclient.Data, []byte(fmt.Sprint(i)), make([]byte, 1000))
			}
			_, err := n.c.Write(ctx, &b, true)
			return err
		}, bus.ErrInvalidArgument},
		{"delete range start > end", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), nil).DeleteRange(storeclient.Data, []byte("z"), []byte("a")), true)
			return err
		}, bus.ErrInvalidArgument},
		{"delete range without end", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).DeleteRange(storeclient.Data, nil, nil), true)
			return err
		}, bus.ErrInvalidArgument},
		{"malformed packed ops", raw(&storepb.WriteRequest{PackedOps: append(storepb.AppendPut(nil, 3, []byte("a"), nil), 1, 3, 9)}), bus.ErrInvalidArgument},
		{"unknown packed kind", raw(&storepb.WriteRequest{PackedOps: append(storepb.AppendPut(nil, 3, []byte("a"), nil), 7, 3, 0)}), bus.ErrInvalidArgument},
		{"ops and packed ops", raw(&storepb.WriteRequest{
			Ops:       []*storepb.Op{{Op: &storepb.Op_Put{Put: &storepb.Put{Cf: 3, Key: []byte("a")}}}},
			PackedOps: storepb.AppendPut(nil, 3, []byte("b"), nil),
		}), bus.ErrInvalidArgument},
		{"empty op", raw(&storepb.WriteRequest{Ops: []*storepb.Op{{Op: &storepb.Op_Put{Put: &storepb.Put{Cf: 3, Key: []byte("a")}}}, {}}}), bus.ErrInvalidArgument},
		{"delete range without span", raw(&storepb.WriteRequest{Ops: []*storepb.Op{{Op: &storepb.Op_DeleteRange{DeleteRange: &storepb.DeleteRange{}}}}}), bus.ErrInvalidArgument},
		{"get empty key", func(ctx context.Context) error { _, _, err := n.c.Get(ctx, storeclient.Data, nil); return err }, bus.ErrInvalidArgument},
		{"scan start > end", func(ctx context.Context) error {
			_, err := n.c.Scan(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("b"), End: []byte("a")}, storeclient.ScanOptions{})
			return err
		}, bus.ErrInvalidArgument},
		{"get at unknown snapshot", func(ctx context.Context) error {
			return n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodGet,
				&storepb.GetRequest{Cf: 3, Key: []byte("a"), SnapshotId: 12345}, &storepb.GetResponse{})
		}, bus.ErrFailedPrecondition},
		{"checkpoint escaping", func(ctx context.Context) error { _, err := n.c.Checkpoint(ctx, "../x"); return err }, bus.ErrInvalidArgument},
		{"frame over the bus limit", func(ctx context.Context) error {
			_, err := n.c.Write(ctx, new(storeclient.Batch).Put(storeclient.Data, []byte("a"), make([]byte, 17<<20)), true)
			return err
		}, bus.ErrResourceExhausted},
	} {
		if err := tt.call(ctxT(t)); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
	if got := dump(t, n.c); got != before {
		t.Errorf("after refused calls the store holds\n%s\nwant\n%s", got, before)
	}
}

func TestSnapshotIsolationAndLease(t *testing.T) {
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	n := startNode(t, testConfig(t.TempDir()), clock)
	ctx := ctxT(t)
	mustWrite(t, n.c, false, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("k"), []byte("old")) })
	snap, err := n.c.OpenSnapshot(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, n.c, true, func(b *storeclient.Batch) {
		b.Put(storeclient.Data, []byte("k"), []byte("new")).Put(storeclient.Data, []byte("k2"), []byte("new"))
	})
	if v, _, err := snap.Get(ctx, storeclient.Data, []byte("k")); err != nil || string(v) != "old" {
		t.Errorf("snapshot Get = %q, %v; want old", v, err)
	}
	if res, err := snap.MultiGet(ctx, storeclient.Data, [][]byte{[]byte("k2")}); err != nil || res[0].Found {
		t.Errorf("snapshot MultiGet(k2) = %+v, %v; want not found", res, err)
	}
	if p, err := snap.Scan(ctx, storeclient.Span{CF: storeclient.Data}, storeclient.ScanOptions{}); err != nil || len(p.KVs) != 1 {
		t.Errorf("snapshot Scan = %v, %v; want only k=old", p.KVs, err)
	}
	var streamed int
	if err := snap.StreamRange(ctx, storeclient.Span{CF: storeclient.Data}, 0, func(kvs []storeclient.KV) error {
		streamed += len(kvs)
		return nil
	}); err != nil || streamed != 1 {
		t.Errorf("snapshot StreamRange: %d entries, %v; want 1", streamed, err)
	}
	if v, _, _ := n.c.Get(ctx, storeclient.Data, []byte("k")); string(v) != "new" {
		t.Errorf("latest Get = %q; want new", v)
	}

	// Reads renew the lease: 8s idle, a read, 8s idle again is within it.
	clock.Advance(8 * time.Second)
	if _, _, err := snap.Get(ctx, storeclient.Data, []byte("k")); err != nil {
		t.Fatalf("Get after 8s of a 10s lease: %v", err)
	}
	clock.Advance(8 * time.Second)
	if _, _, err := snap.Get(ctx, storeclient.Data, []byte("k")); err != nil {
		t.Fatalf("Get 8s after a renewing read: %v", err)
	}
	if err := snap.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := snap.Get(ctx, storeclient.Data, []byte("k")); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("Get at released snapshot = %v; want FailedPrecondition", err)
	}
	if err := snap.Release(ctx); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("second Release = %v; want FailedPrecondition", err)
	}

	// An idle snapshot expires: the reaper drops it.
	idle, err := n.c.OpenSnapshot(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := n.c.Stats(ctx); st.GetOpenSnapshots() != 1 {
		t.Fatalf("open snapshots = %d; want 1", st.GetOpenSnapshots())
	}
	clock.Advance(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := n.c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.OpenSnapshots == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired snapshot still open: %v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, err := idle.Get(ctx, storeclient.Data, []byte("k")); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("Get at expired snapshot = %v; want FailedPrecondition", err)
	}
}

func TestStreamRangeIngestRangeReproducesSpan(t *testing.T) {
	src := startNode(t, testConfig(t.TempDir()), nil)
	dst := startNode(t, testConfig(t.TempDir()), nil)
	ctx := ctxT(t)
	span := storeclient.Span{CF: storeclient.Data, Start: []byte("b"), End: []byte("m")}
	// Source: the span plus keys on both sides and in other families.
	mustWrite(t, src.c, true, func(b *storeclient.Batch) {
		b.Put(storeclient.Data, []byte("a"), []byte("outside"))
		b.Put(storeclient.Data, []byte("m"), []byte("outside (end is exclusive)"))
		for i := 0; i < 300; i++ {
			b.Put(storeclient.Data, []byte(fmt.Sprintf("b%04d", i)), bytes.Repeat([]byte{byte(i)}, i%50))
		}
		b.Put(storeclient.Data, []byte("b"), nil) // empty value, on the start bound
	})
	// Destination: stale keys in the span (to be removed) and keys around.
	mustWrite(t, dst.c, true, func(b *storeclient.Batch) {
		b.Put(storeclient.Data, []byte("a"), []byte("dst keeps"))
		b.Put(storeclient.Data, []byte("b0001"), []byte("stale"))
		b.Put(storeclient.Data, []byte("czz"), []byte("stale"))
		b.Put(storeclient.Data, []byte("m"), []byte("dst keeps"))
		b.Put(storeclient.Raft, []byte("b5"), []byte("other family"))
	})
	snap, err := src.c.OpenSnapshot(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release(ctx)
	// A write after the snapshot must not travel.
	mustWrite(t, src.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("c-late"), []byte("x")) })

	in, err := dst.c.IngestRange(ctx, span, 0)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	if err := snap.StreamRange(ctx, span, 512, func(kvs []storeclient.KV) error {
		chunks++
		return in.Add(ctx, kvs...)
	}); err != nil {
		t.Fatal(err)
	}
	// Nothing is visible before Finish.
	if _, ok, _ := dst.c.Get(ctx, storeclient.Data, []byte("czz")); !ok {
		t.Error("stale key gone before Finish")
	}
	res, err := in.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 301 || chunks < 10 {
		t.Errorf("ingested %d keys in %d stream chunks; want 301 in at least 10", res.Keys, chunks)
	}
	read := func(c *storeclient.Client, s *storeclient.Snapshot) string {
		var sb strings.Builder
		it := c.Iterator(span, storeclient.ScanOptions{Limit: 50})
		if s != nil {
			it = s.Iterator(span, storeclient.ScanOptions{Limit: 50})
		}
		for it.Next(ctx) {
			fmt.Fprintf(&sb, "%x=%x\n", it.KV().Key, it.KV().Value)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return sb.String()
	}
	if got, want := read(dst.c, nil), read(src.c, snap); got != want {
		t.Errorf("destination span differs from the source's:\n%s\nwant\n%s", got, want)
	}
	for _, k := range []struct {
		cf  storeclient.CF
		key string
	}{{storeclient.Data, "a"}, {storeclient.Data, "m"}, {storeclient.Raft, "b5"}} {
		if v, ok, err := dst.c.Get(ctx, k.cf, []byte(k.key)); err != nil || !ok {
			t.Errorf("key %v/%s outside the span: %q %v %v; want kept", k.cf, k.key, v, ok, err)
		}
	}
}

func TestIngestRefusals(t *testing.T) {
	clock := &fakeClock{}
	n := startNode(t, testConfig(t.TempDir()), clock)
	ctx := ctxT(t)
	mustWrite(t, n.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("c"), []byte("before")) })
	before := dump(t, n.c)
	span := storeclient.Span{CF: storeclient.Data, Start: []byte("b"), End: []byte("m")}
	call := func(req *storepb.IngestRangeRequest) (*storepb.IngestRangeResponse, error) {
		var resp storepb.IngestRangeResponse
		err := n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodIngestRange, req, &resp)
		return &resp, err
	}
	kv := func(k string) *storepb.KeyValue { return &storepb.KeyValue{Key: []byte(k), Value: []byte("new")} }
	begin, err := call(&storepb.IngestRangeRequest{Span: &storepb.Span{Cf: storeclient.Data, Start: span.Start, End: span.End}})
	if err != nil {
		t.Fatal(err)
	}
	id := begin.IngestId
	if _, err := call(&storepb.IngestRangeRequest{IngestId: id, Seq: 1, Kvs: []*storepb.KeyValue{kv("c"), kv("d")}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  *storepb.IngestRangeRequest
		want error
	}{
		{"begin without end", &storepb.IngestRangeRequest{Span: &storepb.Span{Cf: storeclient.Data, Start: []byte("b")}}, bus.ErrInvalidArgument},
		{"begin unknown cf", &storepb.IngestRangeRequest{Span: &storepb.Span{Cf: 8, End: []byte("b")}}, bus.ErrInvalidArgument},
		{"begin without span", &storepb.IngestRangeRequest{}, bus.ErrInvalidArgument},
		{"unknown session", &storepb.IngestRangeRequest{IngestId: id + 1000, Seq: 1}, bus.ErrFailedPrecondition},
		{"replayed chunk", &storepb.IngestRangeRequest{IngestId: id, Seq: 1, Kvs: []*storepb.KeyValue{kv("e")}}, bus.ErrFailedPrecondition},
		// A chunk up to 3 ahead of the next waits for its turn
		// (TestIngestChunksInFlight); one 4 or more ahead is refused.
		{"skipped chunk", &storepb.IngestRangeRequest{IngestId: id, Seq: 6, Kvs: []*storepb.KeyValue{kv("e")}}, bus.ErrFailedPrecondition},
		{"key below previous", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("e"), kv("d")}}, bus.ErrInvalidArgument},
		{"key repeated", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("d")}}, bus.ErrInvalidArgument},
		{"key outside span", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("e"), kv("z")}}, bus.ErrInvalidArgument},
		{"empty key", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{{}}}, bus.ErrInvalidArgument},
		{"malformed packed", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Packed: []byte{1, 'e', 5}}, bus.ErrInvalidArgument},
		{"packed key below previous", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Packed: storepb.AppendPacked(nil, []byte("c"), nil)}, bus.ErrInvalidArgument},
		{"kvs and packed", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("e")}, Packed: storepb.AppendPacked(nil, []byte("f"), nil)}, bus.ErrInvalidArgument},
		{"value over limit", &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{{Key: []byte("e"), Value: make([]byte, 1025)}}}, bus.ErrInvalidArgument},
	} {
		if _, err := call(tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
	if got := dump(t, n.c); got != before {
		t.Errorf("refused frames wrote:\n%s\nwant\n%s", got, before)
	}
	// The session survived the refusals unchanged: chunk 2 follows chunk 1.
	resp, err := call(&storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("e")}, Done: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Keys != 3 {
		t.Errorf("finished with %d keys; want 3", resp.Keys)
	}
	if got, want := dump(t, n.c), "COLUMN_FAMILY_DATA/c=new\nCOLUMN_FAMILY_DATA/d=new\nCOLUMN_FAMILY_DATA/e=new\n"; !strings.HasSuffix(got, want) || strings.Contains(got, "before") {
		t.Errorf("after ingest:\n%s\nwant\n%s", got, want)
	}
	if _, err := call(&storepb.IngestRangeRequest{IngestId: id, Done: true}); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("finish twice = %v; want FailedPrecondition", err)
	}

	// Abort and expiry drop a session without writing.
	after := dump(t, n.c)
	ab, err := n.c.IngestRange(ctx, span, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.Add(ctx, storeclient.KV{Key: []byte("f"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := ab.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	ex, err := n.c.IngestRange(ctx, span, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if _, err := ex.Finish(ctx); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("Finish of an expired session = %v; want FailedPrecondition", err)
	}
	if got := dump(t, n.c); got != after {
		t.Errorf("aborted or expired sessions wrote:\n%s\nwant\n%s", got, after)
	}
}

// TestIngestChunksInFlight sends an ingest session's chunks out of order
// within the window the server offers: each waits for the ones before it
// and the span ends as if they came in order; a chunk whose predecessor
// never comes is refused when its caller gives up, and the session goes
// on; the client's Add keeps chunks in flight and Finish waits for them.
func TestIngestChunksInFlight(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()), nil)
	ctx := ctxT(t)
	span := storeclient.Span{CF: storeclient.Data, Start: []byte("b"), End: []byte("m")}
	call := func(ctx context.Context, req *storepb.IngestRangeRequest) (*storepb.IngestRangeResponse, error) {
		var resp storepb.IngestRangeResponse
		err := n.rt.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoStore, storeclient.MethodIngestRange, req, &resp)
		return &resp, err
	}
	kv := func(k string) *storepb.KeyValue { return &storepb.KeyValue{Key: []byte(k), Value: []byte("v" + k)} }
	begin, err := call(ctx, &storepb.IngestRangeRequest{Span: &storepb.Span{Cf: storeclient.Data, Start: span.Start, End: span.End}})
	if err != nil {
		t.Fatal(err)
	}
	if begin.Window != 4 {
		t.Fatalf("window %d; want 4", begin.Window)
	}
	id := begin.IngestId
	// A gap: chunk 2 waits for chunk 1 until its caller gives up.
	gctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = call(gctx, &storepb.IngestRangeRequest{IngestId: id, Seq: 2, Kvs: []*storepb.KeyValue{kv("d")}})
	cancel()
	if err == nil {
		t.Fatal("chunk 2 before chunk 1 was taken")
	}
	// Chunks 4, 3, 2, 1 sent in that order, each once the one before
	// waits: all are taken, in seq order.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, seq := range []uint64{4, 3, 2, 1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = call(ctx, &storepb.IngestRangeRequest{IngestId: id, Seq: seq, Kvs: []*storepb.KeyValue{kv(fmt.Sprintf("c%d", seq))}})
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("chunk %d: %v", 4-i, err)
		}
	}
	resp, err := call(ctx, &storepb.IngestRangeRequest{IngestId: id, Done: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Keys != 4 {
		t.Errorf("finished with %d keys; want 4", resp.Keys)
	}
	if got, want := dump(t, n.c), "COLUMN_FAMILY_DATA/c1=vc1\nCOLUMN_FAMILY_DATA/c2=vc2\nCOLUMN_FAMILY_DATA/c3=vc3\nCOLUMN_FAMILY_DATA/c4=vc4\n"; !strings.HasSuffix(got, want) {
		t.Errorf("after ingest:\n%s\nwant\n%s", got, want)
	}

	// The client: many chunks, up to 4 in flight, then Finish.
	in, err := n.c.IngestRange(ctx, span, 0)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("x"), 1000)
	const keys = 5000 // 5 MB: several chunks of 1 MiB
	for i := range keys {
		if err := in.Add(ctx, storeclient.KV{Key: []byte(fmt.Sprintf("d%05d", i)), Value: val}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := in.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != keys {
		t.Errorf("client ingest finished with %d keys; want %d", res.Keys, keys)
	}
	it := n.c.Iterator(span, storeclient.ScanOptions{})
	got := 0
	for it.Next(ctx) {
		if want := fmt.Sprintf("d%05d", got); string(it.KV().Key) != want || !bytes.Equal(it.KV().Value, val) {
			t.Fatalf("entry %d: key %q; want %q with the value", got, it.KV().Key, want)
		}
		got++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if got != keys {
		t.Errorf("span after the client's ingest: %d keys; want %d", got, keys)
	}
}

func TestConcurrentSyncWriters(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()), nil)
	ctx := ctxT(t)
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b storeclient.Batch
			for i := 0; i < each; i++ {
				b.Reset()
				b.Put(storeclient.Raft, []byte(fmt.Sprintf("w%d/%02d", w, i)), []byte("entry"))
				if _, err := n.c.Write(ctx, &b, true); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	st, err := n.c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.SyncWrites != writers*each || st.WalSyncs == 0 || st.WalSyncs > st.SyncWrites {
		t.Errorf("sync writes %d, WAL syncs %d; want %d and 1..%d", st.SyncWrites, st.WalSyncs, writers*each, writers*each)
	}
	p, err := n.c.Scan(ctx, storeclient.Span{CF: storeclient.Raft}, storeclient.ScanOptions{Limit: 1000})
	if err != nil || len(p.KVs) != writers*each {
		t.Errorf("raft family holds %d entries (%v); want %d", len(p.KVs), err, writers*each)
	}
}

func TestReopenAfterStopAndCheckpoint(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(dir), nil)
	ctx := ctxT(t)
	mustWrite(t, n.c, false, func(b *storeclient.Batch) { b.Put(storeclient.Local, []byte("node"), []byte("1")) })
	mustWrite(t, n.c, true, func(b *storeclient.Batch) {
		for i := 0; i < 200; i++ {
			b.Put(storeclient.Data, []byte(fmt.Sprintf("d%03d", i)), bytes.Repeat([]byte("x"), 100))
		}
	})
	if err := n.c.Compact(ctx, storeclient.Span{CF: storeclient.Data}); err != nil {
		t.Fatal(err)
	}
	if sz, err := n.c.ApproximateSize(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("d"), End: []byte("e")}); err != nil || sz == 0 {
		t.Errorf("ApproximateSize = %d, %v; want > 0 after compaction", sz, err)
	}
	cpDir, err := n.c.Checkpoint(ctx, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "checkpoints", "cp1"); cpDir != want {
		t.Errorf("checkpoint dir = %s; want %s", cpDir, want)
	}
	if _, err := n.c.Checkpoint(ctx, "cp1"); !errors.Is(err, bus.ErrAlreadyExists) {
		t.Errorf("second checkpoint to cp1 = %v; want AlreadyExists", err)
	}
	want := dump(t, n.c)
	if err := n.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	again := startNode(t, testConfig(dir), nil)
	if got := dump(t, again.c); got != want {
		t.Errorf("after reopen:\n%s\nwant\n%s", got, want)
	}
	// A checkpoint is a database of its own.
	cp, err := engine.Open(cpDir, testConfig("x").Engine)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	p, err := cp.Scan(engine.Span{CF: engine.Data}, engine.ScanOptions{Limit: 1000})
	if err != nil || len(p.KVs) != 200 {
		t.Errorf("checkpoint data family: %d entries, %v; want 200", len(p.KVs), err)
	}
	if v, ok, err := cp.Get(engine.Local, []byte("node"), nil); err != nil || !ok || string(v) != "1" {
		t.Errorf("checkpoint local/node = %q %v %v; want 1", v, ok, err)
	}
}

// TestStopDuringTraffic stops the server while writers, readers and a
// stream are running: calls in flight finish or fail with Unavailable,
// nothing crashes, and the database reopens with every acknowledged
// write.
func TestStopDuringTraffic(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(dir), nil)
	ctx := ctxT(t)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stopped := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() { // a writer
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("w%d/%04d", w, i)
				var b storeclient.Batch
				b.Put(storeclient.Data, []byte(k), []byte("v"))
				if _, err := n.c.Write(ctx, &b, i%2 == 0); err != nil {
					if !errors.Is(err, bus.ErrUnavailable) {
						t.Errorf("write during stop: %v", err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}()
		go func() { // a reader
			defer wg.Done()
			for {
				_, err := n.c.Scan(ctx, storeclient.Span{CF: storeclient.Data}, storeclient.ScanOptions{Limit: 50})
				if err != nil {
					if !errors.Is(err, bus.ErrUnavailable) {
						t.Errorf("scan during stop: %v", err)
					}
					return
				}
				select {
				case <-stopped:
					return
				default:
				}
			}
		}()
	}
	for {
		mu.Lock()
		k := len(acked)
		mu.Unlock()
		if k >= 100 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := n.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	close(stopped)
	wg.Wait()
	again := startNode(t, testConfig(dir), nil)
	mu.Lock()
	defer mu.Unlock()
	keys := make([][]byte, len(acked))
	for i, k := range acked {
		keys[i] = []byte(k)
	}
	res, err := again.c.MultiGet(ctx, storeclient.Data, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.Found {
			t.Errorf("acknowledged %s missing after stop and reopen", acked[i])
		}
	}
	t.Logf("%d acknowledged writes before Stop, all present after reopen", len(acked))
}

// TestStagedWrites checks writes larger than one bus frame: the client
// sends them in parts that stored stages and writes as one batch with the
// last part; nothing is visible before, a refused part or an abort leaves
// nothing behind, and an idle staged write expires unwritten.
func TestStagedWrites(t *testing.T) {
	clock := &fakeClock{}
	cfg := testConfig(t.TempDir())
	cfg.Engine.MaxBatchBytes = 1 << 20
	cfg.MaxStagedWrites = 2
	n := startNode(t, cfg, clock)
	// A client whose frames hold 64 KiB writes in parts of 32 KiB.
	cc := daemontest.Common(t)
	cc.MaxFrameSize = 64 << 10
	cc.NodeID = n.rt.NodeID
	small := storeclient.New(daemontest.NewRuntimeWithCA(t, "small", daemontest.CA(t), cc).Bus, n.c.Addr())
	ctx := ctxT(t)

	var b storeclient.Batch
	for i := range 300 { // ~300 KiB: ten parts
		b.Put(storeclient.Data, fmt.Appendf(nil, "k%03d", i), bytes.Repeat([]byte{byte(i)}, 1000))
	}
	b.DeleteRange(storeclient.Data, []byte("k100"), []byte("k200"))
	if _, err := small.Write(ctx, &b, true); err != nil {
		t.Fatal(err)
	}
	var kvs []storeclient.KV
	it := n.c.Iterator(storeclient.Span{CF: storeclient.Data}, storeclient.ScanOptions{})
	for it.Next(ctx) {
		kvs = append(kvs, it.KV())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 200 || string(kvs[99].Key) != "k099" || string(kvs[100].Key) != "k200" || !bytes.Equal(kvs[199].Value, bytes.Repeat([]byte{43}, 1000)) {
		t.Fatalf("after a staged write: %d keys; want 200 (k000-k099, k200-k299)", len(kvs))
	}
	before := dump(t, n.c)

	raw := func(req *storepb.WriteRequest) (*storepb.WriteResponse, error) {
		var resp storepb.WriteResponse
		err := n.rt.Bus.Call(ctx, n.c.Addr(), wire.ProtoStore, storeclient.MethodWrite, req, &resp)
		return &resp, err
	}
	put := func(k string) []byte { return storepb.AppendPut(nil, 3, []byte(k), []byte("v")) }
	stage := func() uint64 {
		t.Helper()
		resp, err := raw(&storepb.WriteRequest{Stage: true, PackedOps: put("staged")})
		if err != nil || resp.StageId == 0 {
			t.Fatalf("stage: %v, id %d", err, resp.GetStageId())
		}
		return resp.StageId
	}

	// Staged, not written: invisible; an abort drops it.
	id := stage()
	if _, found, _ := n.c.Get(ctx, storeclient.Data, []byte("staged")); found {
		t.Error("a staged operation is visible before the last part")
	}
	if _, err := raw(&storepb.WriteRequest{StageId: id, Abort: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw(&storepb.WriteRequest{StageId: id, PackedOps: put("x")}); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("last part of an aborted staged write: %v; want FailedPrecondition", err)
	}

	// A malformed part ends the staged write.
	id = stage()
	if _, err := raw(&storepb.WriteRequest{StageId: id, Stage: true, PackedOps: []byte{7, 3, 0}}); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("malformed part: %v; want InvalidArgument", err)
	}
	if _, err := raw(&storepb.WriteRequest{StageId: id, PackedOps: put("x")}); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("last part after a refused one: %v; want FailedPrecondition", err)
	}

	// Over the batch limit in total (each part is fine): refused whole.
	var big storeclient.Batch
	for i := range 1100 {
		big.Put(storeclient.Data, fmt.Appendf(nil, "b%04d", i), make([]byte, 1000))
	}
	if _, err := small.Write(ctx, &big, true); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("staged write over MaxBatchBytes: %v; want InvalidArgument", err)
	}

	// At most MaxStagedWrites at once; an idle one expires.
	stage()
	stage()
	if _, err := raw(&storepb.WriteRequest{Stage: true, PackedOps: put("third")}); !errors.Is(err, bus.ErrResourceExhausted) {
		t.Errorf("a third staged write: %v; want ResourceExhausted", err)
	}
	clock.Advance(cfg.IngestLease + time.Second)
	for { // the reaper runs every 5 ms
		if _, err := raw(&storepb.WriteRequest{Stage: true, PackedOps: put("later")}); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("expired staged writes still count: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	for _, req := range []*storepb.WriteRequest{
		{Abort: true},
		{Abort: true, StageId: 99, PackedOps: put("x")},
		{StageId: 12345, PackedOps: put("x")},
	} {
		if _, err := raw(req); err == nil {
			t.Errorf("%v accepted", req)
		}
	}
	if got := dump(t, n.c); got != before {
		t.Errorf("after staged writes not completed the store holds\n%s\nwant\n%s", got, before)
	}
}

// shortSocket returns a socket path in a fresh directory short enough for
// a Unix socket (t.TempDir's names grow with the test's name).
func shortSocket(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "stored")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "stored.sock")
}

// TestLocalSocket: with Config.LocalSocket stored serves its calls on a
// Unix socket too, and a client that knows it writes over it.
func TestLocalSocket(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.LocalSocket = shortSocket(t)
	n := startNode(t, cfg, nil)
	if got := n.rt.Bus.LocalPath(); got != cfg.LocalSocket {
		t.Fatalf("bus local socket %q, want %q", got, cfg.LocalSocket)
	}
	local := func() float64 {
		mfs, err := n.cli.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "pleiades_bus_local_calls_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no pleiades_bus_local_calls_total")
		return 0
	}
	before := local()
	mustWrite(t, n.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Raft, []byte("log1"), []byte("entry")) })
	if got := local(); got != before+1 {
		t.Fatalf("local calls %v after a synced write, want %v", got, before+1)
	}
	v, found, err := n.c.Get(ctxT(t), storeclient.Raft, []byte("log1"))
	if err != nil || !found || string(v) != "entry" {
		t.Fatalf("Get = %q, %v, %v", v, found, err)
	}
	if got := local(); got != before+2 {
		t.Fatalf("local calls %v after a get, want %v", got, before+2)
	}
}

// TestLocalSocketPath: a relative LocalSocket is under Dir; one too long
// for a Unix socket under a deep Dir leaves stored on QUIC only.
func TestLocalSocketPath(t *testing.T) {
	c := stored.Config{Dir: "/data/stored", LocalSocket: stored.DefaultLocalSocket}
	if got := c.SocketPath(); got != "/data/stored/stored.sock" {
		t.Fatalf("SocketPath = %q", got)
	}
	if got := (stored.Config{Dir: "/d", LocalSocket: "/run/s.sock"}).SocketPath(); got != "/run/s.sock" {
		t.Fatalf("absolute SocketPath = %q", got)
	}
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	cfg := testConfig(deep)
	cfg.LocalSocket = stored.DefaultLocalSocket
	n := startNode(t, cfg, nil)
	if p := n.rt.Bus.LocalPath(); p != "" {
		t.Fatalf("local socket %q under a deep dir", p)
	}
	mustWrite(t, n.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Raft, []byte("k"), []byte("v")) })
}

// TestScanRangeOverLocalSocket: a snapshot's ScanRange yields what its
// StreamRange yields (same entries, chunks of the same bound, nothing
// written after the snapshot), each chunk a unary call over the local
// socket.
func TestScanRangeOverLocalSocket(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.LocalSocket = shortSocket(t)
	n := startNode(t, cfg, nil)
	ctx := ctxT(t)
	span := storeclient.Span{CF: storeclient.Data, Start: []byte("b"), End: []byte("m")}
	mustWrite(t, n.c, true, func(b *storeclient.Batch) {
		b.Put(storeclient.Data, []byte("a"), []byte("outside"))
		b.Put(storeclient.Data, []byte("m"), []byte("outside (end is exclusive)"))
		for i := range 300 {
			b.Put(storeclient.Data, fmt.Appendf(nil, "b%04d", i), bytes.Repeat([]byte{byte(i)}, i%50))
		}
		b.Put(storeclient.Data, []byte("b"), nil)
	})
	snap, err := n.c.OpenSnapshot(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release(ctx)
	mustWrite(t, n.c, true, func(b *storeclient.Batch) { b.Put(storeclient.Data, []byte("c-late"), []byte("x")) })
	local := func() float64 {
		mfs, err := n.cli.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "pleiades_bus_local_calls_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no pleiades_bus_local_calls_total")
		return 0
	}
	const chunkBytes = 512
	collect := func(read func(context.Context, storeclient.Span, int, func([]storeclient.KV) error) error) (string, int) {
		var sb strings.Builder
		chunks := 0
		if err := read(ctx, span, chunkBytes, func(kvs []storeclient.KV) error {
			chunks++
			size := 0
			for _, kv := range kvs {
				fmt.Fprintf(&sb, "%x=%x\n", kv.Key, kv.Value)
				size += len(kv.Key) + len(kv.Value)
			}
			if len(kvs) > 1 && size > chunkBytes+64 {
				t.Errorf("chunk of %d entries and %d bytes, over the bound of %d", len(kvs), size, chunkBytes)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return sb.String(), chunks
	}
	want, _ := collect(snap.StreamRange)
	before := local()
	got, chunks := collect(snap.ScanRange)
	if got != want {
		t.Fatalf("ScanRange yielded\n%s\nStreamRange\n%s", got, want)
	}
	if strings.Count(got, "\n") != 301 || chunks < 10 {
		t.Fatalf("%d entries in %d chunks; want 301 in at least 10", strings.Count(got, "\n"), chunks)
	}
	if calls := local() - before; calls != float64(chunks) {
		t.Fatalf("%v local calls for %d chunks", calls, chunks)
	}
	stop := errors.New("stop")
	if err := snap.ScanRange(ctx, span, chunkBytes, func([]storeclient.KV) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ScanRange with fn failing: %v, want fn's error", err)
	}
}
