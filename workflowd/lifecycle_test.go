package workflowd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
	"github.com/pleiades-db/pleiades/workflowd"
)

// membership is a gossip view the test sets: node id to state, since
// when.
type membership struct {
	mu      sync.Mutex
	members map[uint64]*gossippb.Member
}

func newMembership(alive ...uint64) *membership {
	m := &membership{members: map[uint64]*gossippb.Member{}}
	for _, id := range alive {
		m.set(id, gossippb.MemberState_MEMBER_STATE_ALIVE)
	}
	return m
}

func (m *membership) set(id uint64, st gossippb.MemberState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members[id] = &gossippb.Member{NodeId: id, State: st, StateChangeUnixNano: time.Now().UnixNano(),
		Metadata: &gossippb.Metadata{Addresses: map[string]string{"raftd": fmt.Sprintf("127.0.0.1:%d", 7000+id)}}}
}

// forget drops a member, as a gossipd restarted after it died does.
func (m *membership) forget(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.members, id)
}

func (m *membership) Members(context.Context, bool) ([]*gossippb.Member, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*gossippb.Member
	for _, mb := range m.members {
		out = append(out, mb)
	}
	return out, 1, nil
}

// lcFixture is a fake KV cluster of n nodes (ranges on nodes 1-3), a
// gossip view, and workflowds on them.
type lcFixture struct {
	t   *testing.T
	fc  *kvclienttest.Cluster
	mem *membership
	kv  *kvclient.Client
	wfs []*workflowclient.Client
	// srvs are the workflowds by node id, byNode their clients.
	srvs   map[uint64]*workflowd.Server
	byNode map[uint64]*workflowclient.Client
}

func newLCFixture(t *testing.T, nodes, workflowds int, mem *membership, opts ...func(*workflowd.Config)) *lcFixture {
	t.Helper()
	ca := daemontest.CA(t)
	f := &lcFixture{t: t, mem: mem, srvs: map[uint64]*workflowd.Server{}, byNode: map[uint64]*workflowclient.Client{}, fc: kvclienttest.Start(t, kvclienttest.Options{Nodes: nodes, CA: ca, SplitPoints: [][]byte{[]byte("m")}})}
	client := daemontest.NewRuntimeWithCA(t, "client", ca, daemontest.Common(t))
	for range workflowds {
		rt := daemontest.NewUnstartedRuntime(t, workflowd.Name, ca, daemontest.Common(t))
		cfg := workflowd.DefaultConfig()
		cfg.RaftAddrs, cfg.NodeID = f.fc.Addrs(), rt.NodeID
		cfg.LeaseDuration, cfg.PollInterval, cfg.CountsInterval = time.Second, 20*time.Millisecond, 50*time.Millisecond
		cfg.DeadNodeTimeout, cfg.LifecycleRetry = 300*time.Millisecond, 100*time.Millisecond
		for _, o := range opts {
			o(&cfg)
		}
		srv, err := workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, Membership: mem})
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
				t.Error(err)
			}
		})
		f.wfs = append(f.wfs, workflowclient.New(client.Bus, rt.Bus.Addr().String()))
		f.srvs[rt.NodeID], f.byNode[rt.NodeID] = srv, f.wfs[len(f.wfs)-1]
	}
	var err error
	f.kv, err = kvclient.New(t.Context(), kvclient.Config{Addrs: f.fc.Addrs(), Bus: client.Bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.kv.Close(context.Background()) })
	return f
}

// oneMoveAtATime makes the lifecycle workflows move one range per step,
// for tests that stop them half way.
func oneMoveAtATime(c *workflowd.Config) { c.MoveConcurrency = 1 }

