package multiraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// sessWriter writes through one client session, so that c.do's retries
// of a write that timed out apply once (a late first attempt would add a
// version the tests do not expect).
type sessWriter struct {
	c   *testCluster
	seq uint64
}

// header is the header of the next write (every earlier one answered).
func (w *sessWriter) header() *kvpb.Header {
	w.seq++
	return hdr(session(0x5a, w.seq, w.seq, w.c.now()))
}

// putTS writes key and returns the write's timestamp.
func (w *sessWriter) putTS(ctx context.Context, key, value string) hlc.Timestamp {
	c := w.c
	c.t.Helper()
	h := w.header()
	var resp *kvpb.PutResponse
	err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.Put(ctx, &kvpb.PutRequest{Header: h, Key: []byte(key), Value: []byte(value)})
		return err
	})
	if err != nil {
		c.t.Fatalf("put %s: %v", key, err)
	}
	ts, err := hlc.FromProto(resp.GetTimestamp())
	if err != nil {
		c.t.Fatal(err)
	}
	return ts
}

// del deletes key.
func (w *sessWriter) del(ctx context.Context, key string) {
	w.c.t.Helper()
	h := w.header()
	if err := w.c.do(ctx, func(ctx context.Context, s *Store) error {
		_, err := s.Delete(ctx, &kvpb.DeleteRequest{Header: h, Key: []byte(key)})
		return err
	}); err != nil {
		w.c.t.Fatalf("delete %q: %v", key, err)
	}
}

// delRange deletes [start, end).
func (w *sessWriter) delRange(ctx context.Context, start, end string) {
	w.c.t.Helper()
	h := w.header()
	if err := w.c.do(ctx, func(ctx context.Context, s *Store) error {
		_, err := s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Header: h, Start: []byte(start), End: []byte(end)})
		return err
	}); err != nil {
		w.c.t.Fatalf("delete [%q, %q): %v", start, end, err)
	}
}

// getAt reads key as of ts through Get (ts zero: the latest).
func (c *testCluster) getAt(ctx context.Context, key string, ts hlc.Timestamp) (*kvpb.GetResponse, error) {
	req := &kvpb.GetRequest{Key: []byte(key)}
	if !ts.IsZero() {
		req.ReadAt = ts.Proto()
	}
	var resp *kvpb.GetResponse
	err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.Get(ctx, req)
		return err
	})
	return resp, err
}

// versionsOf is the versions family of range 2 in a node's engine.
func (c *testCluster) versionsOf(id uint64) []storage.KV {
	s := c.store(id)
	if s == nil {
		c.t.Fatalf("node %d is down", id)
	}
	start, end := clipSpan(nil, nil, s.Replica(2).desc.Load())
	vstart, vend := storage.VersionSpan(start, end)
	kvs, err := c.engines[id].Scan(context.Background(), storage.Versions, vstart, vend, storage.ScanOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return kvs
}

// TestVersionsReadAtAndMeta writes, overwrites, deletes and re-creates
// keys and reads them as of every timestamp in between: each read finds
// the version written at or before it, with the key's create timestamp
// and version count; every replica holds the same versions.
func TestVersionsReadAtAndMeta(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.VersionRetention = time.Hour })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w := &sessWriter{c: c}
	ts1 := w.putTS(ctx, "k", "v1")
	ts2 := w.putTS(ctx, "k", "v2")
	ts3 := w.putTS(ctx, "k", "v3")
	w.del(ctx, "k")
	gone := w.putTS(ctx, "other", "x") // after the delete
	ts5 := w.putTS(ctx, "k", "v5")
	a1 := w.putTS(ctx, "m1", "a")
	w.putTS(ctx, "m2", "b")
	w.delRange(ctx, "m", "n")
	afterRange := w.putTS(ctx, "other", "y")

	for _, tc := range []struct {
		name    string
		key     string
		at      hlc.Timestamp
		found   bool
		value   string
		created hlc.Timestamp
		version uint64
	}{
		{"latest after re-creation", "k", hlc.Timestamp{}, true, "v5", ts5, 1},
		{"before the first write", "k", before(ts1), false, "", hlc.Timestamp{}, 0},
		{"at the first write", "k", ts1, true, "v1", ts1, 1},
		{"between first and second", "k", before(ts2), true, "v1", ts1, 1},
		{"at the second", "k", ts2, true, "v2", ts1, 2},
		{"at the third", "k", ts3, true, "v3", ts1, 3},
		{"after the delete", "k", gone, false, "", hlc.Timestamp{}, 0},
		{"just before re-creation", "k", before(ts5), false, "", hlc.Timestamp{}, 0},
		{"at re-creation", "k", ts5, true, "v5", ts5, 1},
		{"in the future", "k", hlc.Timestamp{WallTime: ts5.WallTime + int64(time.Minute)}, true, "v5", ts5, 1},
		{"before a range delete", "m1", a1.Next(), true, "a", a1, 1},
		{"after a range delete", "m1", afterRange, false, "", hlc.Timestamp{}, 0},
		{"latest after a range delete", "m2", hlc.Timestamp{}, false, "", hlc.Timestamp{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.getAt(ctx, tc.key, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetFound() != tc.found || string(resp.GetValue().GetValue()) != tc.value {
				t.Fatalf("Get(%s at %v) = %v; want found %v value %q", tc.key, tc.at, resp, tc.found, tc.value)
			}
			if !tc.found {
				return
			}
			created, _ := hlc.FromProto(resp.GetValue().GetCreateTimestamp())
			if created != tc.created || resp.GetValue().GetVersion() != tc.version {
				t.Errorf("Get(%s at %v) created %v version %d; want %v, %d", tc.key, tc.at, created, resp.GetValue().GetVersion(), tc.created, tc.version)
			}
		})
	}

	// A timestamp older than the retention window is refused.
	old := hlc.Timestamp{WallTime: ts1.WallTime - int64(2*time.Hour)}
	_, err := c.getAt(ctx, "k", old)
	if bus.CodeOf(err) != bus.CodeFailedPrecondition || bus.ReasonOf(err) != kvpb.ReasonCompacted {
		t.Errorf("Get at %v (2h ago, retention 1h) = %v; want FailedPrecondition %q", old, err, kvpb.ReasonCompacted)
	}

	// Versions are written at the apply timestamp: every replica holds the
	// same ones.
	waitFor(t, 10*time.Second, "every replica to hold the same versions", func() bool {
		want := c.versionsOf(c.ids[0])
		for _, id := range c.ids[1:] {
			if !reflect.DeepEqual(want, c.versionsOf(id)) {
				return false
			}
		}
		// k: 3 puts, a tombstone, a put; other: 2; m1, m2: a put and a
		// tombstone each.
		return len(want) == 5+2+2+2
	})
}

