package multiraft

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// changeReplicas makes a replica change as the Go client does, retried on
// another node after a retryable error; each attempt may take 5s, not
// do's 20 ticks: a learner's snapshot under -race on a loaded machine
// can take longer, and the retry of a change that applied is refused as
// invalid ("already has a replica").
func (c *testCluster) changeReplicas(ctx context.Context, req *kvpb.ChangeReplicasRequest) (*kvpb.RangeDescriptor, error) {
	var resp *kvpb.ChangeReplicasResponse
	err := c.doWithin(ctx, c.ids, 5*time.Second, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.ChangeReplicas(ctx, req)
		return err
	})
	return resp.GetDescriptor_(), err
}

func nodesOf(d *kvpb.RangeDescriptor) map[uint64]kvpb.ReplicaType {
	out := map[uint64]kvpb.ReplicaType{}
	for _, r := range d.GetReplicas() {
		out[r.GetNodeId()] = r.GetType()
	}
	return out
}

// TestReplicaChanges adds a replica on a fourth node (learner, snapshot,
// promotion), replaces another with it through a joint configuration,
// moves leadership, removes a voter, and re-adds a removed node: each
// step's descriptor agrees on every replica and in meta, the data is
// served throughout, and removed replicas are destroyed.
func TestReplicaChanges(t *testing.T) {
	c := newTestCluster(t, 4, &kvpb.InitRequest{ReplicationFactor: 3, SplitPoints: [][]byte{[]byte("m")}})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// Range 3 is [m, end): find a node without a replica of it.
	var desc *kvpb.RangeDescriptor
	for _, id := range c.ids {
		if r := c.store(id).Replica(3); r != nil {
			desc = r.Descriptor()
		}
	}
	var spare uint64
	for _, id := range c.ids {
		if replicaOf(desc, id) == nil {
			spare = id
		}
	}
	for i := range 300 {
		if err := c.put(ctx, fmt.Sprintf("n%03d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Add: a learner gets a snapshot (the log was truncated), then votes.
	d, err := c.changeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: 3, Add: []uint64{spare}})
	if err != nil {
		t.Fatalf("add node %d: %v", spare, err)
	}
	if n := nodesOf(d); len(n) != 4 || n[spare] != kvpb.ReplicaType_REPLICA_TYPE_VOTER || d.GetGeneration() <= desc.GetGeneration() {
		t.Fatalf("after add: %v", d)
	}
	waitFor(t, 10*time.Second, "the new replica to hold the data", func() bool {
		v, ok := c.staleGet(spare, "n150")
		return ok && v == "v150"
	})
	if st := c.store(spare).Stats(); st.SnapshotsApplied == 0 {
		t.Errorf("the new replica caught up without a snapshot: %+v", st)
	}
	c.checkDescriptors(t, ctx, d)
	// Replace: remove a voter that does not lead and add nothing (it was
	// added above); then replace one voter with the removed node.
	leader := c.leaderOf(3)
	var victim uint64
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() != leader && r.GetNodeId() != spare {
			victim = r.GetNodeId()
		}
	}
	d, err = c.changeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: 3, Remove: []uint64{victim}})
	if err != nil {
		t.Fatalf("remove node %d: %v", victim, err)
	}
	if n := nodesOf(d); len(n) != 3 || n[victim] != 0 && replicaOf(d, victim) != nil {
		t.Fatalf("after remove: %v", d)
	}
	waitFor(t, 10*time.Second, "the removed replica to be destroyed", func() bool {
		return c.store(victim).Replica(3) == nil
	})
	c.checkDescriptors(t, ctx, d)
	// Replace the spare with the removed node in one joint change.
	leader = c.leaderOf(3)
	if leader == spare {
		if _, err := c.store(leader).TransferLeader(ctx, &kvpb.TransferLeaderRequest{RangeId: 3, NodeId: d.GetReplicas()[0].GetNodeId()}); err != nil {
			t.Fatal(err)
		}
	}
	d, err = c.changeReplicas(ctx, &kvpb.ChangeReplicasRequest{RangeId: 3, Add: []uint64{victim}, Remove: []uint64{spare}})
	if err != nil {
		t.Fatalf("replace %d with %d: %v", spare, victim, err)
	}
	if n := nodesOf(d); len(n) != 3 || replicaOf(d, spare) != nil || n[victim] != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
		t.Fatalf("after replace: %v", d)
	}
	for _, r := range d.GetReplicas() {
		if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			t.Fatalf("replica %v left in a joint state", r)
		}
	}
	waitFor(t, 10*time.Second, "the re-added replica to hold the data and the replaced one to go", func() bool {
		v, ok := c.staleGet(victim, "n299")
		return ok && v == "v299" && c.store(spare).Replica(3) == nil && c.store(victim).Replica(3) != nil
	})
	// The re-added replica is not destroyed by GC (its id is new).
	time.Sleep(5 * c.cfg.ReplicaGCInterval)
	if c.store(victim).Replica(3) == nil {
		t.Fatal("replica GC destroyed the re-added replica")
	}
	c.checkDescriptors(t, ctx, d)
	if err := c.put(ctx, "n999", "after"); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.get(ctx, "n999"); err != nil || v != "after" {
		t.Fatalf("n999 = %q, %v", v, err)
	}
}

