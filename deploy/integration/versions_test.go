package integration_test

import (
	"context"
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
