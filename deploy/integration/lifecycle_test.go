package integration_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/workflowd"
)

// membership is the gossip view the lifecycle reads, set by the test.
type membership struct {
	mu      sync.Mutex
	members map[uint64]*gossippb.Member
}

func (m *membership) set(id uint64, addr string, st gossippb.MemberState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members[id] = &gossippb.Member{NodeId: id, State: st, StateChangeUnixNano: time.Now().UnixNano(),
		Metadata: &gossippb.Metadata{Addresses: map[string]string{"raftd": addr}}}
}

func (m *membership) Members(context.Context, bool) ([]*gossippb.Member, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*gossippb.Member
	for _, mb := range m.members {
		out = append(out, mb)
	}
	return out, 0, nil
}

// fourNodes starts four raftds, initializes ranges of three replicas with
// keys in them, and picks a range R lacking some node W: it returns the
// cluster, a client of every node, the node ids, W, R's first replica
// (victim) and a key of R.
func fourNodes(t *testing.T) (rc *Raftd, cl *kvclient.Client, ids []uint64, w, victim int, key []byte) {
	t.Helper()
	rc = StartRaftd(t, 4)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	cl, err = kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, AttemptTimeout: time.Second, Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := cl.Init(ctx, kvclient.InitOptions{InitialRanges: 4, ReplicationFactor: 3, MinNodes: 4}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		k := testKey(i)
		if _, err := cl.Put(ctx, k, append([]byte("v"), k...)); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	ids = make([]uint64, 4)
	for i, a := range rc.Addrs() {
		r, err := cl.Ranges(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.GetNodeId()
	}
	resp, err := cl.Descriptors(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.GetDescriptors() {
		if len(d.GetStartKey()) == 0 || d.GetStartKey()[0] == 0 {
			continue // the meta range: no user key
		}
		for i, id := range ids {
			if !slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == id }) {
				w, victim, key = i, slices.Index(ids, d.GetReplicas()[0].GetNodeId()), d.GetStartKey()
				t.Logf("range %d lacks node %d; its first replica is on node %d", d.GetRangeId(), ids[w], ids[victim])
				return rc, cl, ids, w, victim, key
			}
		}
	}
	t.Fatal("every user range has a replica on every node")
	return
}

func testKey(i int) []byte { return []byte(fmt.Sprintf("%c-key", byte(0x10+i*5))) }

// TestForwardPastDeadFirstReplica: a client whose only address is a node
// W lacking a range still reads and writes it once the node listed first
// in the range's descriptor has died (W forwards to a live replica, which
// names the leader).
func TestForwardPastDeadFirstReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node raftd cluster")
	}
	rc, _, _, w, victim, key := fourNodes(t)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	only, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs()[w : w+1], TLS: tc, AttemptTimeout: time.Second, Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = only.Close(context.Background()) })
	rc.Stop(t, victim)
	// Within an election timeout of its death the node still counts as
	// live, and a request sent its way fails: retry for a while.
	eventually.NoError(t, 20*time.Second, fmt.Sprintf("put through node %d after node %d died", w, victim), func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := only.Put(ctx, key, []byte("after"))
		return err
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if v, found, err := only.Get(ctx, key); err != nil || !found || string(v.Value) != "after" {
		t.Errorf("get = %q, %v, %v; want after", v.Value, found, err)
	}
}

// TestReReplicationAgainstRaftd: four real raftds, ranges of three
// replicas; a workflowd attached to a node W that lacks a range R runs
// the lifecycle; the node listed first in R's descriptor dies (its raftd
// stops, gossip says dead). Every range ends with three voters on the
// live nodes, and the data written before reads back.
func TestReReplicationAgainstRaftd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-node raftd cluster")
	}
	rc, cl, ids, w, victim, _ := fourNodes(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	mem := &membership{members: map[uint64]*gossippb.Member{}}
	for i, id := range ids {
		mem.set(id, rc.Addrs()[i], gossippb.MemberState_MEMBER_STATE_ALIVE)
	}
	rt := daemontest.NewUnstartedRuntime(t, workflowd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := workflowd.DefaultConfig()
	cfg.RaftAddrs, cfg.NodeID = []string{rc.Addrs()[w]}, rt.NodeID
	cfg.LeaseDuration, cfg.PollInterval = 2*time.Second, 50*time.Millisecond
	cfg.DeadNodeTimeout, cfg.LifecycleRetry = 300*time.Millisecond, 200*time.Millisecond
	srv, err := workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, Membership: mem})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(sctx)
	})

	rc.Stop(t, victim)
	mem.set(ids[victim], rc.Addrs()[victim], gossippb.MemberState_MEMBER_STATE_DEAD)
	stopped := time.Now()
	eventually.NoError(t, 60*time.Second, "every range on three voters of live nodes", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := cl.Descriptors(cctx, nil, nil)
		if err != nil {
			return err
		}
		for _, d := range resp.GetDescriptors() {
			if len(d.GetReplicas()) != 3 {
				return fmt.Errorf("range %d: %v", d.GetRangeId(), d.GetReplicas())
			}
			for _, r := range d.GetReplicas() {
				if r.GetNodeId() == ids[victim] || r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
					return fmt.Errorf("range %d: %v", d.GetRangeId(), d.GetReplicas())
				}
			}
		}
		return nil
	})
	t.Logf("re-replicated %v after the node stopped", time.Since(stopped).Round(time.Millisecond))
	for i := range 40 {
		k := testKey(i)
		v, found, err := cl.Get(ctx, k)
		if err != nil || !found || string(v.Value) != "v"+string(k) {
			t.Errorf("get %q = %q, %v, %v", k, v.Value, found, err)
		}
	}
}
