package kvclient_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClient returns a client of fc with its own bus endpoint, closed at
// cleanup; mod adjusts the configuration.
func newClient(t *testing.T, fc *kvclienttest.Cluster, mod func(*kvclient.Config)) *kvclient.Client {
	t.Helper()
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	cfg := kvclient.Config{Addrs: fc.Addrs(), TLS: tc, RetryBackoffMin: time.Millisecond, RetryBackoffMax: 20 * time.Millisecond,
		Logger: daemontest.Logger(t, nil)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := kvclient.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPointOperations(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)

	ts1, err := c.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	ts2, err := c.Put(ctx, []byte("a"), []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if ts1.IsZero() || !ts1.Less(ts2) {
		t.Errorf("Put timestamps %v then %v; want increasing, non-zero", ts1, ts2)
	}
	v, found, err := c.Get(ctx, []byte("a"))
	if err != nil || !found || string(v.Value) != "2" || v.Timestamp != ts2 {
		t.Errorf("Get(a) = %q %v %v %v; want 2 at %v", v.Value, v.Timestamp, found, err, ts2)
	}
	if _, found, err := c.Get(ctx, []byte("zz")); err != nil || found {
		t.Errorf("Get(zz) found=%v err=%v; want not found", found, err)
	}
	if del, err := c.Delete(ctx, []byte("a")); err != nil || !del {
		t.Errorf("Delete(a) = %v, %v; want true", del, err)
	}
	if del, err := c.Delete(ctx, []byte("a")); err != nil || del {
		t.Errorf("second Delete(a) = %v, %v; want false", del, err)
	}

	casTests := []struct {
		name      string
		cas       kvclient.CAS
		succeeded bool
		current   string // value reported on failure ("" absent)
		after     string // stored value afterwards ("" absent)
	}{
		{"create absent", kvclient.CAS{Key: []byte("k"), ExpectAbsent: true, NewValue: []byte("v1")}, true, "", "v1"},
		{"create present", kvclient.CAS{Key: []byte("k"), ExpectAbsent: true, NewValue: []byte("v9")}, false, "v1", "v1"},
		{"swap match", kvclient.CAS{Key: []byte("k"), Expected: []byte("v1"), NewValue: []byte("v2")}, true, "", "v2"},
		{"swap mismatch", kvclient.CAS{Key: []byte("k"), Expected: []byte("v1"), NewValue: []byte("v3")}, false, "v2", "v2"},
		{"delete match", kvclient.CAS{Key: []byte("k"), Expected: []byte("v2"), Delete: true}, true, "", ""},
		{"swap absent", kvclient.CAS{Key: []byte("k"), Expected: []byte("v2"), NewValue: []byte("v4")}, false, "", ""},
	}
	for _, tt := range casTests {
		res, err := c.CompareAndSwap(ctx, tt.cas)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if res.Succeeded != tt.succeeded || string(res.Current.Value) != tt.current || res.CurrentFound != (tt.current != "") {
			t.Errorf("%s: CompareAndSwap = %+v; want succeeded %v current %q", tt.name, res, tt.succeeded, tt.current)
		}
		if res.Succeeded && res.Timestamp.IsZero() {
			t.Errorf("%s: no timestamp", tt.name)
		}
		if got, _ := fc.Value("k"); got != tt.after {
			t.Errorf("%s: stored %q; want %q", tt.name, got, tt.after)
		}
	}
}

func TestBatch(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	if _, err := c.Put(ctx, []byte("b"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Batch(ctx, kvclient.NewBatch().Put([]byte("a"), []byte("1")).Delete([]byte("b")).
		CompareAndSwap(kvclient.CAS{Key: []byte("c"), ExpectAbsent: true, NewValue: []byte("3")}))
	if err != nil || !res.Succeeded || res.Timestamp.IsZero() {
		t.Fatalf("Batch = %+v, %v; want success", res, err)
	}
	for k, want := range map[string]string{"a": "1", "b": "", "c": "3"} {
		if got, _ := fc.Value(k); got != want {
			t.Errorf("after batch %s = %q; want %q", k, got, want)
		}
	}
	res, err = c.Batch(ctx, kvclient.NewBatch().Put([]byte("d"), []byte("4")).
		CompareAndSwap(kvclient.CAS{Key: []byte("c"), ExpectAbsent: true, NewValue: []byte("x")}))
	if err != nil || res.Succeeded || res.FailedOp != 1 {
		t.Fatalf("failing Batch = %+v, %v; want failed op 1", res, err)
	}
	if _, ok := fc.Value("d"); ok {
		t.Error("failed batch applied its put")
	}
	_, err = c.Batch(ctx, kvclient.NewBatch().Put([]byte("a"), nil).Put([]byte("z"), nil))
	if !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("Batch across ranges: %v; want InvalidArgument", err)
	}
	if _, err := c.Batch(ctx, kvclient.NewBatch()); err == nil {
		t.Error("empty Batch succeeded")
	}
}

func TestScan(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("k05"), []byte("k12")}, PageSize: 4})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	var all []string
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		all = append(all, k)
		if _, err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	tests := []struct {
		name       string
		start, end string
		opts       kvclient.ScanOptions
		want       []string
	}{
		{"all forward", "", "", kvclient.ScanOptions{}, all},
		{"all reverse", "", "", kvclient.ScanOptions{Reverse: true}, rev},
		{"span", "k03", "k15", kvclient.ScanOptions{}, all[3:15]},
		{"span reverse", "k03", "k15", kvclient.ScanOptions{Reverse: true}, rev[5:17]},
		{"limit", "k03", "", kvclient.ScanOptions{Limit: 7}, all[3:10]},
		{"limit reverse", "", "k15", kvclient.ScanOptions{Limit: 7, Reverse: true}, rev[5:12]},
		{"page size", "", "", kvclient.ScanOptions{PageSize: 3, Limit: 11}, all[:11]},
		{"keys only stale", "k10", "k13", kvclient.ScanOptions{KeysOnly: true, Consistency: kvclient.Stale}, all[10:13]},
		{"empty span", "k07", "k07", kvclient.ScanOptions{}, nil},
		{"past data", "x", "", kvclient.ScanOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvs, err := c.Scan(ctx, []byte(tt.start), []byte(tt.end), tt.opts).Collect()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, string(kv.Key))
				wantV := "v" + string(kv.Key)
				if tt.opts.KeysOnly {
					wantV = ""
				}
				if string(kv.Value) != wantV || kv.Timestamp.IsZero() {
					t.Errorf("%s = %q at %v; want %q with a timestamp", kv.Key, kv.Value, kv.Timestamp, wantV)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Scan(%q, %q, %+v) = %v; want %v", tt.start, tt.end, tt.opts, got, tt.want)
			}
		})
	}
	n, err := c.DeleteRange(ctx, []byte("k05"), []byte("k15"))
	if err != nil || n != 10 {
		t.Errorf("DeleteRange = %d, %v; want 10", n, err)
	}
	if fc.Len() != 10 {
		t.Errorf("%d keys left; want 10", fc.Len())
	}
	if _, err := c.Scan(ctx, nil, nil, kvclient.ScanOptions{Limit: -1}).Collect(); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestLeaderCacheFollowsHints(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	id := fc.RangeIDs()[0]
	fc.SetLeader(id, 1)
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := fc.Calls(1, kvclient.MethodPut); got != 1 {
		t.Fatalf("leader node got %d puts; want 1 (routed by descriptors)", got)
	}
	// The leader moves: the old one answers NotLeader with a hint, which
	// the client follows and remembers.
	fc.SetLeader(id, 2)
	for range 3 {
		if _, err := c.Put(ctx, []byte("a"), []byte("2")); err != nil {
			t.Fatal(err)
		}
	}
	if p1, p2 := fc.Calls(1, kvclient.MethodPut), fc.Calls(2, kvclient.MethodPut); p1 != 2 || p2 != 3 {
		t.Errorf("puts on old leader %d, new leader %d; want 2 and 3", p1, p2)
	}
	if fc.Forwarded() != 0 {
		t.Errorf("%d requests were forwarded; want 0", fc.Forwarded())
	}
	// Stale reads go to the first listed node, leader or not, and are
	// never refused.
	for range 6 {
		if _, _, err := c.Get(ctx, []byte("a"), kvclient.WithConsistency(kvclient.Stale)); err != nil {
			t.Fatal(err)
		}
	}
	if g0, g1, g2 := fc.Calls(0, kvclient.MethodGet), fc.Calls(1, kvclient.MethodGet), fc.Calls(2, kvclient.MethodGet); g0 != 6 || g1+g2 != 0 {
		t.Errorf("stale gets per node %d %d %d; want all 6 on the first", g0, g1, g2)
	}
}

