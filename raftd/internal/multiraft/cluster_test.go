package multiraft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCluster is an in-process cluster over a LocalNetwork with in-memory
// engines that survive restarts (and can crash).
type testCluster struct {
	t       testing.TB
	cfg     Config
	net     *LocalNetwork
	ids     []uint64
	mu      sync.Mutex
	engines map[uint64]*storage.Mem
	stores  map[uint64]*Store
	clocks  map[uint64]*hlc.Clock
	log     *slog.Logger
	// skew is added to every node's physical clock (nanoseconds): tests
	// move the cluster's time forward with it; nodeSkew to one node's.
	skew     atomic.Int64
	nodeSkew map[uint64]*atomic.Int64

	// disks wrap the engines: each can be made to refuse writes as a full
	// disk does (disk_test.go).
	disks map[uint64]*fullEngine

	// refused records, for a failed linearizability check, the puts of
	// recordHistory refused as not applied (value -> what happened) and
	// the values its gets returned.
	refused struct {
		sync.Mutex
		puts map[string]string
		read map[string]bool
	}
}

func newTestCluster(t testing.TB, n int, req *kvpb.InitRequest, opts ...func(*Config)) *testCluster {
	t.Helper()
	cfg := testConfig()
	for _, o := range opts {
		o(&cfg)
	}
	c := &testCluster{t: t, cfg: cfg, net: NewLocalNetwork(1), engines: map[uint64]*storage.Mem{}, disks: map[uint64]*fullEngine{},
		stores: map[uint64]*Store{}, clocks: map[uint64]*hlc.Clock{}, nodeSkew: map[uint64]*atomic.Int64{}, log: daemontest.Logger(t, slog.LevelWarn)}
	for i := 1; i <= n; i++ {
		id := uint64(i)
		c.ids = append(c.ids, id)
		c.engines[id] = storage.NewMem()
		c.disks[id] = &fullEngine{Engine: c.engines[id]}
		own := &atomic.Int64{}
		c.nodeSkew[id] = own
		c.clocks[id] = hlc.NewClock(hlc.Config{MaxOffset: 20 * time.Millisecond, Physical: func() int64 { return time.Now().UnixNano() + c.skew.Load() + own.Load() }})
		c.start(id)
	}
	t.Cleanup(func() {
		for _, id := range c.ids {
			c.stop(id)
		}
		c.net.Close()
	})
	if req != nil {
		c.bootstrap(req)
	}
	return c
}

func (c *testCluster) addr(id uint64) string { return fmt.Sprintf("node-%d", id) }

func (c *testCluster) start(id uint64) {
	c.t.Helper()
	s, err := NewStore(c.cfg, Deps{NodeID: id, Addr: c.addr(id), Engine: c.disks[id], Transport: c.net.Transport(id),
		Forwarder: c.net.Forwarder(id), Clock: c.clocks[id], Logger: c.log.With(slog.Uint64("node", id))})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, o := range c.ids {
		s.SetNodeAddr(o, c.addr(o))
	}
	if err := s.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.stores[id] = s
	c.mu.Unlock()
	c.net.Register(id, s)
}

func (c *testCluster) stop(id uint64) {
	c.mu.Lock()
	s := c.stores[id]
	delete(c.stores, id)
	c.mu.Unlock()
	if s == nil {
		return
	}
	c.net.Unregister(id)
	s.Stop()
}

// crash stops a node and drops every unsynced write of its engine.
func (c *testCluster) crash(id uint64) {
	c.stop(id)
	c.engines[id].Crash()
}

func (c *testCluster) store(id uint64) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stores[id]
}

func (c *testCluster) bootstrap(req *kvpb.InitRequest) []*kvpb.RangeDescriptor {
	c.t.Helper()
	descs, err := PlanCluster(req, c.ids)
	if err != nil {
		c.t.Fatal(err)
	}
	nodes := map[uint64]string{}
	for _, id := range c.ids {
		nodes[id] = c.addr(id)
	}
	for _, id := range c.ids {
		if _, err := c.store(id).Bootstrap(context.Background(), &raftmsgpb.BootstrapRequest{Descriptors: descs, Nodes: nodes}); err != nil {
			c.t.Fatal(err)
		}
	}
	return descs
}

// retryable reports errors a client retries: no leader yet, leader moved,
// peer unreachable, a timed-out attempt.
func retryable(err error) bool {
	return errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, bus.ErrDeadlineExceeded) || errors.Is(err, ErrStopped)
}

// do runs f against live nodes in turn until it succeeds or fails for good.
func (c *testCluster) do(ctx context.Context, f func(ctx context.Context, s *Store) error) error {
	return c.doOn(ctx, c.ids, f)
}

// doOn is do on the nodes ids only.
func (c *testCluster) doOn(ctx context.Context, ids []uint64, f func(ctx context.Context, s *Store) error) error {
	return c.doWithin(ctx, ids, 20*c.cfg.TickInterval, f)
}

// doWithin is doOn with each attempt bounded by attempt.
func (c *testCluster) doWithin(ctx context.Context, ids []uint64, attempt time.Duration, f func(ctx context.Context, s *Store) error) error {
	var err error
	for i := 0; ; i++ {
		id := ids[i%len(ids)]
		s := c.store(id)
		if s == nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		err = f(actx, s)
		cancel()
		if err == nil || !retryable(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error %v)", ctx.Err(), err)
		}
		time.Sleep(c.cfg.TickInterval)
	}
}

func (c *testCluster) put(ctx context.Context, key, value string) error {
	return c.do(ctx, func(ctx context.Context, s *Store) error {
		_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)})
		return err
	})
}

func (c *testCluster) get(ctx context.Context, key string) (string, bool, error) {
	var resp *kvpb.GetResponse
	err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.Get(ctx, &kvpb.GetRequest{Key: []byte(key)})
		return err
	})
	if err != nil {
		return "", false, err
	}
	return string(resp.GetValue().GetValue()), resp.GetFound(), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, d, what, cond)
}

// leaderOf returns the node whose replica of rangeID leads, or 0.
func (c *testCluster) leaderOf(rangeID uint64) uint64 {
	for _, id := range c.ids {
		if s := c.store(id); s != nil {
			if r := s.Replica(rangeID); r != nil && r.IsLeader() {
				return id
			}
		}
	}
	return 0
}

func (c *testCluster) waitLeaders(descs []*kvpb.RangeDescriptor) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "every range to elect a leader", func() bool {
		for _, d := range descs {
			if c.leaderOf(d.GetRangeId()) == 0 {
				return false
			}
		}
		return true
	})
}

// staleGet reads key from node's own applied state.
func (c *testCluster) staleGet(id uint64, key string) (string, bool) {
	s := c.store(id)
	if s == nil {
		return "", false
	}
	v, ok, err := s.readValue(context.Background(), []byte(key))
	if err != nil {
		c.t.Fatal(err)
	}
	return string(v.GetValue()), ok
}