// descs returns the user ranges' descriptors.
func (f *lcFixture) descs() []*kvpb.RangeDescriptor {
	f.t.Helper()
	resp, err := f.kv.Descriptors(f.t.Context(), nil, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*kvpb.RangeDescriptor
	for _, d := range resp.GetDescriptors() {
		if d.GetRangeId() != 1 {
			out = append(out, d)
		}
	}
	return out
}

// allDescs returns every range's descriptor, the meta range's too.
func (f *lcFixture) allDescs() []*kvpb.RangeDescriptor {
	f.t.Helper()
	resp, err := f.kv.Descriptors(f.t.Context(), nil, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.GetDescriptors()
}

// layout is "range: nodes" of every user range, e.g. "2:1,2,3 3:1,2,3".
func (f *lcFixture) layout() string {
	var parts []string
	for _, d := range f.descs() {
		var ns []string
		for _, r := range d.GetReplicas() {
			ns = append(ns, fmt.Sprint(r.GetNodeId()))
		}
		parts = append(parts, fmt.Sprintf("%d:%s", d.GetRangeId(), strings.Join(ns, ",")))
	}
	return strings.Join(parts, " ")
}

func (f *lcFixture) instances(def string) []*workflowpb.InstanceSummary {
	f.t.Helper()
	resp, err := f.wfs[0].List(f.t.Context(), &workflowpb.ListRequest{Definition: def})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.GetInstances()
}

func instanceData(t *testing.T, in *workflowpb.Instance) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(in.GetData(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReReplication: node 2 of four dies; once dead past the timeout its
// replicas are replaced on node 4 (the only live node without them) by
// exactly one instance although two workflowds watch.
func TestReReplication(t *testing.T) {
	f := newLCFixture(t, 4, 2, newMembership(1, 2, 3, 4))
	if got, want := f.layout(), "2:1,2,3 3:1,2,3"; got != want {
		t.Fatalf("initial layout %s; want %s", got, want)
	}
	f.mem.set(2, gossippb.MemberState_MEMBER_STATE_DEAD)
	eventually.NoError(t, 20*time.Second, "node 2's replicas replaced", func() error {
		for _, d := range f.descs() {
			if len(d.GetReplicas()) != 3 {
				return fmt.Errorf("range %d has %d replicas", d.GetRangeId(), len(d.GetReplicas()))
			}
		}
		if got, want := f.layout(), "2:1,3,4 3:1,3,4"; got != want {
			return fmt.Errorf("layout %s; want %s", got, want)
		}
		return nil
	})
	var in *workflowpb.Instance
	eventually.NoError(t, 10*time.Second, "re-replication completed", func() error {
		list := f.instances("pleiades.rereplicate")
		if len(list) != 1 {
			return fmt.Errorf("%d instances", len(list))
		}
		var err error
		if in, err = f.wfs[1].Get(t.Context(), list[0].GetId()); err != nil {
			return err
		}
		if in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			return fmt.Errorf("status %v", in.GetStatus())
		}
		return nil
	})
	if d := instanceData(t, in); d["moved"] != 2.0 || d["node"] != 2.0 || !strings.Contains(fmt.Sprint(d["outcome"]), "holds no replica") {
		t.Errorf("instance data %v; want 2 moved off node 2", d)
	}
	// Still one instance: the finished one is not started again while the
	// dead node holds nothing.
	time.Sleep(500 * time.Millisecond)
	if n := len(f.instances("pleiades.rereplicate")); n != 1 {
		t.Errorf("%d re-replication instances; want 1", n)
	}
}

// TestReReplicationForgottenNode: a node the descriptors name that gossip
// does not list at all (its gossipd restarted after the node died) is
// replaced once it has been missing for the timeout, not before.
func TestReReplicationForgottenNode(t *testing.T) {
	f := newLCFixture(t, 4, 1, newMembership(1, 2, 3, 4), func(c *workflowd.Config) { c.DeadNodeTimeout = 2 * time.Second })
	before := f.layout()
	f.mem.forget(2)
	time.Sleep(time.Second)
	if got := f.layout(); got != before {
		t.Errorf("layout %s one second after node 2 went missing; want %s until the timeout", got, before)
	}
	eventually.NoError(t, 20*time.Second, "node 2's replicas replaced", func() error {
		if got, want := f.layout(), "2:1,3,4 3:1,3,4"; got != want {
			return fmt.Errorf("layout %s; want %s", got, want)
		}
		return nil
	})
	if n := len(f.instances("pleiades.rereplicate")); n != 1 {
		t.Errorf("%d re-replication instances; want 1", n)
	}
}

// TestReReplicationNodeBack: a node dead for less than the timeout makes
// no change.
func TestReReplicationNodeBack(t *testing.T) {
	f := newLCFixture(t, 4, 1, newMembership(1, 2, 3, 4), func(c *workflowd.Config) { c.DeadNodeTimeout = 2 * time.Second })
	before := f.layout()
	f.mem.set(2, gossippb.MemberState_MEMBER_STATE_DEAD)
	time.Sleep(300 * time.Millisecond)
	f.mem.set(2, gossippb.MemberState_MEMBER_STATE_ALIVE)
	time.Sleep(2500 * time.Millisecond) // past the timeout, had the node stayed dead
	if got := f.layout(); got != before {
		t.Errorf("layout %s after node 2 came back; want %s", got, before)
	}
	if n := len(f.instances("pleiades.rereplicate")); n != 0 {
		t.Errorf("%d re-replication instances; want none", n)
	}
}

// TestReReplicationNoCandidate: three nodes, one dead: the instance
// waits, saying why, and changes nothing; a fourth node joining lets it
// finish.
func TestReReplicationNoCandidate(t *testing.T) {
	f := newLCFixture(t, 4, 1, newMembership(1, 2, 3))
	before := f.layout()
	f.mem.set(3, gossippb.MemberState_MEMBER_STATE_DEAD)
	var id string
	eventually.NoError(t, 10*time.Second, "instance waiting for a candidate", func() error {
		list := f.instances("pleiades.rereplicate")
		if len(list) != 1 {
			return fmt.Errorf("%d instances", len(list))
		}
		id = list[0].GetId()
		in, err := f.wfs[0].Get(t.Context(), id)
		if err != nil {
			return err
		}
		if w := fmt.Sprint(instanceData(t, in)["waiting"]); !strings.Contains(w, "no live node can take node 3's replica") {
			return fmt.Errorf("status %v, waiting %q", in.GetStatus(), w)
		}
		if in.GetStatus() != workflowpb.Status_STATUS_RUNNING {
			return fmt.Errorf("status %v", in.GetStatus())
		}
		return nil
	})
	if got := f.layout(); got != before {
		t.Errorf("layout %s while no node can take replicas; want %s", got, before)
	}
	f.mem.set(4, gossippb.MemberState_MEMBER_STATE_ALIVE)
	eventually.NoError(t, 10*time.Second, "replaced on node 4", func() error {
		if got, want := f.layout(), "2:1,2,4 3:1,2,4"; got != want {
			return fmt.Errorf("layout %s; want %s", got, want)
		}
		in, err := f.wfs[0].Get(t.Context(), id)
		if err != nil || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			return fmt.Errorf("%v, %v", in.GetStatus(), err)
		}
		return nil
	})
}

// TestDecommission: bad requests are refused with nothing changed; a
// decommission moves every replica off the node, marks it, and a second
// call returns the same instance; then decommissioning another node
// (which would leave two live nodes for three replicas) is refused.
func TestDecommission(t *testing.T) {
	f := newLCFixture(t, 4, 1, newMembership(1, 2, 3, 4))
	ctx := t.Context()
	before := f.layout()
	for _, tc := range []struct {
		node uint64
		code error
		msg  string
	}{
		{0, bus.ErrInvalidArgument, "node id 0"},
		{9, bus.ErrNotFound, "node 9 is not a member of the cluster (members: 1, 2, 3, 4)"},
	} {
		if _, err := f.wfs[0].Decommission(ctx, tc.node); !errors.Is(err, tc.code) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Decommission(%d) = %v; want %v with %q", tc.node, err, tc.code, tc.msg)
		}
	}
	if _, err := f.wfs[0].Start(ctx, &workflowpb.StartRequest{Definition: "pleiades.decommission", Data: []byte(`{"node":1}`)}); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("Start of pleiades.decommission = %v; want refused", err)
	}
	if got := f.layout(); got != before || len(f.instances("")) != 0 {
		t.Fatalf("layout %s, %d instances after refused requests; want %s, none", got, len(f.instances("")), before)
	}

	resp, err := f.wfs[0].Decommission(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 20*time.Second, "node 1 decommissioned", func() error {
		in, err := f.wfs[0].Get(ctx, resp.GetInstanceId())
		if err != nil || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			return fmt.Errorf("%v %q, %v", in.GetStatus(), in.GetError(), err)
		}
		return nil
	})
	if got, want := f.layout(), "2:2,3,4 3:2,3,4"; got != want {
		t.Errorf("layout %s after decommissioning node 1; want %s", got, want)
	}
	nodes, err := f.wfs[0].Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		wantState, wantReplicas := "", uint32(2)
		if n.GetNodeId() == 1 {
			wantState, wantReplicas = "decommissioned", 0
		}
		if n.GetLifecycle() != wantState || n.GetReplicas() != wantReplicas || n.GetMembership() != "alive" {
			t.Errorf("node %d: %s, %d replicas, %s; want %q with %d, alive", n.GetNodeId(), n.GetLifecycle(), n.GetReplicas(), n.GetMembership(), wantState, wantReplicas)
		}
	}
	again, err := f.wfs[0].Decommission(ctx, 1)
	if err != nil || !again.GetExisting() || again.GetInstanceId() != resp.GetInstanceId() {
		t.Errorf("second Decommission(1) = %v, %v; want the first instance, existing", again, err)
	}
	before = f.layout()
	if _, err := f.wfs[0].Decommission(ctx, 2); !errors.Is(err, bus.ErrFailedPrecondition) || !strings.Contains(err.Error(), "would leave 2 live nodes (3, 4) for ranges of 3 replicas") {
		t.Errorf("Decommission(2) = %v; want refused: too few nodes left", err)
	}
	if got := f.layout(); got != before || len(f.instances("pleiades.decommission")) != 1 {
		t.Errorf("layout %s, %d decommissions after the refusal; want %s, 1", got, len(f.instances("pleiades.decommission")), before)
	}
}

