package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// watchLog records what one watcher was delivered.
type watchLog struct {
	mu       sync.Mutex
	events   []kvclient.WatchEvent
	resolved hlc.Timestamp
}

func (w *watchLog) add(r kvclient.WatchResponse) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, r.Events...)
	if !r.Resolved.IsZero() {
		w.resolved = r.Resolved
	}
	return nil
}

func (w *watchLog) resolvedAt() hlc.Timestamp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.resolved
}

// trimAfterResolved drops the events after the last checkpoint: a watch
// resumed from it delivers them again.
func (w *watchLog) trimAfterResolved() {
	w.mu.Lock()
	defer w.mu.Unlock()
	kept := w.events[:0]
	for _, ev := range w.events {
		if !w.resolved.Less(ev.Timestamp) {
			kept = append(kept, ev)
		}
	}
	w.events = kept
}

type ackedPut struct {
	key, value string
	ts         hlc.Timestamp
}

// checkWatch is the watch model: every acknowledged put in [start, end)
// appears exactly once, with its value; each key's changes come in
// strictly increasing timestamp order; each key has as many tombstones
// as acknowledged deletes that removed it.
func checkWatch(t *testing.T, name string, events []kvclient.WatchEvent, puts []ackedPut, deletes map[string]int, start, end string) {
	t.Helper()
	last := map[string]hlc.Timestamp{}
	got := map[string]int{} // key@ts -> deliveries
	tombs := map[string]int{}
	for _, ev := range events {
		k := string(ev.Key)
		if k < start || k >= end {
			t.Errorf("%s: event of %q outside [%q, %q)", name, k, start, end)
		}
		if l, ok := last[k]; ok && !l.Less(ev.Timestamp) {
			t.Errorf("%s: %q changed at %v after a change at %v", name, k, ev.Timestamp, l)
		}
		last[k] = ev.Timestamp
		got[fmt.Sprintf("%s@%v", k, ev.Timestamp)]++
		if ev.Deleted {
			tombs[k]++
		}
	}
	byID := map[string]kvclient.WatchEvent{}
	for _, ev := range events {
		byID[fmt.Sprintf("%s@%v", ev.Key, ev.Timestamp)] = ev
	}
	for _, p := range puts {
		if p.key < start || p.key >= end {
			continue
		}
		id := fmt.Sprintf("%s@%v", p.key, p.ts)
		if got[id] != 1 {
			t.Errorf("%s: acknowledged put %s delivered %d times", name, id, got[id])
			continue
		}
		if ev := byID[id]; ev.Deleted || string(ev.Value.Value) != p.value {
			t.Errorf("%s: put %s delivered as %+v; want value %q", name, id, ev, p.value)
		}
	}
	for k, n := range deletes {
		if k >= start && k < end && tombs[k] != n {
			t.Errorf("%s: %q deleted %d times, %d tombstones delivered", name, k, n, tombs[k])
		}
	}
}

