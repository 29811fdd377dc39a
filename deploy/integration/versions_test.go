package integration_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// TestReadAtAgainstRaftd reads through the client as of past timestamps
// from real raftd servers: each read finds the version of its time, with
// the key's create timestamp and version count, and a timestamp older
// than the retention window is refused as compacted.
func TestReadAtAgainstRaftd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raftd cluster")
	}
	rc := StartRaftd(t, 3)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, AttemptTimeout: time.Second,
		Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ts1, err := c.Put(ctx, []byte("k"), []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	ts2, err := c.Put(ctx, []byte("k"), []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		opts    []kvclient.ReadOption
		found   bool
		value   string
		mod     hlc.Timestamp
		version uint64
	}{
		{"latest", nil, true, "two", ts2, 2},
		{"at the first write", []kvclient.ReadOption{kvclient.ReadAt(ts1)}, true, "one", ts1, 1},
		{"before the first write", []kvclient.ReadOption{kvclient.ReadAt(hlc.Timestamp{WallTime: ts1.WallTime - 1})}, false, "", hlc.Timestamp{}, 0},
		{"at the second", []kvclient.ReadOption{kvclient.ReadAt(ts2)}, true, "two", ts2, 2},
	} {
		v, found, err := c.Get(ctx, []byte("k"), tc.opts...)
		if err != nil || found != tc.found || string(v.Value) != tc.value {
			t.Errorf("%s: Get = %q, %v, %v; want %q, %v", tc.name, v.Value, found, err, tc.value, tc.found)
			continue
		}
		if found && (v.Timestamp != tc.mod || v.CreateTimestamp != ts1 || v.Version != tc.version) {
			t.Errorf("%s: Get = %+v; want modified %v, created %v, version %d", tc.name, v, tc.mod, ts1, tc.version)
		}
	}
	old := hlc.Timestamp{WallTime: ts1.WallTime - int64(24*time.Hour)}
	if _, _, err := c.Get(ctx, []byte("k"), kvclient.ReadAt(old)); !kvclient.IsCompacted(err) {
		t.Errorf("Get at a day ago = %v; want a compacted error", err)
	}
}

// TestScanAtAgainstRaftd scans through the client as of past timestamps
// from real raftd servers, across ranges, in pages: each scan finds the
// keys and values of its time (a key deleted since is still there, one
// created since is not), and a timestamp older than the retention window
// is refused as compacted.
func TestScanAtAgainstRaftd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raftd cluster")
	}
	rc := StartRaftd(t, 3)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, AttemptTimeout: time.Second,
		Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m")}}); err != nil {
		t.Fatal(err)
	}
	put := func(k, v string) hlc.Timestamp {
		t.Helper()
		ts, err := c.Put(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	put("a", "a1")
	put("n", "n1")
	first := put("z", "z1")
	put("a", "a2")
	if _, err := c.Delete(ctx, []byte("n")); err != nil {
		t.Fatal(err)
	}
	put("b", "b1")
	now := put("y", "y1")
	type kv struct{ k, v string }
	for _, tc := range []struct {
		name string
		opts kvclient.ScanOptions
		want []kv
	}{
		{"latest", kvclient.ScanOptions{}, []kv{{"a", "a2"}, {"b", "b1"}, {"y", "y1"}, {"z", "z1"}}},
		{"at the third write", kvclient.ScanOptions{ReadAt: first, PageSize: 1}, []kv{{"a", "a1"}, {"n", "n1"}, {"z", "z1"}}},
		{"at the third write, reverse", kvclient.ScanOptions{ReadAt: first, Reverse: true}, []kv{{"z", "z1"}, {"n", "n1"}, {"a", "a1"}}},
		{"at the last write", kvclient.ScanOptions{ReadAt: now, PageSize: 2}, []kv{{"a", "a2"}, {"b", "b1"}, {"y", "y1"}, {"z", "z1"}}},
	} {
		got, err := c.Scan(ctx, nil, nil, tc.opts).Collect()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var g []kv
		for _, e := range got {
			g = append(g, kv{string(e.Key), string(e.Value)})
		}
		if !slices.Equal(g, tc.want) {
			t.Errorf("%s: Scan = %v; want %v", tc.name, g, tc.want)
		}
	}
	old := hlc.Timestamp{WallTime: first.WallTime - int64(24*time.Hour)}
	if _, err := c.Scan(ctx, nil, nil, kvclient.ScanOptions{ReadAt: old}).Collect(); !kvclient.IsCompacted(err) {
		t.Errorf("Scan at a day ago = %v; want a compacted error", err)
	}
}
