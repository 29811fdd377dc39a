package raftd_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// faultEngine wraps an engine: the next fail writes fail, and while hold
// is set every write waits for it to close (signalling entered first).
type faultEngine struct {
	storage.Engine
	mu      sync.Mutex
	fail    int
	hold    chan struct{}
	entered chan struct{}
	// ignoreCtx makes a held write wait for hold even when its context
	// ends (a storage call that does not honour cancellation).
	ignoreCtx bool
}

func (e *faultEngine) Write(ctx context.Context, ops []storage.Op, sync bool) error {
	e.mu.Lock()
	fail, hold, ignoreCtx := e.fail > 0, e.hold, e.ignoreCtx
	if fail {
		e.fail--
	}
	e.mu.Unlock()
	if fail {
		return errors.New("injected write failure")
	}
	if hold != nil {
		select {
		case e.entered <- struct{}{}:
		default:
		}
		done := ctx.Done()
		if ignoreCtx {
			done = nil
		}
		select {
		case <-hold:
		case <-done:
			return ctx.Err()
		}
	}
	return e.Engine.Write(ctx, ops, sync)
}

// initCluster runs three raftds that adopt no layout in the background;
// each writes through a faultEngine. It returns the bus addresses and
// engines ordered by node id (lowest first: the Init coordinator).
func initCluster(t *testing.T, ctx context.Context) (addrs []string, fes []*faultEngine, cli *daemon.Runtime, srvs []*raftd.Server) {
	t.Helper()
	ca := daemontest.CA(t)
	free := freeAddrs(t, 3)
	type node struct {
		id   uint64
		addr string
		eng  *faultEngine
		srv  *raftd.Server
	}
	var nodes []node
	for i, a := range free {
		var peers []string
		for j, b := range free {
			if j != i {
				peers = append(peers, b)
			}
		}
		eng := &faultEngine{Engine: storage.NewMem(), entered: make(chan struct{}, 1)}
		rt, srv := startServerWith(t, ctx, ca, a, peers, eng, false)
		nodes = append(nodes, node{rt.NodeID, a, eng, srv})
	}
	// Every store open first: a test that makes a node's writes fail must
	// fail its Init's writes, not the open's (a node still opening answers
	// Unavailable, which the tests retry).
	for _, n := range nodes {
		select {
		case <-n.srv.Ready():
		case <-ctx.Done():
			t.Fatal("a node never opened its store")
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].id < nodes[j].id })
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
		fes = append(fes, n.eng)
		srvs = append(srvs, n.srv)
	}
	return addrs, fes, daemontest.NewRuntime(t, "client"), srvs
}

// initialized asks each node (Hello) whether it holds the layout.
func initialized(t *testing.T, ctx context.Context, cli *daemon.Runtime, addrs []string) []bool {
	t.Helper()
	var out []bool
	for _, a := range addrs {
		var h raftmsgpb.HelloResponse
		if err := cli.Bus.Call(ctx, a, wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{}, &h); err != nil {
			t.Fatalf("Hello %s: %v", a, err)
		}
		out = append(out, h.GetInitialized())
	}
	return out
}

// retryUnavailable retries f while it fails with Unavailable or NotLeader.
func retryUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !(errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkServes writes and reads a key through every node.
func checkServes(t *testing.T, ctx context.Context, cli *daemon.Runtime, addrs []string) {
	t.Helper()
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}, &kvpb.PutResponse{})
	}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for _, a := range addrs {
		var resp kvpb.GetResponse
		if err := retryUnavailable(ctx, func() error {
			return cli.Bus.Call(ctx, a, wire.ProtoKV, "Get", &kvpb.GetRequest{Key: []byte("k")}, &resp)
		}); err != nil || string(resp.GetValue().GetValue()) != "v" {
			t.Errorf("Get on %s = %v, %v; want v", a, &resp, err)
		}
	}
}

