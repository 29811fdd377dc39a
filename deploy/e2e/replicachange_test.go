package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// TestKVReplicaChangesUnderFaults: the clients of runLinearizable (16
// goroutines on two Go clients with their default retries, a
// porcupine-checked history, writers of fresh keys that must lose no
// acknowledged write) run on a four-node `pleiades dev` cluster while the
// range of their keys moves: one of its followers is replaced by the
// node that has no replica of it (a learner, its snapshot, then one
// joint configuration), and, once the added node holds its empty
// replica, (1) the raftd leading the range is killed with SIGKILL; (2)
// it is frozen with SIGSTOP past the election timeout, then continued;
// or (3) from the start of the change, the raftd of the node being
// added is frozen while it should take its snapshot. The
// change is retried from wherever the fault left it (the leader's
// descriptor tells) until the range has its new voters; then every
// voter's raftd lists the range with that descriptor.
// PLEIADES_E2E_FAULT_ROUNDS=N runs the faults N times over (make
// e2e-faults).
func TestKVReplicaChangesUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	c := startDev(t, t.TempDir(), 4, 2200)
	admin := c.client(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustInit(t, ctx, admin, kvclient.InitOptions{MinNodes: 4})
	faults := []linearizableFault{
		{"replica-change-kill", func(t *testing.T, c *devCluster, leader int) {
			c.moveUnder(t, "replica-change-kill", func(added int, rangeID uint64) {
				// Once the added node holds its empty replica: the
				// learner is being added, or its snapshot sent.
				c.waitReplicaOn(t, added, rangeID)
				d := c.raftd(t, leader)
				if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				t.Logf("SIGKILL node %d raftd (pid %d)", leader, d.PID)
				c.waitRestarted(t, d.Name, d.PID)
			})
		}},
		{"conf-change-stop", func(t *testing.T, c *devCluster, leader int) {
			c.moveUnder(t, "conf-change-stop", func(added int, rangeID uint64) {
				c.waitReplicaOn(t, added, rangeID)
				c.pause(t, leader, faultTime)
			})
		}},
		{"learner-stop", func(t *testing.T, c *devCluster, leader int) {
			c.moveUnder(t, "learner-stop", func(added int, _ uint64) { c.pause(t, added, faultTime) })
		}},
	}
	runFaults(t, c, admin, faults)
}

// spareOf returns the node (index) that holds no replica of the range
// of key, as the range's leader describes it.
func (c *devCluster) spareOf(t *testing.T, key string) int {
	t.Helper()
	cl := c.client(t, 5*time.Second)
	var spare int
	eventually.NoError(t, 30*time.Second, "the node without a replica of "+key, func() error {
		d, err := c.descriptorOf(cl, []byte(key))
		if err != nil {
			return err
		}
		for _, n := range c.nodes {
			if !slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == n.NodeID }) {
				spare = n.Index
				return nil
			}
		}
		return fmt.Errorf("every node holds range %d", d.GetRangeId())
	})
	return spare
}

// descriptorOf returns the descriptor of key's range as its leader (the
// node with the highest term saying it leads) has it.
func (c *devCluster) descriptorOf(cl *kvclient.Client, key []byte) (*kvpb.RangeDescriptor, error) {
	reps, rerr := c.replicas(cl, 5*time.Second)
	var (
		term uint64
		desc *kvpb.RangeDescriptor
	)
	for _, rs := range reps {
		for _, r := range rs {
			if spanHas(r, key) && r.GetRaftState() == "leader" && r.GetTerm() >= term {
				desc, term = r.GetDescriptor_(), r.GetTerm()
			}
		}
	}
	if desc == nil {
		return nil, fmt.Errorf("no leader of the range of %q found (%v)", key, rerr)
	}
	return desc, nil
}

