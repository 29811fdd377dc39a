package multiraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// closedGet is a bounded-staleness Get that node id must serve itself
// (no_forward: a replica whose closed timestamp does not cover it answers
// NotLeader).
func (c *testCluster) closedGet(ctx context.Context, id uint64, key string, bound time.Duration) (*kvpb.GetResponse, error) {
	s := c.store(id)
	if s == nil {
		return nil, fmt.Errorf("node %d is down", id)
	}
	return s.Get(ctx, &kvpb.GetRequest{Header: &kvpb.Header{NoForward: true, MaxStalenessNanos: int64(bound)}, Key: []byte(key)})
}

// TestClosedTimestampIdleRangeAndNewLeader: on a range nobody writes to,
// a follower's closed timestamp moves on (the side channel alone: the
// write's own command closed a timestamp below it), and the follower
// serves a bounded-staleness read there. The leader's clock runs 5s
// ahead of the others' (past the clocks' MaxOffset, so the others refuse
// to follow it), so the timestamp read at is ahead of the follower's own
// clock. The follower then takes the leadership: its first write still
// applies above the timestamp it served the read at (it writes above
// every closed timestamp it has heard of, whatever its clock says), and a
// leader read at that timestamp answers what the follower did.
func TestClosedTimestampIdleRangeAndNewLeader(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	rid := rangeOf(c, "k")
	var leader, f uint64
	waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leaderOf(rid); return leader != 0 })
	for _, id := range c.ids {
		if id != leader {
			f = id
			break
		}
	}
	c.nodeSkew[leader].Store(int64(5 * time.Second))
	if err := c.on(ctx, leader, func(ctx context.Context, s *Store) error {
		_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v1")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	v1, err := c.getValue(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	v1ts, _ := hlc.FromProto(v1.GetTimestamp())
	var served *kvpb.GetResponse
	var T hlc.Timestamp
	waitFor(t, 30*time.Second, "the follower to serve a read well past the write", func() bool {
		resp, err := c.closedGet(ctx, f, "k", time.Second)
		if err != nil {
			return false
		}
		at, _ := hlc.FromProto(resp.GetReadAt())
		if at.WallTime < v1ts.WallTime+int64(c.cfg.ClosedTimestampLag) {
			return false
		}
		served, T = resp, at
		return true
	})
	if !served.GetFound() || string(served.GetValue().GetValue()) != "v1" || !proto.Equal(served.GetValue().GetTimestamp(), v1.GetTimestamp()) {
		t.Fatalf("follower read at %v: %v, want v1 at %v", T, served, v1ts)
	}
	if now := c.clocks[f].Now(); !now.Less(T) {
		t.Fatalf("the follower's clock %v is not behind the timestamp %v it read at: the test would prove nothing", now, T)
	}

	c.transferLeader(rid, leader, f)
	waitFor(t, 30*time.Second, "the follower to lead", func() bool { return c.leaderOf(rid) == f })
	var put *kvpb.PutResponse
	if err := c.on(ctx, f, func(ctx context.Context, s *Store) error {
		var err error
		put, err = s.Put(ctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v2")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wts, _ := hlc.FromProto(put.GetTimestamp())
	if !T.Less(wts) {
		t.Fatalf("write applied at %v, at or below the closed timestamp %v a follower read was served at", wts, T)
	}
	at, err := c.getAt(ctx, "k", T)
	if err != nil {
		t.Fatal(err)
	}
	if string(at.GetValue().GetValue()) != "v1" || !proto.Equal(at.GetValue().GetTimestamp(), v1.GetTimestamp()) {
		t.Fatalf("leader read at %v: %v, the follower read %v", T, at.GetValue(), served.GetValue())
	}
}

// TestBoundedStalenessBadInput: a negative or huge bound, or one with
// stale consistency, is refused with InvalidArgument by Get and Scan.
func TestBoundedStalenessBadInput(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s := c.store(c.ids[0])
	for _, tc := range []struct {
		name string
		h    *kvpb.Header
	}{
		{"negative", &kvpb.Header{MaxStalenessNanos: -1}},
		{"huge", &kvpb.Header{MaxStalenessNanos: int64(MaxStaleness + time.Nanosecond)}},
		{"with stale", &kvpb.Header{MaxStalenessNanos: int64(time.Second), ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Get(ctx, &kvpb.GetRequest{Header: tc.h, Key: []byte("k")}); bus.CodeOf(err) != bus.CodeInvalidArgument {
				t.Errorf("Get: %v, want InvalidArgument", err)
			}
			if _, err := s.Scan(ctx, &kvpb.ScanRequest{Header: tc.h, Start: []byte("a")}); bus.CodeOf(err) != bus.CodeInvalidArgument {
				t.Errorf("Scan: %v, want InvalidArgument", err)
			}
		})
	}
}

// TestFollowerScanAcrossRanges: a bounded-staleness scan of two ranges
// served by a follower reads both at one timestamp, and matches a leader
// scan at that timestamp.
func TestFollowerScanAcrossRanges(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, k := range []string{"a1", "a2", "z1", "z2"} {
		if err := c.put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	last := time.Now()
	for _, id := range c.ids {
		var resp *kvpb.ScanResponse
		waitFor(t, 30*time.Second, "a bounded-staleness scan past the writes", func() bool {
			var err error
			resp, err = c.store(id).Scan(ctx, &kvpb.ScanRequest{Header: &kvpb.Header{NoForward: true, MaxStalenessNanos: int64(time.Second)}, Start: []byte("a")})
			at, _ := hlc.FromProto(resp.GetReadAt())
			return err == nil && at.WallTime > last.UnixNano()
		})
		want, err := c.scanPages(ctx, &kvpb.ScanRequest{Start: []byte("a"), ReadAt: resp.GetReadAt()})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetKvs()) != 4 || len(want) != 4 {
			t.Fatalf("node %d: %d entries, leader at %v: %d; want 4", id, len(resp.GetKvs()), resp.GetReadAt(), len(want))
		}
		for i := range want {
			if !proto.Equal(want[i], resp.GetKvs()[i]) {
				t.Fatalf("node %d entry %d: %v, leader: %v", id, i, resp.GetKvs()[i], want[i])
			}
		}
	}
}

// TestFollowerReadsMatchHistoryUnderFaults: writers put unique values
// while readers on every node read with a bounded staleness, and leaders
// are isolated (a paused node, as far as its peers can tell) and crashed,
// on a network that loses and delays messages.
// Every read served at a timestamp T must be the history's value at T:
// what a linearizable leader read at T answers afterwards, and never
// older than an acknowledged write at or before T (a model check against
// the writes' own timestamps).
func TestFollowerReadsMatchHistoryUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run")
	}
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	keys := []string{"a1", "a2", "z1", "z2"}
	for _, k := range keys {
		if err := c.put(ctx, k, "init"); err != nil {
			t.Fatal(err)
		}
	}
	type write struct {
		value string
		ts    hlc.Timestamp
	}
	type read struct {
		node  uint64
		key   string
		at    hlc.Timestamp
		found bool
		value string
		vts   hlc.Timestamp
	}
	var (
		mu     sync.Mutex
		writes = map[string][]write{}
		reads  []read
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := keys[rng.IntN(len(keys))], fmt.Sprintf("w%d-%d", w, n)
				s := c.store(c.ids[rng.IntN(len(c.ids))])
				if s == nil {
					time.Sleep(c.cfg.TickInterval)
					continue
				}
				actx, cancel := context.WithTimeout(ctx, 20*c.cfg.TickInterval)
				resp, err := s.Put(actx, &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)})
				cancel()
				if err != nil {
					continue // outcome unknown or refused: not an acknowledged write
				}
				ts, _ := hlc.FromProto(resp.GetTimestamp())
				mu.Lock()
				writes[k] = append(writes[k], write{v, ts})
				mu.Unlock()
			}
		})
	}
	for i := range 3 {
		wg.Go(func() {
			node := c.ids[i]
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[rng.IntN(len(keys))]
				actx, cancel := context.WithTimeout(ctx, 20*c.cfg.TickInterval)
				resp, err := c.closedGet(actx, node, k, time.Second)
				cancel()
				if err != nil || resp.GetReadAt() == nil {
					time.Sleep(time.Millisecond)
					continue
				}
				at, _ := hlc.FromProto(resp.GetReadAt())
				vts, _ := hlc.FromProto(resp.GetValue().GetTimestamp())
				mu.Lock()
				reads = append(reads, read{node, k, at, resp.GetFound(), string(resp.GetValue().GetValue()), vts})
				mu.Unlock()
			}
		})
	}
	// Lost and late messages leave followers behind the leader's promises.
	c.net.SetLoss(0.03)
	c.net.SetDelay(2 * time.Millisecond)
	c.isolateOrCrashLeaders(6, 5, 400*time.Millisecond, 400*time.Millisecond, 300*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	// Enough traffic to check: on a loaded machine the faults may leave
	// few writes acknowledged; the clients go on (faults healed) until
	// there are.
	traffic := func() (acked, read int) {
		mu.Lock()
		defer mu.Unlock()
		for _, ws := range writes {
			acked += len(ws)
		}
		return acked, len(reads)
	}
	waitFor(t, 60*time.Second, "50 acknowledged writes and 100 reads to check", func() bool {
		acked, read := traffic()
		return acked >= 50 && read >= 100
	})
	close(stop)
	wg.Wait()

	acked, _ := traffic()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d acknowledged writes, %d bounded-staleness reads", acked, len(reads))
	for _, r := range reads {
		if r.at.Less(r.vts) {
			t.Fatalf("node %d read %s at %v: a version of %v", r.node, r.key, r.at, r.vts)
		}
		for _, w := range writes[r.key] {
			if r.vts.Less(w.ts) && !r.at.Less(w.ts) {
				t.Fatalf("node %d read %s at %v: %q of %v, missing the acknowledged write %q of %v", r.node, r.key, r.at, r.value, r.vts, w.value, w.ts)
			}
			if w.ts == r.vts && w.value != r.value {
				t.Fatalf("node %d read %s at %v: %q, but %v wrote %q", r.node, r.key, r.at, r.value, w.ts, w.value)
			}
		}
	}
	// Against the history itself: a linearizable read at each read's
	// timestamp (a sample: each takes a leader's read barrier).
	step := max(1, len(reads)/300)
	for i := 0; i < len(reads); i += step {
		r := reads[i]
		at, err := c.getAt(ctx, r.key, r.at)
		if err != nil {
			t.Fatal(err)
		}
		vts, _ := hlc.FromProto(at.GetValue().GetTimestamp())
		if at.GetFound() != r.found || string(at.GetValue().GetValue()) != r.value || vts != r.vts {
			t.Fatalf("node %d read %s at %v: %q of %v; a leader read there: %q of %v", r.node, r.key, r.at, r.value, r.vts, at.GetValue().GetValue(), vts)
		}
	}
}

