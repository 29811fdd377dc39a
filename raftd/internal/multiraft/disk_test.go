package multiraft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

// fullEngine is an Engine whose disk can be made full, as stored's is:
// ordinary writes (and ingests) are then refused with stored's disk-full
// error, and with reserveFull reserve writes too. Nothing refused is
// written.
type fullEngine struct {
	storage.Engine
	full, reserveFull atomic.Bool
	refused           atomic.Uint64
	// fillOn, when set, fills the disk at the first write whose values
	// hold it (that write is refused).
	fillOn atomic.Pointer[[]byte]
	// onWrite and onMultiGet, when set, see each write and each MultiGet
	// before it runs.
	onWrite    atomic.Pointer[func(ops []storage.Op)]
	onMultiGet atomic.Pointer[func(cf storage.CF, keys [][]byte)]
}

func (e *fullEngine) MultiGet(ctx context.Context, cf storage.CF, keys [][]byte) ([][]byte, []bool, error) {
	if f := e.onMultiGet.Load(); f != nil {
		(*f)(cf, keys)
	}
	return e.Engine.MultiGet(ctx, cf, keys)
}

func (e *fullEngine) refusal() error {
	e.refused.Add(1)
	return fmt.Errorf("storage: stored write: %w", bus.WithReason(bus.CodeResourceExhausted, storepb.ReasonDiskFull, "stored: disk full on node 0 (test)"))
}

func (e *fullEngine) Write(ctx context.Context, ops []storage.Op, sync bool) error {
	if f := e.onWrite.Load(); f != nil {
		(*f)(ops)
	}
	if b := e.fillOn.Load(); b != nil {
		for _, op := range ops {
			if bytes.Contains(op.Value, *b) {
				e.full.Store(true)
				e.fillOn.Store(nil)
			}
		}
	}
	if e.full.Load() {
		return e.refusal()
	}
	return e.Engine.Write(ctx, ops, sync)
}

func (e *fullEngine) WriteReserve(ctx context.Context, ops []storage.Op, sync bool) error {
	if e.reserveFull.Load() {
		return e.refusal()
	}
	return e.Engine.WriteReserve(ctx, ops, sync)
}

func (e *fullEngine) IngestRange(ctx context.Context, cf storage.CF, start, end []byte) (storage.Ingest, error) {
	if e.full.Load() {
		return nil, e.refusal()
	}
	return e.Engine.IngestRange(ctx, cf, start, end)
}

// fullStatus is stored's status of a full disk on node.
func fullStatus(node uint64, full bool) *storepb.DiskStatus {
	return &storepb.DiskStatus{NodeId: node, Full: full, FreeBytes: 20 << 20, TotalBytes: 1 << 30, FloorBytes: 64 << 20}
}

// isDiskFull reports the kv protocol's refusal of a write on a full disk.
func isDiskFull(err error) bool {
	return errors.Is(err, bus.ErrResourceExhausted) && bus.ReasonOf(err) == kvpb.ReasonDiskFull
}

// on runs f on node id until it succeeds or fails with an error a client
// does not retry (a node that has not heard of the leader yet answers
// Unavailable).
func (c *testCluster) on(ctx context.Context, id uint64, f func(context.Context, *Store) error) error {
	for {
		err := f(ctx, c.store(id))
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(c.cfg.TickInterval)
	}
}

// noFatal fails the test if a store reported a fatal error.
func (c *testCluster) noFatal(t *testing.T) {
	t.Helper()
	for _, id := range c.ids {
		select {
		case err := <-c.store(id).Err():
			t.Fatalf("node %d stopped: %v", id, err)
		default:
		}
	}
}

// A follower whose disk is full holds the appends it cannot write and
// falls behind, answering nothing, while the leader and the other
// follower keep committing; its stale reads serve what it had. Once its
// disk has room it catches up, and nothing acknowledged is missing.
func TestFollowerDiskFull(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	var f uint64
	for _, id := range c.ids {
		if id != leader {
			f = id
			break
		}
	}
	waitFor(t, 5*time.Second, "the follower to apply", func() bool { _, ok := c.staleGet(f, "before"); return ok })
	c.disks[f].full.Store(true)
	const n = 50
	for i := range n {
		if err := c.put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatalf("put %d with a follower's disk full: %v", i, err)
		}
	}
	if c.store(f).Stats().HeldReplicas == 0 || c.disks[f].refused.Load() == 0 {
		t.Fatalf("the full follower holds no write (stats %+v)", c.store(f).Stats())
	}
	if _, ok := c.staleGet(f, fmt.Sprintf("k%02d", n-1)); ok {
		t.Error("the full follower applied the last write")
	}
	if v, ok := c.staleGet(f, "before"); !ok || v != "1" {
		t.Errorf("stale read on the full follower = %q, %v; want 1", v, ok)
	}
	// A linearizable read through the full node is served (forwarded).
	var resp *kvpb.GetResponse
	err := c.on(ctx, f, func(ctx context.Context, s *Store) (err error) {
		resp, err = s.Get(ctx, &kvpb.GetRequest{Key: []byte(fmt.Sprintf("k%02d", n-1))})
		return err
	})
	if err != nil || string(resp.GetValue().GetValue()) != fmt.Sprint(n-1) {
		t.Errorf("linearizable Get through the full follower = %v, %v", resp, err)
	}
	c.noFatal(t)

	c.disks[f].full.Store(false)
	waitFor(t, 10*time.Second, "the follower to catch up", func() bool {
		v, ok := c.staleGet(f, fmt.Sprintf("k%02d", n-1))
		return ok && v == fmt.Sprint(n-1)
	})
	if h := c.store(f).Stats().HeldReplicas; h != 0 {
		t.Errorf("%d replicas still held after the disk has room", h)
	}
	if err := c.put(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for _, id := range c.ids {
			waitFor(t, 5*time.Second, "every write on every node", func() bool {
				v, ok := c.staleGet(id, fmt.Sprintf("k%02d", i))
				return ok && v == fmt.Sprint(i)
			})
		}
	}
	c.noFatal(t)
}

