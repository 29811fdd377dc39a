package multiraft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func TestLeaderKillRestart(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	old := c.leaderOf(2)
	c.stop(old)
	if err := c.put(ctx, "b", "2"); err != nil {
		t.Fatalf("put after leader stop: %v", err)
	}
	if l := c.leaderOf(2); l == 0 || l == old {
		t.Fatalf("leader after stop = %d", l)
	}
	c.start(old)
	if err := c.put(ctx, "c", "3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "restarted node to catch up", func() bool {
		v, ok := c.staleGet(old, "c")
		return ok && v == "3"
	})
	if v, ok := c.staleGet(old, "b"); !ok || v != "2" {
		t.Errorf("restarted node b = %q, %v", v, ok)
	}
}

func TestPartitionedLeader(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	old := c.leaderOf(2)
	c.net.Isolate(old, c.ids)
	// The isolated leader cannot commit; the majority elects and serves.
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.store(old).Put(sctx, &kvpb.PutRequest{Key: []byte("lost"), Value: []byte("x")})
	scancel()
	if err == nil {
		t.Fatal("isolated leader acknowledged a write")
	}
	waitFor(t, 10*time.Second, "a new leader in the majority", func() bool {
		l := c.leaderOf(2)
		return l != 0 && l != old
	})
	// The old leader steps down (CheckQuorum) and refuses linearizable reads.
	waitFor(t, 10*time.Second, "old leader to step down", func() bool { return !c.store(old).Replica(2).IsLeader() })
	for _, id := range c.ids {
		if id == old {
			continue
		}
		if _, err := c.store(id).Put(ctx, &kvpb.PutRequest{Key: []byte("b"), Value: []byte("2")}); err == nil {
			break
		}
	}
	c.net.Heal()
	if err := c.put(ctx, "c", "3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "old leader to catch up", func() bool {
		v, ok := c.staleGet(old, "c")
		return ok && v == "3"
	})
	if v, _, err := c.get(ctx, "b"); err != nil || v != "2" {
		t.Errorf("b = %q, %v", v, err)
	}
}

