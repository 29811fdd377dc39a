package multiraft

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// scanPages runs req to its end, page after page, and returns every
// entry.
func (c *testCluster) scanPages(ctx context.Context, req *kvpb.ScanRequest) ([]*kvpb.KeyValue, error) {
	var out []*kvpb.KeyValue
	for pages := 0; ; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("scan %v runs past 1000 pages", req)
		}
		var resp *kvpb.ScanResponse
		if err := c.do(ctx, func(ctx context.Context, s *Store) error {
			var err error
			resp, err = s.Scan(ctx, req)
			return err
		}); err != nil {
			return nil, err
		}
		out = append(out, resp.GetKvs()...)
		if len(resp.GetResumeKey()) == 0 {
			return out, nil
		}
		req = proto.Clone(req).(*kvpb.ScanRequest)
		if req.GetReverse() {
			req.End = resp.GetResumeKey()
		} else {
			req.Start = resp.GetResumeKey()
		}
	}
}

// TestScanAt scans, as of every timestamp of a history of writes,
// deletes and range deletes over two ranges (one key escaped in the
// versions family, keys on both sides of the split), forward and
// backwards, with values and keys only, in one page and in pages cut by
// the limit and by bytes: each finds exactly what reads of each key at
// that timestamp find, in key order.
func TestScanAt(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("b")}}, func(cfg *Config) {
		gcConfig(cfg)
		cfg.VersionRetention = time.Hour // every version of the history in the window
	})
	keys, _ := versionHistory(t, c, 11)
	slices.Sort(keys)
	// Every version's timestamp (in both ranges) inside the window, and
	// just before each: from the node that applied the most (a follower
	// may not have applied the last writes yet).
	horizon := c.store(1).readHorizon()
	horizon.WallTime += int64(time.Second)
	ats := []hlc.Timestamp{horizon}
	var all []storage.KV
	for _, e := range c.engines {
		vs, err := e.Scan(t.Context(), storage.Versions, nil, nil, storage.ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) > len(all) {
			all = vs
		}
	}
	for _, kv := range all {
		_, ts, err := storage.DecodeVersionKey(kv.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !ts.Less(horizon) {
			ats = append(ats, ts, before(ts))
		}
	}
	t.Logf("%d versions, %d timestamps", len(all), len(ats))
	if len(ats) < 20 {
		t.Fatalf("only %d timestamps to read at", len(ats))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, at := range ats {
		var want []*kvpb.KeyValue
		for _, k := range keys {
			resp, err := c.getAt(ctx, k, at)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetFound() {
				want = append(want, &kvpb.KeyValue{Key: []byte(k), Value: resp.GetValue()})
			}
		}
		rev := slices.Clone(want)
		slices.Reverse(rev)
		keysOnly := make([]*kvpb.KeyValue, len(want))
		for i, kv := range want {
			keysOnly[i] = proto.Clone(kv).(*kvpb.KeyValue)
			keysOnly[i].Value.Value = nil
		}
		for _, tc := range []struct {
			name string
			req  *kvpb.ScanRequest
			want []*kvpb.KeyValue
		}{
			{"forward", &kvpb.ScanRequest{}, want},
			{"reverse", &kvpb.ScanRequest{Reverse: true}, rev},
			{"keys only", &kvpb.ScanRequest{KeysOnly: true}, keysOnly},
			{"pages of one", &kvpb.ScanRequest{Limit: 1}, want},
			{"reverse pages of two", &kvpb.ScanRequest{Limit: 2, Reverse: true}, rev},
			{"pages cut by bytes", &kvpb.ScanRequest{MaxBytes: 1}, want},
			{"reverse pages cut by bytes", &kvpb.ScanRequest{MaxBytes: 1, Reverse: true}, rev},
			{"span", &kvpb.ScanRequest{Start: []byte("a\x00"), End: []byte("c")}, spanOf(want, "a\x00", "c")},
		} {
			tc.req.ReadAt = at.Proto()
			got, err := c.scanPages(ctx, tc.req)
			if err != nil {
				t.Fatalf("%s at %v: %v", tc.name, at, err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b *kvpb.KeyValue) bool { return proto.Equal(a, b) }) {
				t.Errorf("%s at %v:\n got %v\nwant %v", tc.name, at, got, tc.want)
			}
		}
	}

	for _, tc := range []struct {
		name   string
		at     *hlcpb.Timestamp
		code   bus.Code
		reason string
	}{
		{"older than the window", hlc.Timestamp{WallTime: horizon.WallTime - int64(time.Minute)}.Proto(), bus.CodeFailedPrecondition, kvpb.ReasonCompacted},
		{"invalid", &hlcpb.Timestamp{WallTime: -1}, bus.CodeInvalidArgument, ""},
	} {
		_, err := c.scanPages(ctx, &kvpb.ScanRequest{ReadAt: tc.at})
		if bus.CodeOf(err) != tc.code || bus.ReasonOf(err) != tc.reason {
			t.Errorf("scan %s = %v; want %v %q", tc.name, err, tc.code, tc.reason)
		}
	}
}

// spanOf is the entries of kvs in [start, end).
func spanOf(kvs []*kvpb.KeyValue, start, end string) []*kvpb.KeyValue {
	var out []*kvpb.KeyValue
	for _, kv := range kvs {
		if k := string(kv.GetKey()); k >= start && k < end {
			out = append(out, kv)
		}
	}
	return out
}

// TestScanAtFindsKeysWithoutVersions scans at a timestamp over a key
// whose record predates the versions family (the first envelope, no
// version kept) beside keys written since: it is found as of its
// timestamp and after, as a read at a timestamp finds it, and not
// before.
func TestScanAtFindsKeysWithoutVersions(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{}, func(cfg *Config) { cfg.VersionGCInterval = -1 })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w := &sessWriter{c: c}
	w.putTS(ctx, "a", "a1")
	old := c.store(1).d.Clock.Now()
	if err := c.engines[1].Write(ctx, []storage.Op{storage.Put(storage.Data, []byte("b"), storage.EncodeValue(old, []byte("legacy")))}, true); err != nil {
		t.Fatal(err)
	}
	w.putTS(ctx, "c", "c1")
	now := w.putTS(ctx, "a", "a2")
	for _, tc := range []struct {
		name    string
		at      hlc.Timestamp
		reverse bool
		want    []string
	}{
		{"now", now, false, []string{"a=a2", "b=legacy", "c=c1"}},
		{"now, reverse", now, true, []string{"c=c1", "b=legacy", "a=a2"}},
		{"at its timestamp", old, false, []string{"a=a1", "b=legacy"}},
		{"before it", before(old), false, []string{"a=a1"}},
	} {
		got, err := c.scanPages(ctx, &kvpb.ScanRequest{ReadAt: tc.at.Proto(), Reverse: tc.reverse, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		var g []string
		for _, kv := range got {
			g = append(g, string(kv.GetKey())+"="+string(kv.GetValue().GetValue()))
		}
		if !slices.Equal(g, tc.want) {
			t.Errorf("scan %s = %v; want %v", tc.name, g, tc.want)
		}
		resp, err := c.getAt(ctx, "b", tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetFound() != slices.Contains(tc.want, "b=legacy") {
			t.Errorf("Get b at %s found %v; the scan disagrees", tc.name, resp.GetFound())
		}
	}
}
