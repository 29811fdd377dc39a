package multiraft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// rangeOnThreeOfFour starts four nodes with range 3 ([m, end)) on three
// of them, writes keys under n, and returns the cluster, the range's
// descriptor and the node without a replica of it.
func rangeOnThreeOfFour(t *testing.T, ctx context.Context) (*testCluster, *kvpb.RangeDescriptor, uint64) {
	t.Helper()
	c := newTestCluster(t, 4, &kvpb.InitRequest{ReplicationFactor: 3, SplitPoints: [][]byte{[]byte("m")}})
	for i := range 100 {
		if err := c.put(ctx, fmt.Sprintf("n%03d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var desc *kvpb.RangeDescriptor
	waitFor(t, 10*time.Second, "a leader of range 3", func() bool {
		if l := c.leaderOf(3); l != 0 {
			desc = c.store(l).Replica(3).Descriptor()
		}
		return desc != nil
	})
	for _, id := range c.ids {
		if replicaOf(desc, id) == nil {
			return c, desc, id
		}
	}
	t.Fatalf("range 3 is on every node: %v", desc)
	return nil, nil, 0
}

// addAtLeader asks range 3's leader to add a replica on node, with ctx
// for the whole change (a snapshot that never lands takes the leader
// 30 election timeouts to give up on), retrying while the leadership
// moves.
func (c *testCluster) addAtLeader(ctx context.Context, node uint64) (*kvpb.RangeDescriptor, error) {
	for {
		if l := c.leaderOf(3); l != 0 {
			resp, err := c.store(l).ChangeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: 3, Add: []uint64{node}})
			if err == nil || !retryable(err) || ctx.Err() != nil {
				return resp.GetDescriptor_(), err
			}
		}
		time.Sleep(c.cfg.TickInterval)
	}
}

// checkConfAgrees fails unless the raft configuration of range 3's
// leader is the one its descriptor describes, and returns the
// descriptor.
func (c *testCluster) checkConfAgrees(t *testing.T) *kvpb.RangeDescriptor {
	t.Helper()
	var d *kvpb.RangeDescriptor
	waitFor(t, 10*time.Second, "the leader's raft configuration to match its descriptor", func() bool {
		l := c.leaderOf(3)
		if l == 0 {
			return false
		}
		r := c.store(l).Replica(3)
		r.mu.Lock()
		cs := proto.Clone(r.mu.log.cs).(*raftpb.ConfState)
		d = r.mu.desc
		r.mu.Unlock()
		want := confStateOf(d)
		for _, s := range [][]uint64{cs.Voters, cs.Learners, want.Voters, want.Learners} {
			slices.Sort(s)
		}
		return slices.Equal(cs.Voters, want.Voters) && slices.Equal(cs.Learners, want.Learners) && len(cs.VotersOutgoing) == 0
	})
	return d
}

// TestReplicaAddRollback: a replica added on a node that refuses its
// snapshot, or that goes down once it is a learner, does not catch up:
// the add fails, the learner is removed again (the leader's descriptor,
// its raft configuration and meta agree, with the three voters of
// before), the range keeps its quorum and serves writes, the node's empty
// replica is destroyed by replica GC, and a later retry adds the node
// (with a new replica id) and it holds the data.
func TestReplicaAddRollback(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fault runs while the add runs, once the node is a learner.
		fault func(c *testCluster, spare uint64)
		// heal runs after the failed add.
		heal func(c *testCluster, spare uint64)
	}{
		{"snapshot refused", func(*testCluster, uint64) {}, func(c *testCluster, spare uint64) { c.net.RefuseSnapshots(spare, false) }},
		{"target down", func(c *testCluster, spare uint64) { c.stop(spare) }, func(c *testCluster, spare uint64) {
			c.net.RefuseSnapshots(spare, false)
			c.start(spare)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			c, before, spare := rangeOnThreeOfFour(t, ctx)
			c.net.RefuseSnapshots(spare, true)
			sent := func() (n uint64) {
				for _, id := range c.ids {
					if s := c.store(id); s != nil {
						n += s.Stats().SnapshotsSent
					}
				}
				return n
			}
			sentBefore, addStart := sent(), time.Now()
			added := make(chan error, 1)
			go func() {
				_, err := c.addAtLeader(ctx, spare)
				added <- err
			}()
			var learner *kvpb.ReplicaDescriptor
			waitFor(t, 10*time.Second, "a learner on the spare node", func() bool {
				if l := c.leaderOf(3); l != 0 {
					learner = replicaOf(c.store(l).Replica(3).Descriptor(), spare)
				}
				return learner != nil
			})
			tc.fault(c, spare)
			err := <-added
			if err == nil || !strings.Contains(err.Error(), "did not catch up") || !strings.Contains(err.Error(), "removed again: <nil>") {
				t.Fatalf("add of a node that cannot catch up = %v; want it to fail and be rolled back", err)
			}
			// Failed sends back off (snapRetryMin doubling to
			// snapRetryMax) rather than streaming again at every probe.
			took, n := time.Since(addStart), sent()-sentBefore
			if limit := uint64(took/snapRetryMax) + 10; n > limit {
				t.Errorf("%d snapshot sends in the %v the add took; want at most %d (backoff)", n, took.Round(time.Millisecond), limit)
			}
			t.Logf("%d snapshot sends in %v", n, took.Round(time.Millisecond))
			d := c.checkConfAgrees(t)
			if replicaOf(d, spare) != nil || len(d.GetReplicas()) != 3 || d.GetGeneration() != before.GetGeneration()+2 {
				t.Fatalf("after the rollback: %v; want the three voters of %v, two generations later", d, before)
			}
			for _, r := range d.GetReplicas() {
				if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
					t.Fatalf("after the rollback: %v is not a voter", r)
				}
			}
			c.checkDescriptors(t, ctx, d)
			if err := c.put(ctx, "n500", "after the rollback"); err != nil {
				t.Fatalf("write after the rollback: %v", err)
			}
			tc.heal(c, spare)
			waitFor(t, 10*time.Second, "the spare node's empty replica to be destroyed", func() bool {
				s := c.store(spare)
				return s != nil && s.Replica(3) == nil
			})
			d, err = c.addAtLeader(ctx, spare)
			if err != nil {
				t.Fatalf("retry of the add: %v", err)
			}
			r := replicaOf(d, spare)
			if r == nil || r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER || r.GetReplicaId() <= learner.GetReplicaId() {
				t.Fatalf("after the retry: %v; want a voter on node %d with an id above %d", d, spare, learner.GetReplicaId())
			}
			waitFor(t, 10*time.Second, "the added replica to hold the data", func() bool {
				v, ok := c.staleGet(spare, "n500")
				return ok && v == "after the rollback"
			})
			c.checkConfAgrees(t)
		})
	}
}

