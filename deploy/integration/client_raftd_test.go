package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// TestAgainstRaftd runs the client against three real raftd servers in
// this process (in-memory engines): init, every operation, and writes
// that resume after the leader of their range stops.
func TestAgainstRaftd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node raftd cluster")
	}
	rc := StartRaftd(t, 3)
	tc, err := daemontest.CA(t).Config("client")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kvclient.New(t.Context(), kvclient.Config{Addrs: rc.Addrs(), TLS: tc, AttemptTimeout: time.Second,
		Logger: daemontest.Logger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Peers may still be exchanging node ids: Init is retried on
	// Unavailable by the client.
	res, err := c.Init(ctx, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("m")}})
	if err != nil || res.AlreadyInitialized || len(res.Descriptors) != 3 {
		t.Fatalf("Init = %+v, %v; want meta + 2 new ranges", res, err)
	}
	if again, err := c.Init(ctx, kvclient.InitOptions{InitialRanges: 4}); err != nil || !again.AlreadyInitialized {
		t.Fatalf("second Init = %+v, %v; want already initialized", again, err)
	}

	var keys []string
	for i := range 20 {
		k := fmt.Sprintf("%c%02d", 'a'+i%2*20, i) // "a.." below the split, "u.." above
		keys = append(keys, k)
		if _, err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
	}
	ts, err := c.Put(ctx, []byte("a00"), []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	v, found, err := c.Get(ctx, []byte("a00"))
	if err != nil || !found || string(v.Value) != "new" || v.Timestamp != ts {
		t.Errorf("Get(a00) = %q at %v, %v, %v; want new at %v", v.Value, v.Timestamp, found, err, ts)
	}
	kvs, err := c.Scan(ctx, nil, nil, kvclient.ScanOptions{PageSize: 3}).Collect()
	if err != nil || len(kvs) != 20 {
		t.Fatalf("Scan = %d entries, %v; want 20", len(kvs), err)
	}
	for i := 1; i < len(kvs); i++ {
		if bytes.Compare(kvs[i-1].Key, kvs[i].Key) >= 0 {
			t.Fatalf("Scan out of order at %d: %q then %q", i, kvs[i-1].Key, kvs[i].Key)
		}
	}
	rev, err := c.Scan(ctx, []byte("a05"), []byte("u10"), kvclient.ScanOptions{Reverse: true, Limit: 6, PageSize: 4}).Collect()
	if err != nil || len(rev) != 6 || string(rev[0].Key) != "u09" || string(rev[5].Key) != "a18" {
		t.Errorf("reverse Scan = %v, %v", rev, err)
	}
	cas, err := c.CompareAndSwap(ctx, kvclient.CAS{Key: []byte("a00"), Expected: []byte("old"), NewValue: []byte("x")})
	if err != nil || cas.Succeeded || string(cas.Current.Value) != "new" {
		t.Errorf("failing CAS = %+v, %v", cas, err)
	}
	br, err := c.Batch(ctx, kvclient.NewBatch().Put([]byte("b1"), []byte("1")).Delete([]byte("a02")).
		CompareAndSwap(kvclient.CAS{Key: []byte("a00"), Expected: []byte("new"), NewValue: []byte("newer")}))
	if err != nil || !br.Succeeded {
		t.Errorf("Batch = %+v, %v", br, err)
	}
	if _, err := c.Batch(ctx, kvclient.NewBatch().Put([]byte("b"), nil).Put([]byte("z"), nil)); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("Batch across ranges: %v; want InvalidArgument", err)
	}
	if n, err := c.DeleteRange(ctx, []byte("u"), nil); err != nil || n != 10 {
		t.Errorf("DeleteRange(u..) = %d, %v; want 10", n, err)
	}
	if _, found, err := c.Get(ctx, []byte("u01")); err != nil || found {
		t.Errorf("Get(u01) found=%v err=%v; want deleted", found, err)
	}
	// A stale read is served by whichever node gets it, maybe behind.
	if _, _, err := c.Get(ctx, []byte("a04"), kvclient.WithConsistency(kvclient.Stale)); err != nil {
		t.Errorf("stale Get(a04): %v", err)
	}
	if _, err := c.Put(ctx, []byte("\x00sys"), nil); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("Put of a system key: %v; want InvalidArgument", err)
	}

	// Stop the node leading the range of "a00"; writes resume through the
	// client's retries once the others elect a leader.
	rs, err := c.Ranges(ctx, rc.Addrs()[0])
	if err != nil || len(rs.GetReplicas()) == 0 {
		t.Fatalf("Ranges = %v, %v", rs, err)
	}
	var leaderNode uint64
	for _, r := range rs.GetReplicas() {
		if bytes.Equal(r.GetDescriptor_().GetStartKey(), []byte{1}) || (len(r.GetDescriptor_().GetStartKey()) > 0 && r.GetDescriptor_().GetStartKey()[0] == 1) {
			leaderNode = r.GetLeaderNodeId()
		}
	}
	victim := -1
	for i, a := range rc.Addrs() {
		if st, err := c.Ranges(ctx, a); err == nil && st.GetNodeId() == leaderNode {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("no node is the leader (%d) of the first user range", leaderNode)
	}
	rc.Stop(t, victim)
	for i := range 5 {
		k := fmt.Sprintf("after%d", i)
		if _, err := c.Put(ctx, []byte(k), []byte("v")); err != nil {
			t.Fatalf("Put(%s) after stopping node %d: %v", k, victim, err)
		}
		if v, found, err := c.Get(ctx, []byte(k)); err != nil || !found || string(v.Value) != "v" {
			t.Fatalf("Get(%s) after stopping node %d = %q %v %v", k, victim, v.Value, found, err)
		}
	}
}