// TestCrashRestartReplaysExactly crashes every node (losing unsynced
// writes) and checks every acknowledged write survives, and the applied
// state matches the log (no double apply).
func TestCrashRestartReplaysExactly(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 4})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	acked := map[string]string{}
	for i := range 60 {
		k := fmt.Sprintf("%c-key%d", 'a'+i%26, i)
		if err := c.put(ctx, k, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		acked[k] = fmt.Sprint(i)
	}
	// A counter incremented by CAS shows exactly-once apply across replay.
	for i := range 10 {
		expect := fmt.Sprint(i)
		err := c.do(ctx, func(ctx context.Context, s *Store) error {
			req := &kvpb.CompareAndSwapRequest{Key: []byte("counter"), ExpectedValue: []byte(expect), NewValue: []byte(fmt.Sprint(i + 1))}
			if i == 0 {
				req = &kvpb.CompareAndSwapRequest{Key: []byte("counter"), ExpectAbsent: true, NewValue: []byte("1")}
			}
			resp, err := s.CompareAndSwap(ctx, req)
			if err == nil && !resp.GetSucceeded() {
				return fmt.Errorf("cas %d failed: current %q", i, resp.GetCurrent().GetValue())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range c.ids {
		c.crash(id)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	for k, v := range acked {
		got, ok, err := c.get(ctx, k)
		if err != nil || !ok || got != v {
			t.Errorf("after crash %s = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
	if got, _, err := c.get(ctx, "counter"); err != nil || got != "10" {
		t.Errorf("counter = %q, %v; want 10", got, err)
		for _, id := range c.ids {
			for _, r := range c.store(id).Replicas() {
				if r.containsKey([]byte("counter")) {
					t.Logf("node %d replica of counter: %v", id, r.Status())
				}
			}
		}
	}
	waitFor(t, 10*time.Second, "all replicas to replay", func() bool {
		for _, id := range c.ids {
			if v, ok := c.staleGet(id, "counter"); !ok || v != "10" {
				return false
			}
		}
		return true
	})
}

// TestNoAckedWriteLost runs concurrent writers under message loss and delay
// while leaders are killed and restarted, then checks every acknowledged
// write is readable with its last acknowledged value.
func TestNoAckedWriteLost(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run")
	}
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c.net.SetLoss(0.05)
	c.net.SetDelay(3 * time.Millisecond)
	var mu sync.Mutex
	acked := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%c-w%d-%d", 'a'+(i*7+w)%26, w, i%20)
				v := fmt.Sprintf("%d-%d", w, i)
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				err := c.put(actx, k, v)
				acancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 3 {
		time.Sleep(150 * time.Millisecond)
		victim := c.leaderOf(uint64(2 + rng.IntN(3)))
		if victim == 0 {
			victim = c.ids[round%3]
		}
		if round%2 == 0 {
			c.crash(victim)
		} else {
			c.stop(victim)
		}
		time.Sleep(150 * time.Millisecond)
		c.start(victim)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	c.net.SetLoss(0)
	c.net.SetDelay(0)
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	for k, v := range acked {
		got, ok, err := c.get(ctx, k)
		if err != nil || !ok || got != v {
			t.Errorf("%s = %q, %v, %v; want %q", k, got, ok, err, v)
		}
	}
	t.Logf("%d keys checked", len(acked))
}

// TestSnapshotCatchUp cuts a follower off until the others truncate their
// logs past it, then checks it catches up by snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
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
		if err := c.put(ctx, fmt.Sprintf("k%04d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "leader log truncation", func() bool {
		st := c.store(c.leaderOf(2)).Replica(2).Status()
		return st.GetFirstIndex() > c.store(lagger).Replica(2).Status().GetLastIndex()+1
	})
	c.net.Heal()
	waitFor(t, 10*time.Second, "lagging follower to catch up", func() bool {
		v, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1))
		return ok && v == fmt.Sprint(n-1)
	})
	if v, ok := c.staleGet(lagger, "before"); !ok || v != "1" {
		t.Errorf("lagger before = %q, %v", v, ok)
	}
	// It keeps replicating normally afterwards.
	if err := c.put(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "post-snapshot replication", func() bool {
		v, ok := c.staleGet(lagger, "after")
		return ok && v == "2"
	})
}

func TestQuiescence(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 8})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	allQuiet := func() bool {
		for _, id := range c.ids {
			for _, r := range c.store(id).Replicas() {
				if !r.quiesced.Load() {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, 10*time.Second, "every replica to quiesce", allQuiet)
	// Ticking 9 ranges for 20 ticks would process 180 ranges; quiesced,
	// none (a few if a loaded machine delays pings and wakes a follower).
	processed := c.store(1).Stats().RangesProcessed
	time.Sleep(20 * c.cfg.TickInterval)
	if d := c.store(1).Stats().RangesProcessed - processed; d > 30 {
		t.Errorf("%d ranges processed while quiesced; want next to none", d)
	}
	// A write wakes the range and succeeds.
	if err := c.put(ctx, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.get(ctx, "a"); err != nil || v != "2" {
		t.Errorf("a = %q, %v", v, err)
	}
	// Killing a leader of quiesced ranges: followers notice and elect.
	waitFor(t, 10*time.Second, "quiesce again", allQuiet)
	old := c.leaderOf(2)
	c.stop(old)
	if err := c.put(ctx, "a", "3"); err != nil {
		t.Fatalf("write after quiesced leader died: %v", err)
	}
}

func TestManyRanges(t *testing.T) {
	// A slower tick: 360 replicas on a small machine under the race
	// detector cannot heartbeat every 10ms.
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 120}, func(c *Config) { c.TickInterval = 50 * time.Millisecond })
	descs, _ := PlanCluster(&kvpb.InitRequest{InitialRanges: 120}, c.ids)
	c.waitLeaders(descs)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, d := range descs[1:] {
		k := string(d.GetStartKey()) + "x"
		if err := c.put(ctx, k, "v"); err != nil {
			t.Fatalf("put to range %d: %v", d.GetRangeId(), err)
		}
	}
	leaders := map[uint64]int{}
	for _, d := range descs {
		leaders[c.leaderOf(d.GetRangeId())]++
	}
	t.Logf("leaders per node: %v; rounds %+v", leaders, c.store(1).Stats())
}

// TestInboxBounded: a replica whose rounds do not run (here: its store is
// stopped) keeps at most MaxInboxMessages raft messages and drops the rest.
func TestInboxBounded(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.MaxInboxMessages = 10 })
	s := c.store(c.ids[0])
	r := s.Replica(MetaRangeID)
	c.stop(c.ids[0])
	for i := range 25 {
		r.deliver(inMsg{msg: &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), Term: proto.Uint64(uint64(i))}})
	}
	r.in.Lock()
	n := len(r.in.msgs)
	r.in.Unlock()
	if n > 10 {
		t.Errorf("%d messages queued; want at most 10", n)
	}
	if d := s.Stats().InboxDrops; d < 15 {
		t.Errorf("%d messages dropped; want at least 15", d)
	}
}