// TestEmptyReplicaGC: an empty replica created on a node for an add
// whose conf change never applied (the leader died after CreateReplica,
// say) is destroyed by replica GC once its grace has passed, without a
// tombstone, as its id never was in the range's configuration; the
// range's descriptor does not change, and the add's retry, which
// allocates the same id, creates it again and succeeds. Before, it
// stayed until the next add to that node.
func TestEmptyReplicaGC(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c, before, spare := rangeOnThreeOfFour(t, ctx)
	// What the leader's ChangeReplicas does before it proposes the learner.
	learner := proto.Clone(before).(*kvpb.RangeDescriptor)
	id := max(before.GetNextReplicaId(), 1)
	learner.Replicas = append(learner.Replicas, &kvpb.ReplicaDescriptor{NodeId: spare, ReplicaId: id, Type: kvpb.ReplicaType_REPLICA_TYPE_LEARNER})
	learner.NextReplicaId = id + 1
	learner.Generation++
	if _, err := c.store(spare).CreateReplica(ctx, &raftmsgpb.CreateReplicaRequest{Descriptor_: learner}); err != nil {
		t.Fatal(err)
	}
	if c.store(spare).Replica(3) == nil {
		t.Fatal("no empty replica created")
	}
	created := time.Now()
	grace := c.store(spare).emptyReplicaGrace()
	waitFor(t, grace+20*time.Second, "replica GC to destroy the empty replica", func() bool { return c.store(spare).Replica(3) == nil })
	if took := time.Since(created); took < grace {
		t.Fatalf("the empty replica was destroyed after %v, within its grace of %v", took, grace)
	}
	t.Logf("destroyed %v after its creation (grace %v)", time.Since(created).Round(time.Millisecond), grace)
	if err := c.store(spare).checkTombstone(ctx, 3, id); err != nil {
		t.Fatalf("replica id %d refused after its empty replica went: %v", id, err)
	}
	if d := c.checkConfAgrees(t); d.GetGeneration() != before.GetGeneration() || !proto.Equal(d, before) {
		t.Fatalf("descriptor changed by the GC: %v; before %v", d, before)
	}
	d, err := c.changeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: 3, Add: []uint64{spare}})
	if err != nil {
		t.Fatalf("add after the GC: %v", err)
	}
	if r := replicaOf(d, spare); r == nil || r.GetReplicaId() != id || r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
		t.Fatalf("after the add: %v; want a voter on node %d with id %d", d, spare, id)
	}
	waitFor(t, 10*time.Second, "the added replica to hold the data", func() bool {
		v, ok := c.staleGet(spare, "n050")
		return ok && v == "v50"
	})
	// Now in the descriptor, and past its grace: it stays.
	time.Sleep(5 * c.cfg.ReplicaGCInterval)
	if c.store(spare).Replica(3) == nil {
		t.Fatal("replica GC destroyed a replica its range's descriptor names")
	}
}