// TestWatchAgainstRaftd writes and deletes keys of two ranges while one
// splits and the leader of one stops, under three watchers: one from before the first
// write, one live from the start, and one that disconnects and resumes
// from its last checkpoint; each must have been delivered every
// acknowledged change once, in order per key, with its value.
func TestWatchAgainstRaftd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raftd cluster")
	}
	rc := StartRaftd(t, 3)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *kvclient.Client {
		c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, AttemptTimeout: time.Second,
			Logger: daemontest.Logger(t, nil)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	c := newClient()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m")}}); err != nil {
		t.Fatal(err)
	}
	origin, err := c.Put(ctx, []byte("0origin"), []byte("x")) // outside the watched span
	if err != nil {
		t.Fatal(err)
	}
	const start, end = "a", "z"
	var (
		wg                 sync.WaitGroup
		replay, live, flap watchLog
	)
	wctx, wcancel := context.WithCancel(ctx)
	defer func() { wcancel(); wg.Wait() }()
	watch := func(l *watchLog, o kvclient.WatchOptions, cctx context.Context) (done chan struct{}) {
		wg.Add(1)
		done = make(chan struct{})
		go func() {
			defer wg.Done()
			defer close(done)
			err := newClient().Watch(cctx, []byte(start), []byte(end), o, l.add)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Watch: %v", err)
			}
		}()
		return done
	}
	watch(&replay, kvclient.WatchOptions{From: origin, PrevValue: true, CheckpointInterval: 50 * time.Millisecond}, wctx)
	watch(&live, kvclient.WatchOptions{CheckpointInterval: 50 * time.Millisecond}, wctx)
	fctx, fcancel := context.WithCancel(wctx)
	flapDone := watch(&flap, kvclient.WatchOptions{From: origin, CheckpointInterval: 50 * time.Millisecond}, fctx)
	// The live watcher opens before the first write: wait for its first
	// checkpoint.
	deadline := time.Now().Add(20 * time.Second)
	for live.resolvedAt().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint from the live watcher")
		}
		time.Sleep(10 * time.Millisecond)
	}

	var puts []ackedPut
	deletes := map[string]int{}
	var lastTS hlc.Timestamp
	write := func(round, i int) {
		k := fmt.Sprintf("%c%d", "bcnp"[i%4], i%5)
		if i%7 == 3 {
			ok, err := c.Delete(ctx, []byte(k))
			if err != nil {
				t.Fatalf("Delete(%s): %v", k, err)
			}
			if ok {
				deletes[k]++
			}
			return
		}
		v := fmt.Sprintf("%s-%d-%d", k, round, i)
		ts, err := c.Put(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
		puts = append(puts, ackedPut{k, v, ts})
		lastTS = ts
	}
	for i := range 40 {
		write(0, i)
	}
	// The flapping watcher goes away and comes back from its last
	// checkpoint.
	fcancel()
	<-flapDone // no event of the first watch may come after the trim
	flap.trimAfterResolved()
	from := flap.resolvedAt()
	if from.IsZero() {
		from = origin
	}
	for i := range 20 {
		write(1, i)
	}
	watch(&flap, kvclient.WatchOptions{From: from, CheckpointInterval: 50 * time.Millisecond}, wctx)
	// Split the first user range under the watches: each watcher follows
	// both sides from its last checkpoint.
	if _, _, err := c.AdminSplit(ctx, []byte("c")); err != nil {
		t.Fatalf("AdminSplit(c): %v", err)
	}
	for i := range 20 {
		write(4, i)
	}
	// Stop the leader of the first user range; its watch streams move to
	// the new leader.
	rs, err := c.Descriptors(ctx, []byte("b"), []byte("c"))
	if err != nil || len(rs.GetDescriptors()) == 0 {
		t.Fatalf("Descriptors = %v, %v", rs, err)
	}
	leaderAddr := rs.GetLeaders()[rs.GetDescriptors()[0].GetRangeId()]
	for i, a := range rc.Addrs() {
		if a == leaderAddr {
			rc.Stop(t, i)
		}
	}
	for i := range 40 {
		write(2, i)
	}
	// A last write in each range, then every watcher must reach it.
	write(3, 0)
	write(3, 2)
	for _, l := range []*watchLog{&replay, &live, &flap} {
		deadline := time.Now().Add(30 * time.Second)
		for l.resolvedAt().Less(lastTS) {
			if time.Now().After(deadline) {
				t.Fatalf("a watcher's resolved timestamp %v stays below the last write %v", l.resolvedAt(), lastTS)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wcancel()
	wg.Wait()
	checkWatch(t, "replay", replay.events, puts, deletes, start, end)
	checkWatch(t, "live", live.events, puts, deletes, start, end)
	checkWatch(t, "resumed", flap.events, puts, deletes, start, end)
	// The replaying watcher asked for previous values: each put over a
	// put carries the value before.
	prev := map[string]string{}
	for _, ev := range replay.events {
		k := string(ev.Key)
		want, had := prev[k]
		switch {
		case had && (ev.PrevValue == nil || string(ev.PrevValue.Value) != want):
			t.Errorf("replay: %q at %v has previous value %+v; want %q", k, ev.Timestamp, ev.PrevValue, want)
		case !had && ev.PrevValue != nil:
			t.Errorf("replay: %q at %v has previous value %q; want none", k, ev.Timestamp, ev.PrevValue.Value)
		}
		if ev.Deleted {
			delete(prev, k)
		} else {
			prev[k] = string(ev.Value.Value)
		}
	}
	if len(replay.events) < len(puts) || !bytes.Equal(replay.events[0].Key, replay.events[0].Key) {
		t.Errorf("replay delivered %d events for %d puts", len(replay.events), len(puts))
	}
	t.Logf("%d puts, %d deletes; events: replay %d, live %d, resumed %d", len(puts), len(deletes), len(replay.events), len(live.events), len(flap.events))
}

// TestWatchUnderReplicaMovesAndReconnects writes and deletes keys of two
// ranges on four raftds while, in turn, a range's leadership moves, its
// leader's replica moves to the fourth node (the leader removed from the
// range), a range splits and a leader stops, under four watchers: one of
// the whole span and one of a span inside one range (the client's watch
// of one range), both live from before the first write, and two that
// keep going away and coming back from their last checkpoint every few
// writes (one of each span). Each must have been delivered every
// acknowledged change of its span once, in order per key, with the
// value written.
func TestWatchUnderReplicaMovesAndReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node raftd cluster")
	}
	rc := StartRaftd(t, 4)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *kvclient.Client {
		c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, Logger: daemontest.Logger(t, nil)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	c := newClient()
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	if _, err := c.Init(ctx, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m")}, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	origin, err := c.Put(ctx, []byte("0origin"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end string }
	whole, inner := span{"a", "z"}, span{"n", "p"} // inner: inside the range [m, ∞)
	var wg sync.WaitGroup
	wctx, wcancel := context.WithCancel(ctx)
	defer func() { wcancel(); wg.Wait() }()
	opts := func(from hlc.Timestamp) kvclient.WatchOptions {
		return kvclient.WatchOptions{From: from, CheckpointInterval: 50 * time.Millisecond}
	}
	// watch runs a watcher until cctx ends; the channel returned closes
	// when it has.
	watch := func(l *watchLog, sp span, o kvclient.WatchOptions, cctx context.Context) <-chan struct{} {
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			err := newClient().Watch(cctx, []byte(sp.start), []byte(sp.end), o, l.add)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Watch [%s, %s): %v", sp.start, sp.end, err)
			}
		})
		return done
	}
	var liveWhole, liveInner watchLog
	watch(&liveWhole, whole, opts(hlc.Timestamp{}), wctx)
	watch(&liveInner, inner, opts(hlc.Timestamp{}), wctx)
	for _, l := range []*watchLog{&liveWhole, &liveInner} {
		deadline := time.Now().Add(20 * time.Second)
		for l.resolvedAt().IsZero() {
			if time.Now().After(deadline) {
				t.Fatal("no checkpoint from a live watcher")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The reconnecting watchers: each round watches from the last
	// checkpoint until told to stop, then drops what came after it.
	type flapper struct {
		sp     span
		log    watchLog
		cancel context.CancelFunc
		done   <-chan struct{}
		opens  int
	}
	flappers := []*flapper{{sp: whole}, {sp: inner}}
	reopen := func(f *flapper) {
		if f.cancel != nil {
			f.cancel()
			<-f.done
			f.log.trimAfterResolved()
		}
		from := f.log.resolvedAt()
		if from.IsZero() {
			from = origin
		}
		fctx, fcancel := context.WithCancel(wctx)
		f.cancel = fcancel
		f.opens++
		f.done = watch(&f.log, f.sp, opts(from), fctx)
	}
	for _, f := range flappers {
		reopen(f)
	}

	var puts []ackedPut
	deletes := map[string]int{}
	var lastTS hlc.Timestamp
	step := 0
	write := func(n int) {
		for range n {
			step++
			k := fmt.Sprintf("%c%d", "bcno"[step%4], step%5)
			if step%7 == 3 {
				ok, err := c.Delete(ctx, []byte(k))
				if err != nil {
					t.Fatalf("Delete(%s): %v", k, err)
				}
				if ok {
					deletes[k]++
				}
				continue
			}
			v := fmt.Sprintf("%s-%d", k, step)
			ts, err := c.Put(ctx, []byte(k), []byte(v))
			if err != nil {
				t.Fatalf("Put(%s): %v", k, err)
			}
			puts = append(puts, ackedPut{k, v, ts})
			lastTS = ts
			if step%9 == 0 {
				reopen(flappers[(step/9)%2])
			}
		}
	}
	nodeOf := map[uint64]int{}
	for i, rt := range rc.rts {
		nodeOf[rt.NodeID] = i
	}
	stopped := -1
	// rangeOf returns the descriptor of the range holding key and the
	// index of its leader's raftd.
	rangeOf := func(key string) (*kvpb.RangeDescriptor, int) {
		t.Helper()
		for {
			rs, err := c.Descriptors(ctx, []byte(key), nil)
			if err != nil || len(rs.GetDescriptors()) == 0 {
				t.Fatalf("Descriptors(%s) = %v, %v", key, rs, err)
			}
			d := rs.GetDescriptors()[0]
			addr := rs.GetLeaders()[d.GetRangeId()]
			for i, a := range rc.Addrs() {
				if a == addr && i != stopped {
					return d, i
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no leader of the range of %q", key)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	write(30)
	// Leadership moves: the range [m, ∞)'s to another voter.
	d, leader := rangeOf("n")
	for _, r := range d.GetReplicas() {
		if nodeOf[r.GetNodeId()] != leader {
			if err := c.TransferLeader(ctx, d.GetRangeId(), r.GetNodeId()); err != nil {
				t.Fatalf("TransferLeader: %v", err)
			}
			break
		}
	}
	write(30)
	// The leader's replica moves to the node without one: the leader
	// leaves the range.
	for _, key := range []string{"n", "b"} {
		d, leader = rangeOf(key)
		spare := uint64(0)
		for id := range nodeOf {
			if !slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == id }) {
				spare = id
			}
		}
		if _, err := c.ChangeReplicas(ctx, d.GetRangeId(), kvclient.ReplicaChange{Add: []uint64{spare}, Remove: []uint64{rc.rts[leader].NodeID}}); err != nil {
			t.Fatalf("move range %d's replica from node %d (its leader) to %d: %v", d.GetRangeId(), rc.rts[leader].NodeID, spare, err)
		}
		write(30)
	}
	// A split under the watches, of the range of the inner span too.
	for _, key := range []string{"c", "o"} {
		if _, _, err := c.AdminSplit(ctx, []byte(key)); err != nil {
			t.Fatalf("AdminSplit(%s): %v", key, err)
		}
		write(20)
	}
	// The leader of the range of "n" stops.
	_, leader = rangeOf("n")
	rc.Stop(t, leader)
	stopped = leader
	write(40)
	for _, l := range []*watchLog{&liveWhole, &liveInner, &flappers[0].log, &flappers[1].log} {
		deadline := time.Now().Add(40 * time.Second)
		for l.resolvedAt().Less(lastTS) {
			if time.Now().After(deadline) {
				t.Fatalf("a watcher's resolved timestamp %v stays below the last write %v", l.resolvedAt(), lastTS)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wcancel()
	wg.Wait()
	checkWatch(t, "live, whole span", liveWhole.events, puts, deletes, whole.start, whole.end)
	checkWatch(t, "live, one range", liveInner.events, puts, deletes, inner.start, inner.end)
	checkWatch(t, "reconnecting, whole span", flappers[0].log.events, puts, deletes, whole.start, whole.end)
	checkWatch(t, "reconnecting, one range", flappers[1].log.events, puts, deletes, inner.start, inner.end)
	t.Logf("%d puts, %d keys deleted; events: live %d and %d, reconnecting %d (%d opens) and %d (%d opens)", len(puts), len(deletes),
		len(liveWhole.events), len(liveInner.events), len(flappers[0].log.events), flappers[0].opens, len(flappers[1].log.events), flappers[1].opens)
}