// checkDescriptors waits until every replica of d's range and the meta
// range hold d.
func (c *testCluster) checkDescriptors(t *testing.T, ctx context.Context, d *kvpb.RangeDescriptor) {
	t.Helper()
	waitFor(t, 10*time.Second, "every replica and meta to agree on the descriptor", func() bool {
		for _, rd := range d.GetReplicas() {
			s := c.store(rd.GetNodeId())
			if s == nil {
				return false
			}
			if r := s.Replica(d.GetRangeId()); r == nil || r.Descriptor().GetGeneration() != d.GetGeneration() {
				return false
			}
		}
		for _, md := range c.metaDescs(ctx, c.ids[0]) {
			if md.GetRangeId() == d.GetRangeId() {
				return md.GetGeneration() == d.GetGeneration()
			}
		}
		return false
	})
}

func TestReplicaChangesBadInput(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{ReplicationFactor: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "a", "x"); err != nil {
		t.Fatal(err)
	}
	d := c.store(c.leaderOf(2)).Replica(2).Descriptor()
	only := d.GetReplicas()[0].GetNodeId()
	var other uint64
	for _, id := range c.ids {
		if id != only {
			other = id
		}
	}
	for _, tt := range []struct {
		name string
		req  *kvpb.ChangeReplicasRequest
		want string
	}{
		{"remove the last voter", &kvpb.ChangeReplicasRequest{RangeId: 2, Remove: []uint64{only}}, "no voter left"},
		{"unknown node", &kvpb.ChangeReplicasRequest{RangeId: 2, Add: []uint64{99}}, "not a known node"},
		{"existing replica", &kvpb.ChangeReplicasRequest{RangeId: 2, Add: []uint64{only}}, "already has a replica"},
		{"remove a non-replica", &kvpb.ChangeReplicasRequest{RangeId: 2, Remove: []uint64{other}}, "has no replica on node"},
		{"nothing", &kvpb.ChangeReplicasRequest{RangeId: 2}, "give one node"},
		{"two adds", &kvpb.ChangeReplicasRequest{RangeId: 2, Add: []uint64{other, 99}}, "give one node"},
	} {
		_, err := c.changeReplicas(ctx, tt.req)
		if !errors.Is(err, bus.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want InvalidArgument saying %q", tt.name, err, tt.want)
		}
	}
	if got := c.store(only).Replica(2).Descriptor(); got.GetGeneration() != d.GetGeneration() || len(got.GetReplicas()) != 1 {
		t.Fatalf("refused changes changed the descriptor: %v", got)
	}
}

// TestReplicaChangesLinearizable records gets and puts from concurrent
// clients while a range's replicas are added, removed and replaced, its
// leadership moves, its leader is crashed in the middle of a conf change,
// and a split races with the changes; the history is checked with
// porcupine.
func TestReplicaChangesLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run")
	}
	// A 2 ms network delay makes the races of a replace with a leader
	// crash common: the removed replica elected and destroyed with writes
	// in flight, heartbeats to a removed replica reaching its successor, a
	// split retried before meta knows it.
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run("delay="+delay.String(), func(t *testing.T) { replicaChangesLinearizable(t, delay) })
	}
}