// TestRebalance: ranges on nodes 1-3 of four (2, 2, 2, 0 replicas); with
// rebalancing on and a threshold of 1, one replica moves to node 4, and
// no further one once the counts differ by 1 at most. Off (the default),
// nothing moves.
func TestRebalance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		want     string
		moves    int
	}{
		{"off", 0, "2:1,2,3 3:1,2,3", 0},
		{"on", 100 * time.Millisecond, "2:1,2,4 3:1,2,3", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLCFixture(t, 4, 2, newMembership(1, 2, 3, 4), func(c *workflowd.Config) {
				c.RebalanceInterval, c.RebalanceThreshold = tc.interval, 1
			})
			eventually.NoError(t, 10*time.Second, "layout", func() error {
				if got := f.layout(); got != tc.want {
					return fmt.Errorf("layout %s; want %s", got, tc.want)
				}
				return nil
			})
			time.Sleep(time.Second) // ten rebalancing rounds
			if got := f.layout(); got != tc.want {
				t.Errorf("layout %s after a second; want %s", got, tc.want)
			}
			list := f.instances("pleiades.rebalance")
			if len(list) != tc.moves {
				t.Fatalf("%d rebalancing instances; want %d", len(list), tc.moves)
			}
			for _, s := range list {
				in, err := f.wfs[0].Get(t.Context(), s.GetId())
				if err != nil || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED || !strings.Contains(string(in.GetData()), `"outcome":"moved"`) {
					t.Errorf("instance %v (%v): %s", in.GetStatus(), err, in.GetData())
				}
			}
		})
	}
}