// A leader whose disk is full refuses writes at once with the typed
// error, through any node, and serves linearizable and stale reads; with
// room again it takes writes.
func TestLeaderDiskFull(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	other := c.ids[0]
	if other == leader {
		other = c.ids[1]
	}
	c.disks[leader].full.Store(true)
	c.store(leader).SetDiskStatus(fullStatus(leader, true))
	for _, id := range []uint64{leader, other} {
		err := c.on(ctx, id, func(ctx context.Context, s *Store) error {
			_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			return err
		})
		if !isDiskFull(err) || !strings.Contains(err.Error(), fmt.Sprintf("disk full on node %d (free 20.0 MiB of 1.0 GiB", leader)) {
			t.Errorf("Put through node %d with the leader's disk full = %v; want ResourceExhausted, reason %s, naming the node", id, err, kvpb.ReasonDiskFull)
		}
	}
	if c.disks[leader].refused.Load() != 0 {
		t.Errorf("%d writes reached the full engine; want every proposal refused before", c.disks[leader].refused.Load())
	}
	for _, id := range c.ids {
		var resp *kvpb.GetResponse
		err := c.on(ctx, id, func(ctx context.Context, s *Store) (err error) {
			resp, err = s.Get(ctx, &kvpb.GetRequest{Key: []byte("before")})
			return err
		})
		if err != nil || string(resp.GetValue().GetValue()) != "1" {
			t.Errorf("linearizable Get through node %d = %v, %v", id, resp, err)
		}
	}
	if v, ok := c.staleGet(leader, "before"); !ok || v != "1" {
		t.Errorf("stale read on the full leader = %q, %v", v, ok)
	}
	if _, ok := c.staleGet(leader, "k"); ok {
		t.Error("a refused write is there")
	}
	c.disks[leader].full.Store(false)
	c.store(leader).SetDiskStatus(fullStatus(leader, false))
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatalf("put after the disk has room: %v", err)
	}
	c.noFatal(t)
}

// Without stored's status (its stream broken), a refused write tells the
// store: the leader writes what it proposed as a reserve write, so that
// proposal completes, and refuses the next ones for heldRetry.
func TestDiskFullLearnedFromRefusal(t *testing.T) {
	c := newTestCluster(t, 1, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	s := c.store(1)
	// The disk fills just as the round writes k1's entry.
	c.disks[1].fillOn.Store(&[]byte{'i', 'n', 'f', 'l', 'i', 'g', 'h', 't'})
	if _, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("k1"), Value: []byte("inflight")}); err != nil {
		t.Fatalf("Put in flight when the disk filled: %v; want it written from the reserve", err)
	}
	if c.disks[1].refused.Load() == 0 {
		t.Fatal("the write was not refused first")
	}
	if _, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("k2"), Value: []byte("v")}); !isDiskFull(err) {
		t.Fatalf("Put after a refusal = %v; want disk full", err)
	}
	if s.DiskFull() == "" {
		t.Error("DiskFull() is empty after a refusal")
	}
	// Reads go on, and so does the node when even the reserve is gone
	// (once what was committed before is applied: a read waits for that).
	waitFor(t, 5*time.Second, "k1 applied", func() bool { _, ok := c.staleGet(1, "k1"); return ok })
	c.disks[1].reserveFull.Store(true)
	for _, k := range []string{"before", "k1"} {
		if v, ok, err := c.get(ctx, k); err != nil || !ok || v != map[string]string{"before": "1", "k1": "inflight"}[k] {
			t.Errorf("Get(%s) on a full single node = %q, %v, %v", k, v, ok, err)
		}
	}
	c.disks[1].full.Store(false)
	c.disks[1].reserveFull.Store(false)
	waitFor(t, 10*time.Second, "writes accepted again", func() bool {
		_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("k3"), Value: []byte("v")})
		return err == nil
	})
	c.noFatal(t)
}

// A node restarts on a full disk (its incarnation record is a reserve
// write) and serves reads; its replicas catch up once there is room.
func TestRestartOnFullDisk(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	f := c.ids[0]
	if f == leader {
		f = c.ids[1]
	}
	waitFor(t, 5*time.Second, "the follower to apply", func() bool { _, ok := c.staleGet(f, "before"); return ok })
	c.stop(f)
	c.disks[f].full.Store(true)
	c.start(f)
	if v, ok := c.staleGet(f, "before"); !ok || v != "1" {
		t.Errorf("stale read after a restart on a full disk = %q, %v", v, ok)
	}
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.disks[f].full.Store(false)
	waitFor(t, 10*time.Second, "the restarted follower to catch up", func() bool {
		v, ok := c.staleGet(f, "k")
		return ok && v == "v"
	})
	c.noFatal(t)
}

// A held write is tried again every heldRetry even while stored's last
// status still says full (its stream broken, say): the follower catches up
// once its disk has room, whatever the stale status.
func TestHeldRetriedDespiteStaleStatus(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	f := c.ids[0]
	if f == leader {
		f = c.ids[1]
	}
	c.disks[f].full.Store(true)
	c.store(f).SetDiskStatus(fullStatus(f, true)) // and never again
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the full follower to hold a write", func() bool { return c.store(f).Stats().HeldReplicas > 0 })
	c.disks[f].full.Store(false)
	waitFor(t, 10*time.Second, "the follower to catch up", func() bool {
		v, ok := c.staleGet(f, "k")
		return ok && v == "v"
	})
	c.noFatal(t)
}