// TestReadFromDestroyedReplica: a replica destroyed (removed from its
// range, its data deleted) between a read's barrier and its read of the
// engine does not answer the read: the key, written long before, would
// read as absent.
func TestReadFromDestroyedReplica(t *testing.T) {
	get := func(ctx context.Context, s *Store, h *kvpb.Header) (string, bool, error) {
		resp, err := s.Get(ctx, &kvpb.GetRequest{Key: []byte("k"), Header: h})
		return string(resp.GetValue().GetValue()), resp.GetFound(), err
	}
	scan := func(ctx context.Context, s *Store, h *kvpb.Header) (string, bool, error) {
		resp, err := s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("k"), End: []byte("k\x00"), Header: h})
		if len(resp.GetKvs()) == 0 {
			return "", false, err
		}
		return string(resp.GetKvs()[0].GetValue().GetValue()), true, err
	}
	for _, tc := range []struct {
		name      string
		leader    bool // read at the leader (else at a follower)
		staleness time.Duration
		read      func(ctx context.Context, s *Store, h *kvpb.Header) (string, bool, error)
	}{
		{"linearizable get at the leader", true, 0, get},
		{"bounded-staleness get at a follower", false, 10 * time.Second, get},
		{"linearizable scan at the leader", true, 0, scan},
		{"bounded-staleness scan at a follower", false, 10 * time.Second, scan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3, &kvpb.InitRequest{})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := c.put(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			rangeID := rangeOf(c, "k")
			var leader uint64
			waitFor(t, 10*time.Second, "a leader of the range of k", func() bool { leader = c.leaderOf(rangeID); return leader != 0 })
			node := leader
			if !tc.leader {
				node = c.ids[0]
				if node == leader {
					node = c.ids[1]
				}
			}
			s := c.store(node)
			h := &kvpb.Header{MaxStalenessNanos: int64(tc.staleness), NoForward: true}
			waitFor(t, 10*time.Second, "the node to serve k itself", func() bool {
				v, _, err := tc.read(ctx, s, h)
				return err == nil && v == "v1"
			})
			fired := 0
			hook := func(id uint64, stage string) {
				if id != rangeID || stage != "read" {
					return
				}
				fired++
				if r := s.Replica(rangeID); r != nil {
					s.destroyReplica(r, "removed from its range")
				}
			}
			s.testHook.Store(&hook)
			v, found, err := tc.read(ctx, s, h)
			s.testHook.Store(nil)
			if fired != 1 {
				t.Fatalf("the read hook ran %d times; want 1 (the read was not served by node %d)", fired, node)
			}
			if err == nil && (!found || v != "v1") {
				t.Fatalf("read at a replica destroyed under it: found %v, %q; want v1 or an error", found, v)
			}
			if err != nil && !errors.Is(err, bus.ErrUnavailable) {
				t.Fatalf("read at a replica destroyed under it: %v; want Unavailable (retry elsewhere)", err)
			}
		})
	}
}

// TestRecreatedReplicaIgnoresOldReplicaTraffic: a node whose replica of a
// range is replaced by a newer, empty one (re-added after its removal)
// may still get raft traffic the leader sent to the old replica id, a
// heartbeat carrying the commit index the old replica had reached among
// it. The new replica drops it: stepped into its empty log, that commit
// index made raft panic (tocommit out of range) and took the node down.
func TestRecreatedReplicaIgnoresOldReplicaTraffic(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	rangeID := rangeOf(c, "k")
	var leader uint64
	waitFor(t, 10*time.Second, "a leader of the range of k", func() bool { leader = c.leaderOf(rangeID); return leader != 0 })
	node := c.ids[0]
	if node == leader {
		node = c.ids[1]
	}
	// The descriptor of a removal of node's replica and its re-add under
	// a new id, which the leader has not applied: it still sends the old
	// replica heartbeats, with the commit index that replica holds.
	d := proto.Clone(c.store(leader).Replica(rangeID).Descriptor()).(*kvpb.RangeDescriptor)
	me := replicaOf(d, node)
	old := me.GetReplicaId()
	me.ReplicaId, me.Type = d.GetNextReplicaId(), kvpb.ReplicaType_REPLICA_TYPE_LEARNER
	d.NextReplicaId++
	d.Generation++
	if _, err := c.store(node).CreateReplica(ctx, &raftmsgpb.CreateReplicaRequest{Descriptor_: d}); err != nil {
		t.Fatal(err)
	}
	r := c.store(node).Replica(rangeID)
	if r == nil || r.replicaID() == old {
		t.Fatalf("node %d holds replica %v of range %d; want a new empty one", node, r, rangeID)
	}
	// Writes keep the range awake: its leader heartbeats the old replica.
	for i := range 20 {
		if err := c.put(ctx, "k", fmt.Sprintf("v%d", i+2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(c.cfg.TickInterval)
	}
	r.mu.Lock()
	st := r.mu.rn.BasicStatus()
	r.mu.Unlock()
	if st.GetCommit() != 0 || st.GetTerm() != 0 {
		t.Fatalf("the new empty replica %d took traffic meant for replica %d: term %d, commit %d", r.replicaID(), old, st.GetTerm(), st.GetCommit())
	}
}