// TestReReplicationMoveConcurrency: the re-replication moves up to
// MoveConcurrency ranges per step: one at a time, each range takes a
// step of its own; with room for all, one step moves them all (and the
// next finds nothing left). Each range's replica goes to a different
// node when it can (the targets of one step count each other).
func TestReReplicationMoveConcurrency(t *testing.T) {
	for _, conc := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency=%d", conc), func(t *testing.T) {
			f := newLCFixture(t, 6, 1, newMembership(1, 2, 3, 4, 5, 6), func(c *workflowd.Config) { c.MoveConcurrency = conc })
			held := 0
			for _, d := range f.allDescs() {
				if slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == 2 }) {
					held++
				}
			}
			f.mem.set(2, gossippb.MemberState_MEMBER_STATE_DEAD)
			var in *workflowpb.Instance
			eventually.NoError(t, 20*time.Second, "re-replication done", func() error {
				list := f.instances("pleiades.rereplicate")
				if len(list) != 1 {
					return fmt.Errorf("%d instances", len(list))
				}
				var err error
				if in, err = f.wfs[0].Get(t.Context(), list[0].GetId()); err != nil || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
					return fmt.Errorf("%v, %v", in.GetStatus(), err)
				}
				return nil
			})
			steps := 0
			for _, h := range in.GetHistory() {
				if h.GetStep() == "move one" && h.GetOutcome() == "completed" {
					steps++
				}
			}
			want := held + 1
			if conc >= held {
				want = 2
			}
			if steps != want {
				t.Errorf("%d move steps for %d ranges; want %d (history %v)", steps, held, want, in.GetHistory())
			}
			targets := map[uint64]bool{}
			for _, d := range f.allDescs() {
				for _, r := range d.GetReplicas() {
					if r.GetNodeId() == 2 {
						t.Errorf("range %d still has a replica on node 2", d.GetRangeId())
					}
					if r.GetNodeId() > 3 {
						targets[r.GetNodeId()] = true
					}
				}
			}
			if len(targets) != held {
				t.Errorf("replicas moved to nodes %v; want %d different nodes", targets, held)
			}
		})
	}
}