// moveUnder replaces a follower of the range of the fault's first key
// by the node without a replica of it, with fault injected while the
// change runs, then finishes the change: it asks again for what the
// leader's descriptor still lacks (a replica change that failed half
// way is resumed or rolled back by raftd, never left half done) until
// the added node is a voter and the removed one is gone, and checks that
// every voter's raftd holds the final descriptor. fault gets the index of
// the node being added and the range's id.
func (c *devCluster) moveUnder(t *testing.T, name string, fault func(added int, rangeID uint64)) {
	t.Helper()
	key := []byte("lin-" + name + "/k0")
	cl := c.client(t, 5*time.Second)
	d, err := c.descriptorOf(cl, key)
	if err != nil {
		t.Fatal(err)
	}
	leader, _, err := c.leaderOf(cl, key)
	if err != nil {
		t.Fatal(err)
	}
	spare := c.spareOf(t, string(key))
	add := c.nodes[spare-1].NodeID
	var remove uint64
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() != c.nodes[leader-1].NodeID && r.GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			remove = r.GetNodeId()
			break
		}
	}
	if remove == 0 {
		t.Fatalf("range %d has no follower to replace: %v", d.GetRangeId(), d)
	}
	rangeID := d.GetRangeId()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := make(chan error, 1)
	started := time.Now()
	go func() {
		_, err := cl.ChangeReplicas(ctx, rangeID, kvclient.ReplicaChange{Add: []uint64{add}, Remove: []uint64{remove}})
		first <- err
	}()
	t.Logf("range %d (generation %d): replace node %d by node %d", rangeID, d.GetGeneration(), c.nodeOf(remove), c.nodeOf(add))
	fault(spare, rangeID)
	if err := <-first; err != nil {
		t.Logf("first attempt after %v: %v", time.Since(started).Round(time.Millisecond), err)
	} else {
		t.Logf("first attempt succeeded after %v", time.Since(started).Round(time.Millisecond))
	}
	attempts := 1
	eventually.NoError(t, 90*time.Second, "the replacement done", func() error {
		d, err := c.descriptorOf(cl, key)
		if err != nil {
			return err
		}
		var ch kvclient.ReplicaChange
		if r := replicaOnNode(d, add); r == nil || r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			ch.Add = []uint64{add}
		}
		if replicaOnNode(d, remove) != nil {
			ch.Remove = []uint64{remove}
		}
		if len(ch.Add)+len(ch.Remove) == 0 {
			return c.allHold(cl, d)
		}
		attempts++
		if _, err := cl.ChangeReplicas(ctx, rangeID, ch); err != nil {
			return fmt.Errorf("change %+v of %v: %w", ch, d, err)
		}
		return errors.New("changed: check the descriptor again")
	})
	t.Logf("range %d: node %d replaced by node %d in %v (%d attempts)", rangeID, c.nodeOf(remove), c.nodeOf(add), time.Since(started).Round(time.Millisecond), attempts)
}

// waitReplicaOn waits (briefly: the change may be done already) until
// node lists a replica of the range.
func (c *devCluster) waitReplicaOn(t *testing.T, node int, rangeID uint64) {
	t.Helper()
	cl := c.client(t, time.Second, c.nodes[node-1].RaftAddr)
	// Polled without backoff: the window is short.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := cl.Ranges(ctx, "")
		cancel()
		if err != nil {
			continue
		}
		for _, r := range resp.GetReplicas() {
			if r.GetDescriptor_().GetRangeId() == rangeID {
				t.Logf("node %d holds a replica of range %d (%s, applied %d)", node, rangeID, r.GetRaftState(), r.GetAppliedIndex())
				return
			}
		}
	}
	t.Logf("node %d listed no replica of range %d within 5s: fault injected anyway", node, rangeID)
}

func replicaOnNode(d *kvpb.RangeDescriptor, node uint64) *kvpb.ReplicaDescriptor {
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() == node {
			return r
		}
	}
	return nil
}

// allHold checks that every replica d names lists the range with d's
// generation on its node.
func (c *devCluster) allHold(cl *kvclient.Client, d *kvpb.RangeDescriptor) error {
	reps, err := c.replicas(cl, 5*time.Second)
	if err != nil {
		return err
	}
	for _, r := range d.GetReplicas() {
		n := c.nodeOf(r.GetNodeId())
		if !slices.ContainsFunc(reps[n], func(s *kvpb.ReplicaStatus) bool {
			return s.GetDescriptor_().GetRangeId() == d.GetRangeId() && s.GetDescriptor_().GetGeneration() == d.GetGeneration()
		}) {
			return fmt.Errorf("node %d does not hold range %d at generation %d yet", n, d.GetRangeId(), d.GetGeneration())
		}
	}
	return nil
}
