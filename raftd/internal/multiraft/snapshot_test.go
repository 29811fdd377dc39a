package multiraft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// laggingFollower writes enough, with one follower of range 2 cut off,
// for the others to truncate their logs past it; it returns the follower
// (still isolated) and the number of keys k0000.. written.
func laggingFollower(t *testing.T, c *testCluster) (uint64, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	var lagger uint64
	for _, id := range c.ids {
		if id != leader {
			lagger = id
			break
		}
	}
	c.net.Isolate(lagger, c.ids)
	n := int(c.cfg.LogTruncateEntries) * 3
	for i := range n {
		if err := c.put(ctx, fmt.Sprintf("k%04d", i), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "leader log truncation", func() bool {
		st := c.store(c.leaderOf(2)).Replica(2).Status()
		return st.GetFirstIndex() > c.store(lagger).Replica(2).Status().GetLastIndex()+1
	})
	return lagger, n
}

// dataOf is the raw data of range 2 in a node's engine. (The meta
// range's bootstrap data carries each node's own timestamps.)
func (c *testCluster) dataOf(id uint64) []storage.KV {
	s := c.store(id)
	if s == nil {
		c.t.Fatalf("node %d is down", id)
	}
	start, end := clipSpan(nil, nil, s.Replica(2).desc.Load())
	kvs, err := c.engines[id].Scan(context.Background(), storage.Data, start, end, storage.ScanOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return kvs
}

// waitSameData waits until node id's data equals every other node's.
func (c *testCluster) waitSameData(id uint64) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, fmt.Sprintf("node %d to hold the same data as the others", id), func() bool {
		mine := c.dataOf(id)
		for _, o := range c.ids {
			if o != id && !reflect.DeepEqual(mine, c.dataOf(o)) {
				return false
			}
		}
		return len(mine) > 0
	})
}

func (c *testCluster) appliedIndexInEngine(id, rangeID uint64) uint64 {
	v, ok, err := c.engines[id].Get(context.Background(), storage.Raft, storage.AppliedStateKey(rangeID))
	if err != nil || !ok {
		c.t.Fatalf("applied state of range %d on node %d: %v %v", rangeID, id, ok, err)
	}
	a := &raftmsgpb.AppliedState{}
	if err := proto.Unmarshal(v, a); err != nil {
		c.t.Fatal(err)
	}
	return a.GetIndex()
}

func (c *testCluster) hasMarker(id, rangeID uint64) bool {
	_, ok, err := c.engines[id].Get(context.Background(), storage.Raft, storage.SnapshotMarkerKey(rangeID))
	if err != nil {
		c.t.Fatal(err)
	}
	return ok
}

