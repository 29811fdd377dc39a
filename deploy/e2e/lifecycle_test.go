package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// lifecycleEnv shortens workflowd's lifecycle timers for the processes
// the test starts (children inherit the environment).
func lifecycleEnv(t *testing.T) {
	t.Setenv("PLEIADES_DEAD_NODE_TIMEOUT", "2s")
	t.Setenv("PLEIADES_LIFECYCLE_RETRY", "500ms")
}

// workflowClient opens a bus with the certificates in certs and returns
// a client of the workflowd at addr.
func workflowClient(t *testing.T, certs, addr string) *workflowclient.Client {
	t.Helper()
	tc, err := tlsutil.Load(certs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
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

// replicated checks that every range has want voters, none on a node of
// gone, and no learner or joint configuration left.
func replicated(ctx context.Context, cl *kvclient.Client, want int, gone ...uint64) ([]*kvpb.RangeDescriptor, error) {
	resp, err := cl.Descriptors(ctx, nil, nil)
	if err != nil {
		return nil, err
	}
	for _, d := range resp.GetDescriptors() {
		voters := 0
		for _, r := range d.GetReplicas() {
			if slices.Contains(gone, r.GetNodeId()) {
				return nil, fmt.Errorf("range %d still has a replica on node %d: %v", d.GetRangeId(), r.GetNodeId(), d.GetReplicas())
			}
			if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
				return nil, fmt.Errorf("range %d: replica on node %d is %v", d.GetRangeId(), r.GetNodeId(), r.GetType())
			}
			voters++
		}
		if voters != want {
			return nil, fmt.Errorf("range %d has %d voters; want %d", d.GetRangeId(), voters, want)
		}
	}
	return resp.GetDescriptors(), nil
}

// replicaCounts counts the replicas descriptors name per node.
func replicaCounts(descs []*kvpb.RangeDescriptor) map[uint64]int {
	out := map[uint64]int{}
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			out[r.GetNodeId()]++
		}
	}
	return out
}