// versionHistory runs random writes, deletes and range deletes over a
// few keys (around the version key escape) while time moves on, then
// returns the keys and the timestamps inside the retention window worth
// reading at (each version's, just before each, and the horizon).
func versionHistory(t *testing.T, c *testCluster, seed uint64) (keys []string, ats []hlc.Timestamp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, 18))
	w := &sessWriter{c: c}
	keys = []string{"a", "a\x00", "a\x00b", "b", "c", "d\xff"}
	for round := range 12 {
		for i := range 4 {
			k := keys[rng.IntN(len(keys))]
			switch n := rng.IntN(10); {
			case n < 6:
				w.putTS(ctx, k, fmt.Sprintf("%s-%d-%d", k, round, i))
			case n < 9:
				w.del(ctx, k)
			default:
				w.delRange(ctx, "a\x00", "c")
			}
		}
		c.skew.Add(int64(10 * time.Second))
	}
	// Writes are answered before the round writes them; a linearizable
	// read waits until they are in the engine.
	if _, err := c.getAt(ctx, keys[0], hlc.Timestamp{}); err != nil {
		t.Fatal(err)
	}
	horizon := c.store(1).readHorizon()
	horizon.WallTime += int64(5 * time.Second) // the horizon moves on while the test reads (slowly, under -race and load)
	ats = []hlc.Timestamp{horizon}
	for _, kv := range c.versionsOf(1) {
		_, ts, err := storage.DecodeVersionKey(kv.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !ts.Less(horizon) {
			ats = append(ats, ts, before(ts))
		}
	}
	return keys, ats
}

// readsAt reads every key at every timestamp.
func (c *testCluster) readsAt(t *testing.T, keys []string, ats []hlc.Timestamp) map[string]*kvpb.GetResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := map[string]*kvpb.GetResponse{}
	for _, k := range keys {
		for _, at := range ats {
			resp, err := c.getAt(ctx, k, at)
			if err != nil {
				t.Fatalf("Get(%q at %v): %v", k, at, err)
			}
			out[fmt.Sprintf("%q@%v", k, at)] = resp
		}
	}
	return out
}

func sameReads(t *testing.T, when string, want, got map[string]*kvpb.GetResponse) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; !proto.Equal(g, w) {
			t.Errorf("%s: read %s: %v before collection, %v after", when, k, w, g)
		}
	}
}

func gcConfig(cfg *Config) {
	cfg.VersionRetention = time.Minute
	cfg.VersionGCInterval = -1
	cfg.VersionGCPageEntries = 3
}

