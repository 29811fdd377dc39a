package clockd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one in-process clockd on its own runtime.
type node struct {
	srv  *clockd.Server
	rt   *daemon.Runtime
	addr string
}

// startNode starts a clockd with the given physical clock and bound store.
func startNode(t *testing.T, cfg clockd.Config, bound clockd.BoundStore, physical func() int64) *node {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, clockd.Name, daemontest.CA(t), daemontest.Common(t))
	srv, err := clockd.New(cfg, clockd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin,
		Bound: bound, NodeID: rt.NodeID, Physical: physical})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return &node{srv: srv, rt: rt, addr: rt.Bus.Addr().String()}
}

func waitReady(t *testing.T, s *clockd.Server) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("clockd never served")
	}
}

func skewed(skew time.Duration) func() int64 {
	return func() int64 { return time.Now().UnixNano() + int64(skew) }
}

func TestServeStatusAndReady(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, clockd.Name, daemontest.CA(t), daemontest.Common(t))
	srv, err := clockd.New(baseCfg(), clockd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, Bound: &memoryBound{}})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{Runtime: rt, Service: srv, ReadyCheck: clockd.ReadyCheck,
		Serving: func(ctx context.Context, client *daemon.Runtime) {
			cs, err := clockclient.New(client.Bus, rt.Bus.Addr().String()).Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !cs.GetServing() || !cs.GetHealth().GetHealthy() || cs.GetMaxOffsetNs() != int64(500*time.Millisecond) ||
				cs.GetPersistedBoundNs() <= cs.GetNow().GetWallTime() {
				t.Errorf("clock Status = %v", cs)
			}
		}})
}

func TestNowAndUpdateOverBus(t *testing.T) {
	cfg := baseCfg()
	n := startNode(t, cfg, &memoryBound{}, nil)
	waitReady(t, n.srv)
	client := daemontest.NewRuntime(t, "client")
	c := clockclient.New(client.Bus, n.addr)
	ctx := t.Context()

	var last hlc.Timestamp
	for i := 0; i < 50; i++ {
		ts, err := c.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !last.Less(ts) {
			t.Fatalf("Now %v not after %v", ts, last)
		}
		last = ts
	}
	// A timestamp slightly ahead (within MaxOffset) is folded in.
	ahead := hlc.Timestamp{WallTime: time.Now().UnixNano() + int64(100*time.Millisecond), Logical: 7}
	got, err := c.Update(ctx, ahead)
	if err != nil {
		t.Fatal(err)
	}
	if !ahead.Less(got) || !last.Less(got) {
		t.Fatalf("Update(%v) = %v, not after input and %v", ahead, got, last)
	}
	after, err := c.Now(ctx)
	if err != nil || !got.Less(after) {
		t.Fatalf("Now after Update = %v, %v; want after %v", after, err, got)
	}
	// Too far ahead: refused, clock unchanged.
	far := hlc.Timestamp{WallTime: time.Now().UnixNano() + int64(5*time.Second)}
	if _, err := c.Update(ctx, far); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Fatalf("Update(far ahead) = %v; want InvalidArgument", err)
	}
	if now, _ := c.Now(ctx); now.WallTime >= far.WallTime {
		t.Fatalf("refused Update moved the clock to %v", now)
	}
	// Malformed input over the raw protocol.
	for name, req := range map[string]*clockpb.UpdateRequest{
		"missing":          {},
		"negative wall":    {Observed: &hlcpb.Timestamp{WallTime: -1}},
		"negative logical": {Observed: &hlcpb.Timestamp{WallTime: 5, Logical: -3}},
	} {
		var resp clockpb.UpdateResponse
		err := client.Bus.Call(ctx, n.addr, wire.ProtoClock, clockclient.MethodUpdate, req, &resp)
		if !errors.Is(err, bus.ErrInvalidArgument) {
			t.Errorf("%s: Update = %v; want InvalidArgument", name, err)
		}
	}
}