// TestInitCompletesPartialBootstrap: the bootstrap of one node fails, so
// the Init fails with only part of the cluster bootstrapped; the retried
// Init completes the layout on every node itself (nothing adopts in the
// background here), reports it as a new cluster, and the cluster serves.
func TestInitCompletesPartialBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs, fes, cli, _ := initCluster(t, ctx)
	fe := fes[2]
	// Every write of the last node fails until the first Init has failed:
	// an attempt that ends Unavailable (a forward timing out on a loaded
	// machine) may have bootstrapped the others, and its retry must meet
	// the failure too.
	fe.mu.Lock()
	fe.fail = 1 << 30
	fe.mu.Unlock()
	req := &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}
	// Ask the middle node: it forwards to the coordinator.
	err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addrs[1], wire.ProtoKV, raftd.MethodInit, req, &kvpb.InitResponse{})
	})
	fe.mu.Lock()
	fe.fail = 0
	fe.mu.Unlock()
	if err == nil {
		t.Fatal("Init succeeded although a node's bootstrap write failed")
	}
	if got := initialized(t, ctx, cli, addrs); got[2] {
		t.Fatalf("initialized = %v after the failed Init; want the failing node uninitialized", got)
	}
	var resp kvpb.InitResponse
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addrs[2], wire.ProtoKV, raftd.MethodInit, req, &resp)
	}); err != nil {
		t.Fatalf("retried Init: %v", err)
	}
	if resp.GetAlreadyInitialized() || len(resp.GetDescriptors()) != 3 {
		t.Errorf("retried Init = %v; want 3 descriptors, not already initialized (it completed the bootstrap)", &resp)
	}
	if got := initialized(t, ctx, cli, addrs); got[0] != true || got[1] != true || got[2] != true {
		t.Fatalf("initialized = %v after the retried Init; want every node", got)
	}
	checkServes(t, ctx, cli, addrs)
	var again kvpb.InitResponse
	if err := cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, raftd.MethodInit, req, &again); err != nil || !again.GetAlreadyInitialized() {
		t.Errorf("Init of the complete cluster = %v, %v; want already initialized", &again, err)
	}
}

// TestInitOutlivesCaller: the caller gives up while a node's bootstrap
// write is in progress; the bootstrap of every node still completes, and
// the caller's retry gets the answer it missed.
func TestInitOutlivesCaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs, fes, cli, srvs := initCluster(t, ctx)
	fe := fes[2]
	hold := make(chan struct{})
	fe.mu.Lock()
	fe.hold = hold
	fe.mu.Unlock()
	req := &kvpb.InitRequest{InitialRanges: 4}
	cctx, ccancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-fe.entered:
		case <-ctx.Done():
		}
		ccancel()
	}()
	err := retryUnavailable(cctx, func() error {
		return cli.Bus.Call(cctx, addrs[1], wire.ProtoKV, raftd.MethodInit, req, &kvpb.InitResponse{})
	})
	ccancel()
	if err == nil {
		t.Fatal("Init returned although its caller gave up in the middle")
	}
	// The node asked learns of the cancel asynchronously; it can keep the
	// answer only for a caller it knows is gone, so let the bootstrap
	// finish once it knows.
	for raftd.InitCallersGone(srvs[1]) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the node asked never saw its caller give up")
		case <-time.After(5 * time.Millisecond):
		}
	}
	fe.mu.Lock()
	fe.hold = nil
	fe.mu.Unlock()
	close(hold)
	for {
		got := initialized(t, ctx, cli, addrs)
		if got[0] && got[1] && got[2] {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("initialized = %v: the Init stopped with its caller", got)
		case <-time.After(20 * time.Millisecond):
		}
	}
	var resp kvpb.InitResponse
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addrs[1], wire.ProtoKV, raftd.MethodInit, req, &resp)
	}); err != nil || resp.GetAlreadyInitialized() || len(resp.GetDescriptors()) != 5 {
		t.Errorf("retried Init = %v, %v; want the 5 new descriptors, not already initialized", &resp, err)
	}
	checkServes(t, ctx, cli, addrs)
}