func TestWithoutDescriptorsOrHints(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{NoDescriptors: true, NoHints: true})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	for i := range 5 {
		if _, err := c.Put(ctx, []byte("a"), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if fc.Calls(0, kvclient.MethodDescriptors)+fc.Calls(1, kvclient.MethodDescriptors)+fc.Calls(2, kvclient.MethodDescriptors) != 1 {
		t.Error("Descriptors asked again after Unimplemented")
	}
	if fc.Forwarded() == 0 {
		t.Error("no request was forwarded; want the nodes to forward when the client knows no leader")
	}
}

func TestRetries(t *testing.T) {
	unavailable := bus.Errorf(bus.CodeUnavailable, "stopping")
	tests := []struct {
		name     string
		inject   map[int][]error
		maxTries int
		wantErr  error // nil: success
		wantCall int   // total Put calls
	}{
		{"unavailable everywhere twice", map[int][]error{0: {unavailable, unavailable}, 1: {unavailable, unavailable}, 2: {unavailable, unavailable}}, 0, nil, 7},
		{"not leader without hint", map[int][]error{0: {bus.NotLeader("")}, 1: {bus.NotLeader("")}, 2: {bus.NotLeader("")}}, 0, nil, 4},
		{"max attempts", map[int][]error{0: {unavailable, unavailable}, 1: {unavailable, unavailable}, 2: {unavailable, unavailable}}, 3, bus.ErrUnavailable, 3},
		{"invalid argument not retried", map[int][]error{0: {bus.Errorf(bus.CodeInvalidArgument, "no")}, 1: {bus.Errorf(bus.CodeInvalidArgument, "no")}, 2: {bus.Errorf(bus.CodeInvalidArgument, "no")}}, 0, bus.ErrInvalidArgument, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := kvclienttest.Start(t, kvclienttest.Options{NoDescriptors: true})
			for n, errs := range tt.inject {
				fc.Inject(n, kvclient.MethodPut, errs...)
			}
			c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.MaxAttempts = tt.maxTries })
			_, err := c.Put(ctxT(t), []byte("a"), []byte("1"))
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put: %v; want %v", err, tt.wantErr)
			}
			calls := fc.Calls(0, kvclient.MethodPut) + fc.Calls(1, kvclient.MethodPut) + fc.Calls(2, kvclient.MethodPut)
			if calls != tt.wantCall {
				t.Errorf("%d Put calls; want %d", calls, tt.wantCall)
			}
		})
	}
}