func TestRestartWaitsOutPersistedBound(t *testing.T) {
	var phys atomic.Int64
	phys.Store(int64(1_700_000_000) * 1e9)
	physical := phys.Load
	bound := &memoryBound{}
	cfg := baseCfg()
	cfg.BoundWindow = 200 * time.Millisecond

	first := startNode(t, cfg, bound, physical)
	waitReady(t, first.srv)
	var last hlc.Timestamp
	for i := 0; i < 100; i++ {
		phys.Add(int64(time.Millisecond))
		ts, err := first.srv.Now(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		last = ts
	}
	// An Update pushes the clock ahead of physical time; the bound must
	// cover it too.
	upd, err := first.srv.Update(t.Context(), hlc.Timestamp{WallTime: phys.Load() + int64(400*time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	last = upd
	saved, _ := bound.LoadBound(t.Context())
	if saved <= last.WallTime {
		t.Fatalf("persisted bound %d not above handed-out %v", saved, last)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := first.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The machine's clock is set back ten seconds, then the node restarts.
	phys.Add(-int64(10 * time.Second))
	second := startNode(t, cfg, bound, physical)
	if _, err := second.srv.Now(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Now before the bound passed = %v; want Unavailable", err)
	}
	if ok, failed := second.rt.Admin.Ready(ctx); ok || failed[clockd.ReadyCheck] == nil {
		t.Fatalf("ready while waiting out the bound: %v", failed)
	}
	select {
	case <-second.srv.Ready():
		t.Fatal("served before physical time passed the bound")
	default:
	}
	// Physical time catches up past the bound.
	phys.Store(saved + 1)
	waitReady(t, second.srv)
	ts, err := second.srv.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Less(ts) || ts.WallTime <= saved {
		t.Fatalf("after restart Now = %v; want after %v and past bound %d", ts, last, saved)
	}
	eventually.True(t, 5*time.Second, "readyz after restart", func() bool { ok, _ := second.rt.Admin.Ready(ctx); return ok })
}

func TestBoundStoreFailureRefusesTimestamps(t *testing.T) {
	var phys atomic.Int64
	phys.Store(int64(1_700_000_000) * 1e9)
	bound := &memoryBound{}
	cfg := baseCfg()
	cfg.BoundWindow = time.Hour // no background renewal during the test
	n := startNode(t, cfg, bound, phys.Load)
	waitReady(t, n.srv)
	bound.SetErr(errors.New("stored down"))
	if _, err := n.srv.Now(t.Context()); err != nil {
		t.Fatalf("Now within the bound: %v", err)
	}
	phys.Add(int64(2 * time.Hour))
	if _, err := n.srv.Now(t.Context()); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Now beyond an unpersistable bound = %v; want Unavailable", err)
	}
	bound.SetErr(nil)
	if _, err := n.srv.Now(t.Context()); err != nil {
		t.Fatalf("Now after stored is back: %v", err)
	}
}

// cluster starts one clockd per skew, each probing all (itself included,
// skipped by node id).
func cluster(t *testing.T, cfg clockd.Config, skews []time.Duration) []*node {
	t.Helper()
	nodes := make([]*node, len(skews))
	var addrs []string
	for i, s := range skews {
		nodes[i] = startNode(t, cfg, &memoryBound{}, skewed(s))
		addrs = append(addrs, nodes[i].addr)
	}
	for _, n := range nodes {
		if err := n.srv.SetPeers(addrs); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// probedAll waits until every node has a fresh successful estimate of
// every other node, twice over (so verdicts rest on full rounds).
func probedAll(t *testing.T, nodes []*node) {
	t.Helper()
	for round := 0; round < 2; round++ {
		since := time.Now().UnixNano()
		eventually.True(t, 20*time.Second, "a full probe round", func() bool {
			for _, n := range nodes {
				offs := n.srv.Offsets()
				if len(offs) != len(nodes)-1 {
					return false
				}
				for _, o := range offs {
					if o.GetError() != "" || o.GetLastProbeNs() == 0 {
						return false
					}
				}
			}
			return time.Now().UnixNano()-since > int64(3*50*time.Millisecond)
		})
	}
}

func fastCfg() clockd.Config {
	cfg := baseCfg()
	cfg.ProbeInterval = 50 * time.Millisecond
	return cfg
}

func TestOffsetEstimatesWithinUncertainty(t *testing.T) {
	skews := []time.Duration{0, 150 * time.Millisecond, -70 * time.Millisecond}
	nodes := cluster(t, fastCfg(), skews)
	probedAll(t, nodes)
	client := daemontest.NewRuntime(t, "client")
	for i, n := range nodes {
		offs, err := clockclient.New(client.Bus, n.addr).Offsets(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offs {
			j := indexOf(nodes, o.GetPeer())
			want := int64(skews[j] - skews[i])
			diff := o.GetOffsetNs() - want
			if diff < 0 {
				diff = -diff
			}
			if diff > o.GetUncertaintyNs() {
				t.Errorf("node %d sees %d at %v ± %v; true offset %v", i, j, time.Duration(o.GetOffsetNs()),
					time.Duration(o.GetUncertaintyNs()), time.Duration(want))
			}
			if o.GetRttNs() <= 0 || o.GetNodeId() != nodes[j].rt.NodeID {
				t.Errorf("node %d row %v", i, o)
			}
		}
		if !n.srv.Health().GetHealthy() {
			t.Errorf("node %d unhealthy with skews within the threshold: %v", i, n.srv.Health())
		}
	}
}

func indexOf(nodes []*node, addr string) int {
	for i, n := range nodes {
		if n.addr == addr {
			return i
		}
	}
	return -1
}

func TestSkewedNodeFlagsItself(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(strings.Repeat("n", size), func(t *testing.T) {
			skews := make([]time.Duration, size)
			for i := range skews {
				skews[i] = time.Duration(i) * 20 * time.Millisecond // within tolerance
			}
			bad := size - 1
			skews[bad] = 2 * time.Second
			cfg := fastCfg()
			nodes := make([]*node, size)
			var addrs []string
			for i, s := range skews {
				c := cfg
				c.FatalOnUnhealthy = i == bad
				nodes[i] = startNode(t, c, &memoryBound{}, skewed(s))
				addrs = append(addrs, nodes[i].addr)
			}
			client := daemontest.NewRuntime(t, "client")
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			watch, err := clockclient.New(client.Bus, nodes[bad].addr).WatchHealth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			first, err := watch.Recv()
			if err != nil || !first.GetHealthy() {
				t.Fatalf("first health event = %v, %v; want healthy", first, err)
			}
			for _, n := range nodes {
				if err := n.srv.SetPeers(addrs); err != nil {
					t.Fatal(err)
				}
			}
			ev, err := watch.Recv()
			if err != nil {
				t.Fatal(err)
			}
			// The first verdict may rest on the peers probed so far.
			if ev.GetHealthy() || ev.GetPeersFar() != ev.GetPeersReachable() {
				t.Fatalf("health event on the skewed node = %v; want unhealthy, every reachable peer far", ev)
			}
			select {
			case err := <-nodes[bad].srv.Err():
				if err == nil {
					t.Fatal("nil fatal error")
				}
			case <-ctx.Done():
				t.Fatal("FatalOnUnhealthy did not report on Err")
			}
			probedAll(t, nodes)
			// Verdicts rest on the probes of the last three intervals; a
			// loaded machine may delay one, so poll for the settled state.
			var problems []string
			eventually.True(t, 20*time.Second, "every node's settled verdict", func() bool {
				problems = problems[:0]
				for i, n := range nodes {
					h := n.srv.Health()
					ok, failed := n.rt.Admin.Ready(ctx)
					if i == bad {
						if h.GetHealthy() || ok || failed[clockd.ReadyCheck] == nil || int(h.GetPeersFar()) != size-1 {
							problems = append(problems, fmt.Sprintf("skewed node %d: health %v ready %v", i, h, ok))
						}
						continue
					}
					if !h.GetHealthy() || !ok || h.GetPeersFar() != 1 || int(h.GetPeersReachable()) != size-1 {
						problems = append(problems, fmt.Sprintf("healthy node %d flagged: health %v ready %v %v", i, h, ok, failed))
					}
				}
				if len(problems) > 0 {
					t.Logf("not settled yet: %v", problems)
				}
				return len(problems) == 0
			})
			// The admin view lists the peers with their estimates.
			resp, err := http.Get("http://" + nodes[bad].rt.Admin.Addr().String() + clockd.OffsetsPath)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var view struct {
				Healthy bool `json:"healthy"`
				Peers   []struct {
					Peer          string `json:"peer"`
					OffsetNs      int64  `json:"offset_ns"`
					RTTNs         int64  `json:"rtt_ns"`
					UncertaintyNs int64  `json:"uncertainty_ns"`
					LastProbe     string `json:"last_probe"`
				} `json:"peers"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
				t.Fatal(err)
			}
			http.DefaultClient.CloseIdleConnections()
			if view.Healthy || len(view.Peers) != size-1 {
				t.Fatalf("/v1/offsets = %+v", view)
			}
			for _, p := range view.Peers {
				if p.OffsetNs > -int64(time.Second) || p.RTTNs <= 0 || p.UncertaintyNs <= 0 || p.LastProbe == "" {
					t.Errorf("/v1/offsets row %+v", p)
				}
			}
		})
	}
}