// TestSnapshotStreamedInChunks has a follower fall behind the log
// truncation and catch up by a snapshot of many small chunks, then checks
// it holds and serves exactly the data of the others.
func TestSnapshotStreamedInChunks(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 128 })
	lagger, n := laggingFollower(t, c)
	c.net.Heal()
	waitFor(t, 10*time.Second, "lagging follower to catch up", func() bool {
		v, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1))
		return ok && v == fmt.Sprintf("value-%d", n-1)
	})
	// The data is in place once ingested; the round after records the
	// install.
	waitFor(t, 10*time.Second, "the snapshot install to be recorded", func() bool {
		return c.store(lagger).Stats().SnapshotsApplied > 0
	})
	// The range's client sessions (the puts' raftd sessions) came with
	// the data.
	c.waitSameSessions(lagger)
	st := c.store(lagger).Stats()
	// start + data chunks of ~128 bytes + done: many for n keys.
	if st.SnapshotChunksReceived < uint64(n)/10 {
		t.Errorf("snapshot came in %d chunks, want many (chunk size 128 bytes, %d keys)", st.SnapshotChunksReceived, n)
	}
	c.waitSameData(lagger)
	for i := range n {
		k := fmt.Sprintf("k%04d", i)
		if v, ok := c.staleGet(lagger, k); !ok || v != fmt.Sprintf("value-%d", i) {
			t.Fatalf("follower %s = %q, %v", k, v, ok)
		}
	}
	if v, ok := c.staleGet(lagger, "before"); !ok || v != "1" {
		t.Errorf("follower before = %q, %v", v, ok)
	}
	// The count moves when the install's writes are prepared; the marker
	// goes with the round's write just after.
	waitFor(t, 10*time.Second, "the snapshot marker removed after the install", func() bool { return !c.hasMarker(lagger, 2) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.put(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "post-snapshot replication", func() bool {
		v, ok := c.staleGet(lagger, "after")
		return ok && v == "2"
	})
	c.waitSameData(lagger)
}

// TestSnapshotInstallCrash crashes the receiver of a snapshot part way
// through its install (after the marker, after the data was replaced)
// and checks the restarted replica's applied index matches its data, and
// that it then catches up and holds the same data as the others.
func TestSnapshotInstallCrash(t *testing.T) {
	for _, tc := range []struct {
		stage string
		// installed: the data was replaced before the crash, so the
		// restart completes the install.
		installed bool
	}{
		{stage: "marker", installed: false},
		{stage: "ingest", installed: true},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
			lagger, n := laggingFollower(t, c)
			hit := make(chan struct{})
			eng := c.engines[lagger]
			hook := func(rangeID uint64, stage string) {
				if rangeID == 2 && stage == tc.stage {
					select {
					case <-hit:
					default:
						eng.FailWrites(errors.New("simulated crash"))
						close(hit)
					}
				}
			}
			c.store(lagger).testHook.Store(&hook)
			c.net.Heal()
			select {
			case <-hit:
			case <-time.After(10 * time.Second):
				t.Fatal("no snapshot install reached stage " + tc.stage)
			}
			c.crash(lagger)
			eng.FailWrites(nil)
			if !c.hasMarker(lagger, 2) {
				t.Fatal("no snapshot marker after the crash")
			}
			mv, _, _ := eng.Get(context.Background(), storage.Raft, storage.SnapshotMarkerKey(2))
			_, mapplied, _, err := decodeMarker(mv)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.appliedIndexInEngine(lagger, 2); got >= mapplied.GetIndex() {
				t.Fatalf("applied index %d after the crash, want one below the snapshot's %d", got, mapplied.GetIndex())
			}
			c.net.Isolate(lagger, c.ids) // see the recovered state alone first
			c.start(lagger)
			if c.hasMarker(lagger, 2) {
				t.Error("snapshot marker left after recovery")
			}
			got := c.appliedIndexInEngine(lagger, 2)
			var wantRecovered uint64
			if tc.installed {
				wantRecovered = 1
				if got != mapplied.GetIndex() {
					t.Errorf("recovered applied index %d, want the snapshot's %d", got, mapplied.GetIndex())
				}
				if v, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1)); !ok || v != fmt.Sprintf("value-%d", n-1) {
					t.Errorf("recovered replica k%04d = %q, %v", n-1, v, ok)
				}
			} else {
				if got >= mapplied.GetIndex() {
					t.Errorf("applied index %d after rolling back, want one below the snapshot's %d", got, mapplied.GetIndex())
				}
				if _, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1)); ok {
					t.Error("rolled back replica serves snapshot data")
				}
			}
			start, end := storage.StagedSessionSpan(2)
			if staged, err := eng.Scan(context.Background(), storage.Raft, start, end, storage.ScanOptions{}); err != nil || len(staged) > 0 {
				t.Errorf("%d staged session records left after recovery (%v)", len(staged), err)
			}
			c.checkSessionsLoaded(lagger)
			if tc.installed {
				leader := c.leaderOf(2)
				if got, want := c.sessionsOf(lagger), c.sessionsOf(leader); !reflect.DeepEqual(got, want) || len(got) == 0 {
					t.Errorf("recovered replica holds %d session records, its leader %d; want the snapshot's", len(got), len(want))
				}
			}
			if r := c.store(lagger).Stats().SnapshotsRecovered; r != wantRecovered {
				t.Errorf("SnapshotsRecovered = %d, want %d", r, wantRecovered)
			}
			c.net.Heal()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := c.put(ctx, "after", "2"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "restarted follower to catch up", func() bool {
				v, ok := c.staleGet(lagger, "after")
				return ok && v == "2"
			})
			c.waitSameData(lagger)
		})
	}
}

// TestSnapshotInstallOffTheRounds holds a follower's snapshot install of
// range 2 between the marker and the ingest, as a large span would, and
// checks that the follower's other range keeps applying writes meanwhile,
// and that the install then completes.
func TestSnapshotInstallOffTheRounds(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
	lagger, n := laggingFollower(t, c)
	reached, release := make(chan struct{}), make(chan struct{})
	var reachOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	hook := func(rangeID uint64, stage string) {
		if rangeID == 2 && stage == "marker" {
			reachOnce.Do(func() { close(reached) })
			<-release
		}
	}
	c.store(lagger).testHook.Store(&hook)
	c.net.Heal()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot install started")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.put(ctx, "zz", "during"); err != nil { // range 3
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the installing node to apply a write of its other range", func() bool {
		v, ok := c.staleGet(lagger, "zz")
		return ok && v == "during"
	})
	if _, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1)); ok {
		t.Fatal("range 2 serves the snapshot's data before its ingest")
	}
	releaseOnce.Do(func() { close(release) })
	waitFor(t, 10*time.Second, "the install to complete", func() bool {
		v, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1))
		return ok && v == fmt.Sprintf("value-%d", n-1)
	})
	c.waitSameData(lagger)
	waitFor(t, 10*time.Second, "one snapshot install recorded", func() bool {
		return c.store(lagger).Stats().SnapshotsApplied == 1
	})
}
