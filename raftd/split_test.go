package raftd_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// kvClient opens a Go client with default retries on the cluster.
func (c *busCluster) kvClient(t *testing.T) *kvclient.Client {
	t.Helper()
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, rt := range c.rts {
		addrs = append(addrs, rt.Bus.Addr().String())
	}
	cl, err := kvclient.New(t.Context(), kvclient.Config{Addrs: addrs, TLS: tc, Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cl.Close(ctx)
	})
	return cl
}

func (c *busCluster) init(t *testing.T, ctx context.Context, req *kvpb.InitRequest) {
	t.Helper()
	for {
		err := c.cli.Bus.Call(ctx, c.rts[0].Bus.Addr().String(), wire.ProtoKV, raftd.MethodInit, req, &kvpb.InitResponse{})
		if err == nil {
			return
		}
		if !errors.Is(err, bus.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("Init: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClientFollowsSplits writes and reads through the Go client (default
// retries, a range cache) while ranges split under it, a range's replicas
// are replaced, added and removed, and leaderships move, and checks the
// history with porcupine. A client whose cache holds
// a range from before a split is answered RangeKeyMismatch with the
// current descriptors and goes on from them.
func TestClientFollowsSplits(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	c := newBusCluster(t, 4)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c.init(t, ctx, &kvpb.InitRequest{ReplicationFactor: 3})
	admin := c.kvClient(t)
	if _, err := admin.Put(ctx, []byte("warm"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a1", "a7", "m1", "m7", "t1", "z1"}
	h := kvclienttest.NewHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 4 {
		cl := c.kvClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 11))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				op := kvclienttest.Op{Kind: kvclienttest.OpGet, Key: keys[rng.IntN(len(keys))]}
				if rng.IntN(2) == 0 {
					op.Kind, op.Value = kvclienttest.OpPut, fmt.Sprintf("c%d-%d", client, seq)
				}
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				call := time.Now()
				var out kvclienttest.Outcome
				var err error
				if op.Kind == kvclienttest.OpPut {
					_, err = cl.Put(actx, []byte(op.Key), []byte(op.Value))
				} else {
					var v kvclient.Value
					v, out.Found, err = cl.Get(actx, []byte(op.Key))
					out.Value = string(v.Value)
				}
				ret := time.Now()
				acancel()
				if err != nil {
					if op.Kind == kvclienttest.OpGet {
						continue
					}
					out.Unknown = true
				}
				h.Add(client, op, out, call, ret)
			}
		}()
	}
	var rights []*kvpb.RangeDescriptor
	for i, key := range []string{"m", "t", "a5", "m5", "z"} {
		time.Sleep(100 * time.Millisecond)
		_, right, err := admin.AdminSplit(ctx, []byte(key))
		if err != nil {
			t.Fatalf("split at %q: %v", key, err)
		}
		rights = append(rights, right)
		if i == 1 {
			// Move the new range to the node without a replica of it
			// (replacing one voter through a joint configuration), then
			// add a learner back and remove it.
			var spare, old uint64
			for _, rt := range c.rts {
				found := false
				for _, rd := range right.GetReplicas() {
					found = found || rd.GetNodeId() == rt.NodeID
				}
				if !found {
					spare = rt.NodeID
				}
			}
			old = right.GetReplicas()[1].GetNodeId()
			d, err := admin.ChangeReplicas(ctx, right.GetRangeId(), kvclient.ReplicaChange{Add: []uint64{spare}, Remove: []uint64{old}})
			if err != nil {
				t.Fatalf("replace node %d with %d in range %d: %v", old, spare, right.GetRangeId(), err)
			}
			if len(d.GetReplicas()) != 3 || d.GetGeneration() <= right.GetGeneration() {
				t.Fatalf("after the replacement: %v", d)
			}
			if d, err = admin.ChangeReplicas(ctx, right.GetRangeId(), kvclient.ReplicaChange{Add: []uint64{old}, Learners: true}); err != nil || len(d.GetReplicas()) != 4 {
				t.Fatalf("add a learner: %v, %v", d, err)
			}
			if d, err = admin.ChangeReplicas(ctx, right.GetRangeId(), kvclient.ReplicaChange{Remove: []uint64{old}}); err != nil || len(d.GetReplicas()) != 3 {
				t.Fatalf("remove the learner: %v, %v", d, err)
			}
			// Adding a replica on a node that does not exist is refused.
			if _, err := admin.ChangeReplicas(ctx, right.GetRangeId(), kvclient.ReplicaChange{Add: []uint64{12345}}); !errors.Is(err, bus.ErrInvalidArgument) {
				t.Errorf("add on an unknown node = %v; want InvalidArgument", err)
			}
		}
		if i == 2 {
			// Move the new range's leadership to another voter.
			to := right.GetReplicas()[len(right.GetReplicas())-1].GetNodeId()
			tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
			if err := admin.TransferLeader(tctx, right.GetRangeId(), to); err != nil {
				t.Errorf("transfer leader of range %d to node %d: %v", right.GetRangeId(), to, err)
			}
			tcancel()
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	// A split at an existing boundary (a retry) succeeds with the two
	// sides and changes nothing.
	if l, r, err := admin.AdminSplit(ctx, []byte("m")); err != nil || string(l.GetEndKey()) != "m" || string(r.GetStartKey()) != "m" {
		t.Errorf("split at a range start = %v, %v, %v; want its two sides", l, r, err)
	}
	descs, err := admin.Descriptors(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(descs.GetDescriptors()); n != 7 {
		t.Errorf("meta lists %d ranges after 5 splits of 2, want 7: %v", n, descs.GetDescriptors())
	}
	// A client whose cache predates a split is told the current range and
	// does not need a full reload.
	stale := c.kvClient(t)
	if _, err := stale.Descriptors(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, right, err := admin.AdminSplit(ctx, []byte("z5")); err != nil {
		t.Fatal(err)
	} else if _, err := stale.Put(sctx, []byte("z7"), []byte("after")); err != nil {
		t.Fatalf("put through a stale cache: %v", err)
	} else if v, ok, err := stale.Get(ctx, []byte("z7")); err != nil || !ok || string(v.Value) != "after" {
		t.Fatalf("get through a refreshed cache = %q %v %v", v.Value, ok, err)
	} else {
		rights = append(rights, right)
	}
	gets, puts, _, unknown := h.Counts()
	t.Logf("history: %d puts (%d of unknown outcome), %d gets; %d splits", puts, unknown, gets, len(rights))
	if gets < 50 || puts < 50 {
		t.Fatalf("history too small to mean anything: %d puts, %d gets", puts, gets)
	}
	switch res, bad := h.Check(30 * time.Second); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("linearizability check timed out (no violation found)")
	default:
		t.Fatalf("history is not linearizable (%s) on keys %v", res, bad)
	}
}