// TestReReplicationResumedElsewhere: the workflowd running the
// re-replication stops half way (replica changes are slowed down); the
// other takes the instance over and finishes it, every range ending on
// three replicas without node 2.
func TestReReplicationResumedElsewhere(t *testing.T) {
	f := newLCFixture(t, 5, 2, newMembership(1, 2, 3, 4, 5), oneMoveAtATime)
	f.fc.Delay(kvclient.MethodChangeReplicas, 400*time.Millisecond)
	f.mem.set(2, gossippb.MemberState_MEMBER_STATE_DEAD)
	var in *workflowpb.Instance
	eventually.NoError(t, 10*time.Second, "re-replication under way", func() error {
		list := f.instances("pleiades.rereplicate")
		if len(list) != 1 {
			return fmt.Errorf("%d instances", len(list))
		}
		var err error
		if in, err = f.wfs[0].Get(t.Context(), list[0].GetId()); err != nil {
			return err
		}
		if in.GetOwner() == 0 || in.GetStepsCompleted() < 1 {
			return fmt.Errorf("owner %d, %d steps", in.GetOwner(), in.GetStepsCompleted())
		}
		return nil
	})
	owner := in.GetOwner()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srvs[owner].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped the owner (node %d) after %d steps", owner, in.GetStepsCompleted())
	other := f.wfs[0]
	if f.byNode[owner] == f.wfs[0] {
		other = f.wfs[1]
	}
	eventually.NoError(t, 20*time.Second, "finished by the other workflowd", func() error {
		list, err := other.List(t.Context(), &workflowpb.ListRequest{Definition: "pleiades.rereplicate"})
		if err != nil || len(list.GetInstances()) != 1 {
			return fmt.Errorf("%v, %v", list, err)
		}
		for _, d := range f.descs() {
			for _, r := range d.GetReplicas() {
				if r.GetNodeId() == 2 || len(d.GetReplicas()) != 3 {
					return fmt.Errorf("layout %s", f.layout())
				}
			}
		}
		cur, err := other.Get(t.Context(), in.GetId())
		if err != nil || cur.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			return fmt.Errorf("%v, %v", cur.GetStatus(), err)
		}
		if last := cur.GetHistory()[len(cur.GetHistory())-1]; last.GetEpoch() < 2 {
			return fmt.Errorf("last step under epoch %d; want a takeover", last.GetEpoch())
		}
		return nil
	})
}

