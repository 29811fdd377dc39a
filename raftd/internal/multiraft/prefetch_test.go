package multiraft

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// TestAppliesFindPrefetchedRecords checks that the records an apply
// builds on were read by the prefetch of the round that appended its
// entries, not on the apply's path, and that what the prefetch brought
// is right: keys written again after every node's value cache was
// emptied (so their records come from the engine through the prefetch)
// carry their version count and create timestamp on every replica.
func TestAppliesFindPrefetchedRecords(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	reads := func() (prefetch, apply, leaderApply uint64) {
		for _, id := range c.ids {
			st := c.store(id).Stats()
			prefetch += st.PrefetchReads
			apply += st.ApplyReads
			if id == leader {
				leaderApply = st.ApplyReads
			}
		}
		return prefetch, apply, leaderApply
	}
	const n = 30
	for round, value := range []string{"v1", "v2"} {
		if round == 1 {
			for _, id := range c.ids {
				c.store(id).vcache.clear()
			}
		}
		p0, a0, l0 := reads()
		for i := range n {
			if err := c.put(ctx, fmt.Sprintf("p%02d", i), value); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, "every replica to apply the puts", func() bool {
			for _, id := range c.ids {
				if v, ok := c.staleGet(id, fmt.Sprintf("p%02d", n-1)); !ok || v != value {
					return false
				}
			}
			return true
		})
		p1, a1, l1 := reads()
		// One put at a time: the leader and the follower that made the
		// quorum append each put in a round of its own, which prefetches
		// its key, and their applies find the record. (The other follower
		// often learns of the commit with the entry and reads for itself.)
		if p1-p0 < n {
			t.Errorf("%s: %d prefetch reads over the 3 nodes for %d puts; want at least %d", value, p1-p0, n, n)
		}
		if l1-l0 > n/4 || a1-a0 > n+n/4 {
			t.Errorf("%s: %d engine reads on the apply path on the leader, %d over the 3 nodes for %d puts; want at most %d and %d",
				value, l1-l0, a1-a0, n, n/4, n+n/4)
		}
	}
	// Done reads are let go of: an idle replica keeps none.
	waitFor(t, 10*time.Second, "every replica to let go of its prefetch", func() bool {
		for _, id := range c.ids {
			if c.store(id).Replica(2).fetching.Load() != nil {
				return false
			}
		}
		return true
	})
	for _, id := range c.ids {
		for i := range n {
			key := fmt.Sprintf("p%02d", i)
			v, ok, err := c.store(id).readValue(ctx, []byte(key))
			if err != nil || !ok {
				t.Fatalf("node %d %s: %v, found %v", id, key, err, ok)
			}
			if string(v.GetValue()) != "v2" || v.GetVersion() != 2 || v.GetCreateTimestamp().GetWallTime() == 0 ||
				v.GetCreateTimestamp().GetWallTime() >= v.GetTimestamp().GetWallTime() {
				t.Errorf("node %d %s = %q version %d created %v modified %v; want v2, version 2, created before modified",
					id, key, v.GetValue(), v.GetVersion(), v.GetCreateTimestamp(), v.GetTimestamp())
			}
		}
	}
}

// TestCatchUpFindsPrefetchedRecords checks that a follower that learns
// of entries with their commit (it was cut off while they were written)
// applies them without reading their records on the apply's path: the
// round read them before its phase1, in one MultiGet. Its values and
// version counts match the leader's.
func TestCatchUpFindsPrefetchedRecords(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	lagging := c.ids[0]
	if lagging == leader {
		lagging = c.ids[1]
	}
	const n = 20
	for round := range 2 {
		c.net.SetBlocked(leader, lagging, true)
		c.net.SetBlocked(lagging, leader, true)
		for i := range n {
			if err := c.put(ctx, fmt.Sprintf("c%02d", i), fmt.Sprintf("v%d", round)); err != nil {
				t.Fatal(err)
			}
		}
		reads := c.store(lagging).Stats().ApplyReads
		c.net.SetBlocked(leader, lagging, false)
		c.net.SetBlocked(lagging, leader, false)
		waitFor(t, 10*time.Second, "the cut-off follower to catch up", func() bool {
			v, ok := c.staleGet(lagging, fmt.Sprintf("c%02d", n-1))
			return ok && v == fmt.Sprintf("v%d", round)
		})
		if got := c.store(lagging).Stats().ApplyReads - reads; got != 0 {
			t.Errorf("round %d: the caught-up follower made %d engine reads on its apply path; want 0", round, got)
		}
	}
	for i := range n {
		key := fmt.Sprintf("c%02d", i)
		v, ok, err := c.store(lagging).readValue(ctx, []byte(key))
		if err != nil || !ok || string(v.GetValue()) != "v1" || v.GetVersion() != 2 {
			t.Errorf("follower's %s = %v, %v, %v; want v1, version 2", key, v, ok, err)
		}
	}
}

// TestPrefetchOverlapsTheAppendWrite checks that the read of the record
// an appended entry builds on starts before the write of the round that
// appends it returns, so that it runs alongside the write: the leader's
// write of the entry for a new key waits for a MultiGet of that key (at
// most 3 s; a prefetch started after the write never comes in time).
func TestPrefetchOverlapsTheAppendWrite(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	e := c.disks[c.leaderOf(2)]
	key := []byte("overlapping")
	read := make(chan struct{})
	var once sync.Once
	onMultiGet := func(cf storage.CF, keys [][]byte) {
		for _, k := range keys {
			if cf == storage.Data && bytes.Contains(k, key) {
				once.Do(func() { close(read) })
			}
		}
	}
	// 1: the write of the entry saw the read start; 2: it did not.
	var seen atomic.Int32
	onWrite := func(ops []storage.Op) {
		for _, op := range ops {
			if op.CF != storage.Raft || !bytes.Contains(op.Value, key) {
				continue
			}
			select {
			case <-read:
				seen.CompareAndSwap(0, 1)
			case <-time.After(3 * time.Second):
				seen.CompareAndSwap(0, 2)
			}
			return
		}
	}
	e.onMultiGet.Store(&onMultiGet)
	e.onWrite.Store(&onWrite)
	defer e.onWrite.Store(nil)
	defer e.onMultiGet.Store(nil)
	if err := c.put(ctx, string(key), "v"); err != nil {
		t.Fatal(err)
	}
	// (Without the read, the blocked write costs the leader its
	// leadership, and the put may be answered by another node first.)
	waitFor(t, 10*time.Second, "the leader to write the entry", func() bool { return seen.Load() != 0 })
	if seen.Load() == 2 {
		t.Fatal("the leader's write of the entry returned before any read of the key's record started")
	}
}