func replicaChangesLinearizable(t *testing.T, delay time.Duration) {
	c := newTestCluster(t, 5, &kvpb.InitRequest{ReplicationFactor: 3})
	c.net.SetDelay(delay)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	h, stop, wait := c.recordHistory(ctx, []string{"a1", "b2", "m1", "x9"}, 6)
	desc := func() *kvpb.RangeDescriptor {
		for _, id := range c.ids {
			if s := c.store(id); s != nil {
				if r := s.Replica(2); r != nil && r.IsLeader() {
					return r.Descriptor()
				}
			}
		}
		return nil
	}
	var d *kvpb.RangeDescriptor
	waitFor(t, 10*time.Second, "a leader of range 2", func() bool { d = desc(); return d != nil })
	outside := func(d *kvpb.RangeDescriptor) []uint64 {
		var out []uint64
		for _, id := range c.ids {
			if replicaOf(d, id) == nil {
				out = append(out, id)
			}
		}
		return out
	}
	notLeader := func(d *kvpb.RangeDescriptor) uint64 {
		l := c.leaderOf(2)
		for _, r := range d.GetReplicas() {
			if r.GetNodeId() != l {
				return r.GetNodeId()
			}
		}
		return 0
	}
	step := func(what string, req *kvpb.ChangeReplicasRequest) {
		t.Helper()
		time.Sleep(100 * time.Millisecond)
		nd, err := c.changeReplicas(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d = nd
	}
	step("add", &kvpb.ChangeReplicasRequest{RangeId: 2, Add: outside(d)[:1]})
	step("remove", &kvpb.ChangeReplicasRequest{RangeId: 2, Remove: []uint64{notLeader(d)}})
	step("replace", &kvpb.ChangeReplicasRequest{RangeId: 2, Add: outside(d)[:1], Remove: []uint64{notLeader(d)}})
	// A split races with the next change.
	splitDone := make(chan error, 1)
	go func() {
		_, err := c.split(ctx, "m")
		splitDone <- err
	}()
	// The leader crashes while a replacement is under way; the change is
	// retried (or finished) under the next leader.
	leader := c.leaderOf(2)
	add, rem := outside(d)[0], notLeader(d)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(20 * time.Millisecond)
		c.crash(leader)
		time.Sleep(300 * time.Millisecond)
		c.start(leader)
	}()
	for i := 0; ; i++ {
		var nd *kvpb.RangeDescriptor
		var err error
		if s := c.store(c.ids[i%len(c.ids)]); s != nil {
			actx, acancel := context.WithTimeout(ctx, 3*time.Second)
			var resp *kvpb.ChangeReplicasResponse
			resp, err = s.ChangeReplicas(actx, &kvpb.ChangeReplicasRequest{RangeId: 2, Add: []uint64{add}, Remove: []uint64{rem}})
			acancel()
			nd = resp.GetDescriptor_()
		} else {
			continue
		}
		if err == nil {
			d = nd
			break
		}
		// A retry after the first attempt applied finds it done.
		if cur := desc(); cur != nil && replicaOf(cur, add) != nil && replicaOf(cur, rem) == nil {
			d = cur
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("replace under a crash: %v", err)
		}
		t.Logf("replace attempt: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	// A split whose answer was lost with a crashed node succeeds when
	// retried: it applied already.
	if err := <-splitDone; err != nil {
		t.Fatalf("split racing the changes: %v", err)
	}
	<-restarted
	waitFor(t, 10*time.Second, "the range to leave its joint configuration", func() bool {
		cur := desc()
		if cur == nil {
			return false
		}
		for _, r := range cur.GetReplicas() {
			if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
				return false
			}
		}
		d = cur
		return len(cur.GetReplicas()) == 3
	})
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wait()
	c.checkHistory(t, h)
	c.checkDescriptors(t, ctx, d)
	checkCover(t, c.metaDescs(ctx, c.ids[0]))
}

// TestLeaderRemovedWithWritesInFlight: a leader that applies its own
// removal (as the replica a replacement removes does when it is elected
// before the joint configuration is left) steps down and is destroyed
// with writes in flight. Those appended after the removal reached the
// other replicas' logs, and the next leader commits them: their callers
// must hear "outcome unknown", never NotLeader or Unavailable (nothing
// done), so no value that a put was refused with is ever read.
func TestLeaderRemovedWithWritesInFlight(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	// Appends take a while to be answered: writes keep coming after the
	// removal, and some are in flight when the leader applies it.
	c.net.SetDelay(2 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	rangeID := rangeOf(c, "k")
	var leader uint64
	waitFor(t, 10*time.Second, "a leader of the range of k", func() bool { leader = c.leaderOf(rangeID); return leader != 0 })
	s := c.store(leader)
	r := s.Replica(rangeID)
	var mu sync.Mutex
	refused := map[string]error{}
	var wg sync.WaitGroup
	for client := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !r.destroyed.Load(); i++ {
				v := fmt.Sprintf("c%d-%d", client, i)
				actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, err := s.Put(actx, &kvpb.PutRequest{Key: []byte("k"), Value: []byte(v)})
				acancel()
				if errors.Is(err, bus.ErrNotLeader) || errors.Is(err, bus.ErrUnavailable) {
					mu.Lock()
					refused[v] = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	r.mu.Lock()
	self := r.mu.replicaID
	r.mu.Unlock()
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(self)}}}
	if _, err := r.proposeConfChange(ctx, cc, nil, func(d *kvpb.RangeDescriptor) bool { return replicaOf(d, leader) == nil }); err != nil {
		t.Fatalf("remove the leader's replica: %v", err)
	}
	waitFor(t, 10*time.Second, "the removed leader's replica to be destroyed", r.destroyed.Load)
	wg.Wait()
	v, _, err := c.get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if why, ok := refused[v]; ok {
		t.Fatalf("k reads %q, written by a put answered %v (nothing done)", v, why)
	}
}