// TestDecommissionCancel: a decommission cancelled half way is
// terminated, the node takes replicas again (Nodes shows no lifecycle
// state), a second cancel is refused, and a new decommission starts a new
// instance that finishes the job; cancelling that finished one puts the
// node back in service.
func TestDecommissionCancel(t *testing.T) {
	f := newLCFixture(t, 5, 1, newMembership(1, 2, 3, 4, 5), oneMoveAtATime)
	ctx := t.Context()
	if _, err := f.wfs[0].CancelDecommission(ctx, 1); !errors.Is(err, bus.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not being decommissioned") {
		t.Errorf("cancel with no decommission = %v; want refused", err)
	}
	f.fc.Delay(kvclient.MethodChangeReplicas, 500*time.Millisecond)
	first, err := f.wfs[0].Decommission(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, "first replica moved", func() error {
		in, err := f.wfs[0].Get(ctx, first.GetInstanceId())
		if err != nil || instanceData(t, in)["moved"] != 1.0 {
			return fmt.Errorf("%v: %s", err, in.GetData())
		}
		return nil
	})
	// An application may not stop it.
	app := clientRoleClient(t, f.wfs[0].Addr())
	for _, op := range []func(context.Context, string) (workflowpb.Status, error){app.Suspend,
		func(ctx context.Context, id string) (workflowpb.Status, error) { return app.Terminate(ctx, id, "") }} {
		if _, err := op(ctx, first.GetInstanceId()); !errors.Is(err, bus.ErrPermissionDenied) {
			t.Errorf("control of the decommission with a client certificate = %v; want permission denied", err)
		}
	}
	if id, err := f.wfs[0].CancelDecommission(ctx, 1); err != nil || id != first.GetInstanceId() {
		t.Fatalf("cancel = %q, %v; want %s", id, err, first.GetInstanceId())
	}
	f.wait(first.GetInstanceId(), workflowpb.Status_STATUS_TERMINATED)
	nodes, err := f.wfs[0].Nodes(ctx)
	if err != nil || nodes[0].GetNodeId() != 1 || nodes[0].GetLifecycle() != "" || nodes[0].GetReplicas() != 1 {
		t.Errorf("nodes after the cancel: %v, %v; want node 1 with 1 replica and no lifecycle state", nodes, err)
	}
	if _, err := f.wfs[0].CancelDecommission(ctx, 1); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("second cancel = %v; want refused", err)
	}
	second, err := f.wfs[0].Decommission(ctx, 1)
	if err != nil || second.GetExisting() || second.GetInstanceId() == first.GetInstanceId() {
		t.Fatalf("decommission after the cancel = %v, %v; want a new instance", second, err)
	}
	f.wait(second.GetInstanceId(), workflowpb.Status_STATUS_COMPLETED)
	for _, d := range f.descs() {
		if replicaOn := slices.ContainsFunc(d.GetReplicas(), func(r *kvpb.ReplicaDescriptor) bool { return r.GetNodeId() == 1 }); replicaOn || len(d.GetReplicas()) != 3 {
			t.Errorf("range %d: %v after the decommission", d.GetRangeId(), d.GetReplicas())
		}
	}
	// Cancelling a finished decommission puts the node back in service;
	// a third decommission is a new instance again.
	if id, err := f.wfs[0].CancelDecommission(ctx, 1); err != nil || id != second.GetInstanceId() {
		t.Fatalf("cancel of a finished decommission = %q, %v; want %s", id, err, second.GetInstanceId())
	}
	nodes, err = f.wfs[0].Nodes(ctx)
	if err != nil || nodes[0].GetNodeId() != 1 || nodes[0].GetLifecycle() != "" {
		t.Errorf("nodes after the node came back: %v, %v; want node 1 with no lifecycle state", nodes, err)
	}
	if _, err := f.wfs[0].CancelDecommission(ctx, 1); !errors.Is(err, bus.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not being decommissioned") {
		t.Errorf("cancel of a node back in service = %v; want refused", err)
	}
	third, err := f.wfs[0].Decommission(ctx, 1)
	if err != nil || third.GetExisting() || third.GetInstanceId() == second.GetInstanceId() {
		t.Fatalf("decommission of the node back in service = %v, %v; want a new instance", third, err)
	}
	f.wait(third.GetInstanceId(), workflowpb.Status_STATUS_COMPLETED)
}

// wait polls instance id until it has status want.
func (f *lcFixture) wait(id string, want workflowpb.Status) {
	f.t.Helper()
	eventually.NoError(f.t, 20*time.Second, "instance "+id+" "+want.String(), func() error {
		in, err := f.wfs[0].Get(f.t.Context(), id)
		if err != nil || in.GetStatus() != want {
			return fmt.Errorf("%v %q, %v", in.GetStatus(), in.GetError(), err)
		}
		return nil
	})
}

// clientRoleClient returns a workflow client calling addr with a client
// (application) certificate.
func clientRoleClient(t *testing.T, addr string) *workflowclient.Client {
	t.Helper()
	tc, err := daemontest.CA(t).Issue("app", tlsutil.ClientRole())
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	return workflowclient.New(b, addr)
}