// TestClosedStatePromotion: a side-channel promise counts once the
// replica's published applied entry is at or past its index in its term,
// never before, and never once the applied term moved past it.
func TestClosedStatePromotion(t *testing.T) {
	ts := func(w int64) hlc.Timestamp { return hlc.Timestamp{WallTime: w} }
	type step struct {
		publish     bool
		index, term uint64
		ts          hlc.Timestamp // log closed (publish) or promised (note)
		want        hlc.Timestamp
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"log only", []step{{publish: true, index: 5, term: 1, ts: ts(10), want: ts(10)}}},
		{"promise waits for its index", []step{
			{publish: true, index: 5, term: 2, ts: ts(10), want: ts(10)},
			{index: 7, term: 2, ts: ts(50), want: ts(10)},
			{publish: true, index: 6, term: 2, ts: ts(10), want: ts(10)},
			{publish: true, index: 7, term: 2, ts: ts(10), want: ts(50)},
		}},
		{"promise of an older term never counts", []step{
			{publish: true, index: 5, term: 1, ts: ts(10), want: ts(10)},
			{index: 6, term: 1, ts: ts(50), want: ts(10)},
			{publish: true, index: 8, term: 2, ts: ts(20), want: ts(20)},
			{publish: true, index: 9, term: 2, ts: ts(20), want: ts(20)},
		}},
		{"entry of a later term at the index does not count", []step{
			{publish: true, index: 9, term: 3, ts: ts(10), want: ts(10)},
			{index: 9, term: 2, ts: ts(50), want: ts(10)},
		}},
		{"promise reached at once", []step{
			{publish: true, index: 9, term: 3, ts: ts(10), want: ts(10)},
			{index: 9, term: 3, ts: ts(50), want: ts(50)},
			{index: 9, term: 3, ts: ts(40), want: ts(50)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c closedState
			for i, s := range tc.steps {
				if s.publish {
					c.publish(s.index, s.term, s.ts)
				} else {
					c.note(sidePromise{ts: s.ts, index: s.index, term: s.term})
				}
				if got := c.get(); got != s.want {
					t.Fatalf("step %d: closed %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

// TestWatchCheckpointsFollowClosedTimestamps: a watch of a range nobody
// writes to gets checkpoints that move on past its last write, with no
// command applied meanwhile. A watch is served by the range's leader and
// ends when it loses leadership (a client watches again at the new one):
// an election under load (the test cluster's election timeout is 100ms)
// ends it, and the new term's first entry is a command applied; the
// test then watches again at the new leader.
func TestWatchCheckpointsFollowClosedTimestamps(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	v, err := c.getValue(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	vts, _ := hlc.FromProto(v.GetTimestamp())
	rid := rangeOf(c, "k")
	want := hlc.Timestamp{WallTime: vts.WallTime + 3*int64(c.cfg.ClosedTimestampLag)}
	// watch watches at the leader until a checkpoint passes want; it
	// returns false when the leadership moved meanwhile.
	watch := func() bool {
		var leader uint64
		waitFor(t, 30*time.Second, "a leader", func() bool { leader = c.leaderOf(rid); return leader != 0 })
		r := c.store(leader).Replica(rid)
		term, applied := r.Status().GetTerm(), r.applied.Load()
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		var (
			mu       sync.Mutex
			resolved hlc.Timestamp
		)
		done := make(chan error, 1)
		go func() {
			done <- c.store(leader).Watch(wctx, &kvpb.WatchRequest{Start: []byte("a"), End: []byte("z"), CheckpointMillis: 20}, func(resp *kvpb.WatchResponse) error {
				if ts, err := hlc.FromProto(resp.GetResolved()); err == nil && resp.GetResolved() != nil {
					mu.Lock()
					resolved = ts
					mu.Unlock()
				}
				return nil
			})
		}()
		var ended error
		passed := false
		waitFor(t, 30*time.Second, "a checkpoint well past the last write", func() bool {
			select {
			case ended = <-done:
				return true
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			passed = want.Less(resolved)
			return passed
		})
		if !passed {
			if errors.Is(ended, bus.ErrNotLeader) {
				t.Logf("watch at node %d ended: %v: watching again", leader, ended)
				return false
			}
			t.Fatalf("watch at node %d ended before a checkpoint past %v: %v", leader, want, ended)
		}
		wcancel()
		if err := <-done; err != nil && ctx.Err() == nil && wctx.Err() == nil {
			t.Fatal(err)
		}
		if r.Status().GetTerm() != term || !r.IsLeader() {
			t.Logf("node %d lost the leadership during the watch: watching again", leader)
			return false
		}
		if now := r.applied.Load(); now != applied {
			t.Errorf("applied index moved from %d to %d in term %d: the checkpoints took commands", applied, now, term)
		}
		return true
	}
	for attempt := 1; !watch(); attempt++ {
		if attempt == 10 {
			t.Fatal("the leadership moved during each of 10 watches")
		}
	}
}