// TestInitAcceptsItsOwnLayout: a node that holds exactly the layout the
// Init plans by the time the Init reaches it (it adopted it from a peer
// the Init bootstrapped first) does not fail the Init.
func TestInitAcceptsItsOwnLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs, fes, cli, _ := initCluster(t, ctx)
	req := &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}
	nodes := map[uint64]string{}
	var ids []uint64
	for _, a := range addrs {
		var h raftmsgpb.HelloResponse
		if err := retryUnavailable(ctx, func() error {
			return cli.Bus.Call(ctx, a, wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{}, &h)
		}); err != nil {
			t.Fatalf("Hello %s: %v", a, err)
		}
		nodes[h.GetNodeId()] = a
		ids = append(ids, h.GetNodeId())
	}
	descs, err := multiraft.PlanCluster(req, ids)
	if err != nil {
		t.Fatal(err)
	}
	// Hold the coordinator's first bootstrap (the middle node); meanwhile
	// the last node gets the same layout from elsewhere.
	hold := make(chan struct{})
	fes[1].mu.Lock()
	fes[1].hold = hold
	fes[1].mu.Unlock()
	var reached atomic.Bool
	go func() {
		select {
		case <-fes[1].entered:
			reached.Store(true)
			var br raftmsgpb.BootstrapResponse
			if err := cli.Bus.Call(ctx, addrs[2], wire.ProtoRaft, "Bootstrap", &raftmsgpb.BootstrapRequest{Descriptors: descs, Nodes: nodes}, &br); err != nil || br.GetAlreadyInitialized() {
				t.Errorf("Bootstrap = %v, %v", &br, err)
			}
		case <-ctx.Done():
		}
		fes[1].mu.Lock()
		fes[1].hold = nil
		fes[1].mu.Unlock()
		close(hold)
	}()
	var resp kvpb.InitResponse
	for {
		// Retry only while the coordinator has not reached the bootstrap
		// (peers still exchanging addresses): a retry after it would hide
		// a failure of the first Init.
		err := cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, raftd.MethodInit, req, &resp)
		if err == nil || reached.Load() || !errors.Is(err, bus.ErrUnavailable) || ctx.Err() != nil {
			if err != nil || resp.GetAlreadyInitialized() || len(resp.GetDescriptors()) != 3 {
				t.Fatalf("Init = %v, %v; want 3 new descriptors", &resp, err)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := initialized(t, ctx, cli, addrs); !got[0] || !got[1] || !got[2] {
		t.Fatalf("initialized = %v; want every node", got)
	}
	checkServes(t, ctx, cli, addrs)
}

// TestHelloOmitsBootstrapOnRequest: an initialized node's Hello carries
// its bootstrap record (for nodes that may adopt it) unless the caller
// asks to omit it, as initialized peers do on their periodic hello.
func TestHelloOmitsBootstrapOnRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addrs, _, cli, _ := initCluster(t, ctx)
	req := &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, raftd.MethodInit, req, &kvpb.InitResponse{})
	}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	for _, omit := range []bool{false, true} {
		var h raftmsgpb.HelloResponse
		if err := cli.Bus.Call(ctx, addrs[1], wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{OmitBootstrap: omit}, &h); err != nil {
			t.Fatalf("Hello: %v", err)
		}
		if !h.GetInitialized() {
			t.Fatalf("Hello after Init = %v; want initialized", &h)
		}
		want := 3
		if omit {
			want = 0
		}
		if got := len(h.GetBootstrap().GetDescriptors()); got != want {
			t.Errorf("Hello with omit_bootstrap %v carries %d descriptors; want %d", omit, got, want)
		}
	}
}

// TestNotInitializedReason checks that a node of a cluster without ranges
// refuses KV calls as Unavailable with the reason clients act on.
func TestNotInitializedReason(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	addrs, _, cli, _ := initCluster(t, ctx)
	calls := []struct {
		method    string
		req, resp proto.Message
	}{
		{multiraft.MethodPut, &kvpb.PutRequest{Key: []byte("a"), Value: []byte("1")}, &kvpb.PutResponse{}},
		{multiraft.MethodGet, &kvpb.GetRequest{Key: []byte("a")}, &kvpb.GetResponse{}},
		{multiraft.MethodScan, &kvpb.ScanRequest{Start: []byte("a")}, &kvpb.ScanResponse{}},
	}
	for _, c := range calls {
		err := cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, c.method, c.req, c.resp)
		if !errors.Is(err, bus.ErrUnavailable) || bus.ReasonOf(err) != kvpb.ReasonNotInitialized {
			t.Errorf("%s before Init: %v (reason %q); want Unavailable, reason %q", c.method, err, bus.ReasonOf(err), kvpb.ReasonNotInitialized)
		}
	}
}