// TestReReplicationHostKilled: four hosts (`pleiades up` each), ranges of
// three replicas; writers run while the host holding the most replicas is
// killed with SIGKILL (its supervisor, which takes every daemon of the
// host with it). Without an operator, once gossip has declared it dead
// for workflowd's --dead-node-timeout, every range ends with three voters
// on the live hosts; every acknowledged write reads back, and the client
// keeps writing. One re-replication instance did it.
func TestReReplicationHostKilled(t *testing.T) {
	lifecycleEnv(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if _, err := pleiades(t, "cert", "create-ca", "--certs-dir", ca); err != nil {
		t.Fatal(err)
	}
	hosts := make([]*hostNode, 4)
	for i := range hosts {
		n := &hostNode{dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), offset: 8100 + 10*i}
		n.certs = filepath.Join(n.dir, "certs")
		if _, err := pleiades(t, "cert", "create-node", "--ca-dir", ca, "--out-dir", n.certs, "--name", fmt.Sprintf("host%d", i+1), "--hosts", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		hosts[i] = n
	}
	done := make(chan struct{})
	for _, n := range hosts {
		go func() {
			defer func() { done <- struct{}{} }()
			var seeds []string
			for _, o := range hosts {
				if o != n {
					seeds = append(seeds, o.gossip())
				}
			}
			n.up(t, seeds)
		}()
	}
	for range hosts {
		<-done
	}
	if t.Failed() {
		t.FailNow()
	}
	var addrs []string
	for _, n := range hosts {
		addrs = append(addrs, n.raft())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cl, err := kvclient.New(ctx, kvclient.Config{Addrs: addrs, CertsDir: hosts[0].certs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close(context.Background()) }()
	mustInit(t, ctx, cl, kvclient.InitOptions{InitialRanges: 4, ReplicationFactor: 3, MinNodes: 4})
	ids := make([]uint64, len(hosts))
	for i, n := range hosts {
		r, err := cl.Ranges(ctx, n.raft())
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.GetNodeId()
	}
	descs, err := replicated(ctx, cl, 3)
	if err != nil {
		t.Fatal(err)
	}
	counts := replicaCounts(descs)
	victim := 0
	for i := range hosts {
		if counts[ids[i]] > counts[ids[victim]] {
			victim = i
		}
	}
	t.Logf("%d ranges; replicas per node %v; killing host %d (node %d, %d replicas)", len(descs), counts, victim+1, ids[victim], counts[ids[victim]])

	ws := startWriters(cl, 4, "rerepl", 30*time.Second)
	eventually.NoError(t, 30*time.Second, "writes before the kill", func() error {
		if a, _ := ws.log.counts(); a < 50 {
			return fmt.Errorf("%d acknowledged", a)
		}
		return nil
	})
	killed := time.Now()
	if err := hosts[victim].proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, hosts[victim].proc, 10*time.Second)
	eventually.NoError(t, 10*time.Second, "the killed host's daemons gone", func() error {
		if err := readyz("127.0.0.1:" + hosts[victim].port(7502)); err == nil {
			return fmt.Errorf("host %d's raftd still answers", victim+1)
		}
		return nil
	})

	live := hosts[(victim+1)%len(hosts)]
	wc := workflowClient(t, live.certs, "127.0.0.1:"+live.port(7405))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		list, err := wc.List(context.Background(), &workflowpb.ListRequest{})
		t.Logf("workflow instances: %v (%v)", list, err)
		for _, s := range list.GetInstances() {
			in, err := wc.Get(context.Background(), s.GetId())
			t.Logf("instance %s: %v (%v)", s.GetId(), in, err)
		}
		for i, n := range hosts {
			for _, d := range []string{"workflowd", "raftd"} {
				b, _ := os.ReadFile(filepath.Join(n.dir, "logs", d+".log"))
				lines := strings.Split(string(b), "\n")
				var keep []string
				for _, l := range lines {
					if !strings.Contains(l, "level=DEBUG") {
						keep = append(keep, l)
					}
				}
				t.Logf("host %d %s log (last 60 lines):\n%s", i+1, d, strings.Join(keep[max(0, len(keep)-60):], "\n"))
			}
		}
	})
	eventually.NoError(t, 120*time.Second, "every range on three voters of live nodes", func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := replicated(cctx, cl, 3, ids[victim])
		return err
	})
	t.Logf("re-replicated %v after the kill (gossip's detection + 2s dead-node timeout + the moves)", time.Since(killed).Round(time.Millisecond))
	mark := time.Now()
	eventually.NoError(t, 30*time.Second, "writes go on after the re-replication", func() error {
		if _, ok := ws.log.firstAckStartedAfter(mark); !ok {
			return fmt.Errorf("no write acknowledged since")
		}
		return nil
	})
	ws.halt()
	acked, unknown := maps.Clone(ws.log.acked), maps.Clone(ws.log.unknown)
	a, errs := ws.log.counts()
	t.Logf("%d writes acknowledged, %d failed (outcome unknown)", a, errs)
	verify(t, cl, "rerepl", acked, unknown, nil)

	list, err := wc.List(ctx, &workflowpb.ListRequest{Definition: "pleiades.rereplicate"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetInstances()) != 1 {
		t.Fatalf("%d re-replication instances; want 1: %v", len(list.GetInstances()), list.GetInstances())
	}
	eventually.NoError(t, 30*time.Second, "re-replication instance completed", func() error {
		in, err := wc.Get(ctx, list.GetInstances()[0].GetId())
		if err != nil {
			return err
		}
		if in.GetStatus() != workflowpb.Status_STATUS_COMPLETED || !strings.Contains(string(in.GetData()), `"node":`+strconv.FormatUint(ids[victim], 10)) {
			return fmt.Errorf("%v: %s", in.GetStatus(), in.GetData())
		}
		t.Logf("instance %s: %s", in.GetId(), in.GetData())
		return nil
	})
}