func TestContextDeadline(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	errs := make([]error, 1000)
	for i := range errs {
		errs[i] = bus.Errorf(bus.CodeUnavailable, "down")
	}
	fc.Inject(0, kvclient.MethodGet, errs...)
	c := newClient(t, fc, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	_, _, err := c.Get(ctx, []byte("a"))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("Get past the deadline: %v; want DeadlineExceeded wrapping the last Unavailable", err)
	}
}

func TestInitAndRanges(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Uninitialized: true})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	// Before Init every node answers Unavailable "not initialized": once
	// each has, the client gives up.
	if _, err := c.Put(ctx, []byte("a"), nil); !errors.Is(err, kvclient.ErrNotInitialized) || !errors.Is(err, bus.ErrUnavailable) || ctx.Err() != nil {
		t.Errorf("Put before Init: %v; want ErrNotInitialized, before the deadline", err)
	}
	for n := range 3 {
		if got := fc.Calls(n, kvclient.MethodPut); got != 1 {
			t.Errorf("node %d got %d Puts before Init; want 1", n, got)
		}
	}
	res, err := c.Init(ctx, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m"), []byte("g")}, ReplicationFactor: 3})
	if err != nil || res.AlreadyInitialized || len(res.Descriptors) != 4 {
		t.Fatalf("Init = %+v, %v; want 4 new descriptors (meta + 3)", res, err)
	}
	again, err := c.Init(ctx, kvclient.InitOptions{InitialRanges: 8})
	if err != nil || !again.AlreadyInitialized || len(again.Descriptors) != 4 {
		t.Fatalf("second Init = %+v, %v; want already initialized, same descriptors", again, err)
	}
	layouts := []struct {
		o    kvclient.InitOptions
		want string // in LayoutDiffers; "" for none
	}{
		{kvclient.InitOptions{}, ""},
		{kvclient.InitOptions{SplitPoints: [][]byte{[]byte("g"), []byte("m")}, ReplicationFactor: 3}, ""},
		{kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m")}}, ""},
		{kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m"), []byte("x")}}, `split points "x" are not boundaries of its 3 user ranges`},
		{kvclient.InitOptions{InitialRanges: 8}, "it has 3 user ranges, not the 8 initial ranges asked for"},
		{kvclient.InitOptions{ReplicationFactor: 1}, "has 3 replicas, not 1"},
	}
	for _, l := range layouts {
		res, err := c.Init(ctx, l.o)
		if err != nil || !res.AlreadyInitialized {
			t.Fatalf("Init(%+v) = %+v, %v; want already initialized", l.o, res, err)
		}
		if l.want == "" && res.LayoutDiffers != "" || !strings.Contains(res.LayoutDiffers, l.want) {
			t.Errorf("Init(%+v).LayoutDiffers = %q; want %q", l.o, res.LayoutDiffers, l.want)
		}
	}
	rs, err := c.Ranges(ctx, fc.Addrs()[1])
	if err != nil || rs.GetNodeId() != 2 || len(rs.GetReplicas()) != 3 {
		t.Fatalf("Ranges = %v, %v", rs, err)
	}
	if _, err := c.Put(ctx, []byte("a"), nil); err != nil {
		t.Errorf("Put after Init: %v", err)
	}
	if _, err := c.Init(ctx, kvclient.InitOptions{InitialRanges: -1}); err == nil {
		t.Error("negative initial ranges accepted")
	}
}

func TestConfigAndClose(t *testing.T) {
	for _, tt := range []struct {
		cfg  kvclient.Config
		want string
	}{
		{kvclient.Config{CertsDir: "x"}, "Addrs"},
		{kvclient.Config{Addrs: []string{"nohost"}, CertsDir: "x"}, "host:port"},
		{kvclient.Config{Addrs: []string{"127.0.0.1:7402"}}, "CertsDir"},
		{kvclient.Config{Addrs: []string{"127.0.0.1:7402"}, CertsDir: "x", RetryBackoffMin: time.Second, RetryBackoffMax: time.Millisecond}, "RetryBackoffMin"},
		{kvclient.Config{Addrs: []string{"127.0.0.1:7402"}, CertsDir: "x", MaxAttempts: -1}, "MaxAttempts"},
		{kvclient.Config{Addrs: []string{"127.0.0.1:7402"}, CertsDir: t.TempDir()}, "load certificates"},
	} {
		_, err := kvclient.New(t.Context(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v; want an error naming %s", tt.cfg, err, tt.want)
		}
	}
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	rt := daemontest.NewRuntime(t, "client")
	c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: fc.Addrs(), Bus: rt.Bus})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctxT(t), []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctxT(t), []byte("a"), []byte("1")); !errors.Is(err, kvclient.ErrClosed) {
		t.Errorf("Put after Close: %v; want ErrClosed", err)
	}
	// The shared bus still works.
	if _, err := kvclient.New(t.Context(), kvclient.Config{Addrs: fc.Addrs(), Bus: rt.Bus}); err != nil {
		t.Fatal(err)
	}
}

// TestMaxStalenessBadInput: a negative or huge bound, or one with Stale,
// is refused before anything is sent.
func TestMaxStalenessBadInput(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newClient(t, fc, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		d    time.Duration
		cons kvclient.Consistency
	}{
		{"negative", -5 * time.Second, kvclient.Linearizable},
		{"huge", kvclient.MaxStalenessLimit + time.Second, kvclient.Linearizable},
		{"with stale", 5 * time.Second, kvclient.Stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := c.Get(ctx, []byte("k"), kvclient.MaxStaleness(tc.d), kvclient.WithConsistency(tc.cons)); err == nil {
				t.Error("Get accepted it")
			}
			if _, err := c.Scan(ctx, []byte("a"), nil, kvclient.ScanOptions{MaxStaleness: tc.d, Consistency: tc.cons}).Collect(); err == nil {
				t.Error("Scan accepted it")
			}
			for node := range 3 {
				if n := fc.Calls(node, kvclient.MethodGet) + fc.Calls(node, kvclient.MethodScan); n != 0 {
					t.Errorf("node %d got %d calls", node, n)
				}
			}
		})
	}
}