// TestVersionGCKeepsWhatReadsNeed records what reads at every timestamp
// inside the retention window return, collects old versions (in pages
// smaller than a key's versions), and checks every such read returns the
// same, that the collection removed versions, and that at most one
// version per key is left below the threshold, none a tombstone.
func TestVersionGCKeepsWhatReadsNeed(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{}, gcConfig)
	keys, ats := versionHistory(t, c, 7)
	s := c.store(1)
	all := c.versionsOf(1)
	want := c.readsAt(t, keys, ats)
	removed, err := s.collectVersions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sameReads(t, "after collection", want, c.readsAt(t, keys, ats))
	if st := s.Stats(); st.VersionsCollected != uint64(removed) || st.VersionGCRounds != 1 || st.VersionGCRunning != 0 {
		t.Errorf("stats: %d versions collected in %d rounds (running %d); want %d in 1 (running 0)",
			st.VersionsCollected, st.VersionGCRounds, st.VersionGCRunning, removed)
	}
	left := c.versionsOf(1)
	if removed == 0 || len(left) != len(all)-removed {
		had := map[string]bool{}
		for _, kv := range all {
			had[string(kv.Key)] = true
		}
		for _, kv := range left {
			if !had[string(kv.Key)] {
				k, ts, _ := storage.DecodeVersionKey(kv.Key)
				m, v, del, _ := storage.DecodeRecord(kv.Value)
				t.Logf("new version %q@%v: %+v %q deleted %v", k, ts, m, v, del)
			}
		}
		t.Fatalf("collection removed %d of %d versions; %d are left", removed, len(all), len(left))
	}
	thr := s.gcThreshold()
	old := map[string]int{}
	for _, kv := range left {
		k, ts, err := storage.DecodeVersionKey(kv.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !thr.Less(ts) {
			old[string(k)]++
			if _, _, deleted, _ := storage.DecodeRecord(kv.Value); deleted {
				t.Errorf("a tombstone of %q at %v below the threshold %v is left", k, ts, thr)
			}
		}
	}
	for k, n := range old {
		if n > 1 {
			t.Errorf("%d versions of %q below the threshold are left; want at most 1", n, k)
		}
	}
	// A second collection finds nothing more.
	if n, err := s.collectVersions(t.Context()); err != nil || n != 0 {
		t.Errorf("second collection removed %d, %v; want 0", n, err)
	}
	t.Logf("%d versions, %d collected, %d reads checked", len(all), removed, len(want))
}

// gcCutEngine lets through only the next allowed collection writes (all
// deletes of versions) and refuses the others: what a crash of stored
// mid-collection keeps is such a prefix of its writes.
type gcCutEngine struct {
	storage.Engine
	allowed atomic.Int64
}

func (e *gcCutEngine) Write(ctx context.Context, ops []storage.Op, sync bool) error {
	gc := len(ops) > 0
	for _, op := range ops {
		gc = gc && op.CF == storage.Versions && op.Kind == storage.OpDelete
	}
	if gc && e.allowed.Add(-1) < 0 {
		return errors.New("stored killed (test)")
	}
	return e.Engine.Write(ctx, ops, sync)
}

// TestVersionGCInterruptedAtEveryPage stops the collection after each of
// its writes in turn (as a kill -9 of stored mid-collection would, its
// writes being atomic) and checks that reads inside the window are the
// same at every point, and once the collection completes.
func TestVersionGCInterruptedAtEveryPage(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{}, gcConfig)
	keys, ats := versionHistory(t, c, 11)
	cut := &gcCutEngine{Engine: c.disks[1].Engine}
	c.stop(1)
	c.disks[1].Engine = cut
	c.start(1)
	s := c.store(1)
	want := c.readsAt(t, keys, ats)
	pages := 0
	for ; pages < 100; pages++ {
		cut.allowed.Store(1)
		_, err := s.collectVersions(t.Context())
		sameReads(t, fmt.Sprintf("after %d collection writes", pages+1), want, c.readsAt(t, keys, ats))
		if err == nil {
			break
		}
	}
	if pages < 2 {
		t.Fatalf("the collection took %d writes; want several to cut it between", pages+1)
	}
	cut.allowed.Store(1 << 30)
	if n, err := s.collectVersions(t.Context()); err != nil || n != 0 {
		t.Errorf("collection after the interrupted ones removed %d, %v; want 0", n, err)
	}
	t.Logf("collection cut after each of %d writes", pages+1)
}

// TestSnapshotCarriesVersions has a follower catch up by a snapshot after
// overwrites and deletes, and checks it then holds the same versions and
// key metadata as the others, and serves reads at a timestamp from them.
func TestSnapshotCarriesVersions(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
	lagger, _ := laggingFollower(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w := &sessWriter{c: c}
	first := w.putTS(ctx, "k0001", "overwritten")
	w.del(ctx, "k0002")
	c.net.Heal()
	waitFor(t, 10*time.Second, "the snapshot install to be recorded", func() bool {
		return c.store(lagger).Stats().SnapshotsApplied > 0
	})
	c.waitSameData(lagger)
	waitFor(t, 10*time.Second, "the follower to hold the same versions", func() bool {
		mine := c.versionsOf(lagger)
		for _, o := range c.ids {
			if o != lagger && !reflect.DeepEqual(mine, c.versionsOf(o)) {
				return false
			}
		}
		return len(mine) > 0
	})
	// The follower serves a read at a timestamp from them.
	s := c.store(lagger)
	v, ok, err := s.readAt(ctx, []byte("k0001"), before(first))
	if err != nil || !ok || string(v.GetValue()) != "value-1" {
		t.Errorf("follower k0001 before the overwrite = %v, %v, %v; want value-1", v, ok, err)
	}
	v, ok, err = s.readValue(ctx, []byte("k0001"))
	if err != nil || !ok || v.GetVersion() != 2 {
		t.Errorf("follower k0001 = %v, %v, %v; want version 2", v, ok, err)
	}
}