// TestDecommission: a four-node `pleiades dev` cluster; decommissioning
// an unknown node is refused; `pleiades node decommission --wait` of the
// node leading a range (with the admin certificate dev issues) moves every
// replica off it while writers run, marks it decommissioned and shows in
// `workflows list`; decommissioning a second node, which would leave two
// live nodes for ranges of three replicas, is refused and changes nothing.
// Every acknowledged write reads back.
func TestDecommission(t *testing.T) {
	lifecycleEnv(t)
	c := startDev(t, t.TempDir(), 4, 8300)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cl := c.client(t, 0)
	mustInit(t, ctx, cl, kvclient.InitOptions{InitialRanges: 4, ReplicationFactor: 3, MinNodes: 4})
	certs := filepath.Join(c.dir, "node1", "certs")
	wf := fmt.Sprintf("127.0.0.1:%d", 7405+c.offset)
	cli := func(args ...string) (string, error) {
		return pleiades(t, append([]string{"node", args[0], "--addr", wf, "--certs-dir", certs}, args[1:]...)...)
	}

	if out, err := cli("decommission", "999999999999"); err == nil || !strings.Contains(err.Error(), "node 999999999999 is not a member of the cluster") {
		t.Errorf("decommission of an unknown node: %q, %v; want refused", out, err)
	}
	if _, err := replicated(ctx, cl, 3); err != nil {
		t.Fatal(err)
	}
	var victim int
	var rangeID uint64
	eventually.NoError(t, 30*time.Second, "a leader of the range of m", func() (err error) {
		victim, rangeID, err = c.leaderOf(cl, []byte("m"))
		return err
	})
	vid := c.nodes[victim-1].NodeID
	t.Logf("decommissioning node %d (%d), leader of range %d", victim, vid, rangeID)

	ws := startWriters(cl, 4, "decom", 30*time.Second)
	eventually.NoError(t, 30*time.Second, "writes before the decommission", func() error {
		if a, _ := ws.log.counts(); a < 50 {
			return fmt.Errorf("%d acknowledged", a)
		}
		return nil
	})
	began := time.Now()
	out, err := pleiadesWithin(t, 100*time.Second, "node", "decommission", "--addr", wf, "--certs-dir", certs, "--wait", "--timeout", "90s", strconv.FormatUint(vid, 10))
	if err != nil {
		t.Fatalf("decommission: %v", err)
	}
	t.Logf("%s(took %v)", out, time.Since(began).Round(time.Millisecond))
	if !strings.Contains(out, fmt.Sprintf("decommission of node %d started", vid)) || !strings.Contains(out, "(completed)") {
		t.Errorf("decommission output %q", out)
	}
	descs, err := replicated(ctx, cl, 3, vid)
	if err != nil {
		t.Fatalf("after the decommission: %v", err)
	}
	mark := time.Now()
	eventually.NoError(t, 30*time.Second, "writes go on after the decommission", func() error {
		if _, ok := ws.log.firstAckStartedAfter(mark); !ok {
			return fmt.Errorf("no write acknowledged since")
		}
		return nil
	})
	ws.halt()
	verify(t, cl, "decom", maps.Clone(ws.log.acked), maps.Clone(ws.log.unknown), nil)

	list, err := cli("list", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"node_id": "%d"`, vid); !strings.Contains(list, want) || !strings.Contains(list, `"lifecycle": "decommissioned"`) {
		t.Errorf("node list lacks %s decommissioned:\n%s", want, list)
	}
	wfs, err := pleiades(t, "workflows", "list", "--addr", wf, "--certs-dir", certs, "--definition", "pleiades.decommission")
	if err != nil || !strings.Contains(wfs, "completed") {
		t.Errorf("workflows list --definition pleiades.decommission: %v\n%s", err, wfs)
	}

	other := c.nodes[victim%len(c.nodes)].NodeID
	if out, err := cli("decommission", strconv.FormatUint(other, 10)); err == nil || !strings.Contains(err.Error(), "would leave 2 live nodes") {
		t.Errorf("decommission of a second node: %q, %v; want refused", out, err)
	}
	after, err := replicated(ctx, cl, 3, vid)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := replicaCounts(descs), replicaCounts(after); !maps.Equal(a, b) {
		t.Errorf("replicas %v after the refused decommission; were %v", b, a)
	}
}
