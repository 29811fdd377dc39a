package kvclienttest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// The fake is tested over a raw bus, so that its answers are checked
// against the protocol rather than through the client it stands in for.

type caller struct {
	t *testing.T
	b *bus.Bus
}

func newCaller(t *testing.T) caller {
	return caller{t, daemontest.NewRuntime(t, "caller").Bus}
}

func (c caller) call(addr, method string, req, resp proto.Message, timeout time.Duration) error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), timeout)
	defer cancel()
	return c.b.Call(ctx, addr, wire.ProtoKV, method, req, resp)
}

func TestUninitializedThenInit(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Uninitialized: true})
	c := newCaller(t)
	put := &kvpb.PutRequest{Key: []byte("a"), Value: []byte("1")}
	err := c.call(fc.Addrs()[1], kvclient.MethodPut, put, &kvpb.PutResponse{}, 5*time.Second)
	if !errors.Is(err, bus.ErrUnavailable) || bus.ReasonOf(err) != kvpb.ReasonNotInitialized {
		t.Fatalf("Put before Init: %v; want Unavailable, reason %q", err, kvpb.ReasonNotInitialized)
	}
	var ir kvpb.InitResponse
	if err := c.call(fc.Addrs()[2], kvclient.MethodInit, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}, &ir, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ir.GetAlreadyInitialized() || len(ir.GetDescriptors()) != 3 || len(fc.RangeIDs()) != 2 {
		t.Fatalf("Init = %v, ranges %v; want meta + 2 user ranges", &ir, fc.RangeIDs())
	}
	if err := c.call(fc.Addrs()[0], kvclient.MethodInit, &kvpb.InitRequest{}, &ir, 5*time.Second); err != nil || !ir.GetAlreadyInitialized() {
		t.Fatalf("second Init = %v, %v; want already initialized", &ir, err)
	}
	if err := c.call(fc.Addrs()[1], kvclient.MethodPut, put, &kvpb.PutResponse{}, 5*time.Second); err != nil {
		t.Fatalf("Put after Init: %v", err)
	}
	if v, ok := fc.Value("a"); !ok || v != "1" || fc.Len() != 1 {
		t.Fatalf("Value(a) = %q, %v, Len %d; want 1, true, 1", v, ok, fc.Len())
	}
}

func TestLeadersHintsAndForwarding(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	c := newCaller(t)
	ids := fc.RangeIDs()
	fc.SetLeader(ids[0], 0)
	fc.SetLeader(ids[1], 2)
	noForward := &kvpb.PutRequest{Header: &kvpb.Header{NoForward: true}, Key: []byte("z"), Value: []byte("1")}
	err := c.call(fc.Addrs()[0], kvclient.MethodPut, noForward, &kvpb.PutResponse{}, 5*time.Second)
	if !errors.Is(err, bus.ErrNotLeader) || bus.LeaderHint(err) != fc.Addrs()[2] {
		t.Fatalf("no_forward Put at a follower: %v; want NotLeader with hint %s", err, fc.Addrs()[2])
	}
	if err := c.call(fc.Addrs()[2], kvclient.MethodPut, noForward, &kvpb.PutResponse{}, 5*time.Second); err != nil {
		t.Fatalf("no_forward Put at the leader: %v", err)
	}
	if fc.Forwarded() != 0 {
		t.Fatalf("Forwarded = %d; want 0", fc.Forwarded())
	}
	forward := &kvpb.PutRequest{Key: []byte("b"), Value: []byte("2")}
	if err := c.call(fc.Addrs()[1], kvclient.MethodPut, forward, &kvpb.PutResponse{}, 5*time.Second); err != nil {
		t.Fatalf("Put at a follower: %v", err)
	}
	if fc.Forwarded() != 1 {
		t.Fatalf("Forwarded = %d; want 1", fc.Forwarded())
	}
	var dr kvpb.DescriptorsResponse
	if err := c.call(fc.Addrs()[1], kvclient.MethodDescriptors, &kvpb.DescriptorsRequest{}, &dr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(dr.GetDescriptors()) < 2 || dr.GetLeaders()[ids[0]] != fc.Addrs()[0] || dr.GetLeaders()[ids[1]] != fc.Addrs()[2] {
		t.Fatalf("Descriptors = %v; want the user ranges, led by nodes 0 and 2", &dr)
	}
	if got := fc.Calls(0, kvclient.MethodPut) + fc.Calls(1, kvclient.MethodPut) + fc.Calls(2, kvclient.MethodPut); got != 3 {
		t.Fatalf("%d Puts counted; want 3", got)
	}
}

func TestInjectAndStall(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newCaller(t)
	injected := bus.Errorf(bus.CodeInternal, "injected")
	fc.Inject(1, kvclient.MethodGet, injected)
	get := &kvpb.GetRequest{Key: []byte("a"), Header: &kvpb.Header{ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}}
	if err := c.call(fc.Addrs()[1], kvclient.MethodGet, get, &kvpb.GetResponse{}, 5*time.Second); !errors.Is(err, bus.ErrInternal) {
		t.Fatalf("first Get: %v; want the injected error", err)
	}
	var gr kvpb.GetResponse
	if err := c.call(fc.Addrs()[1], kvclient.MethodGet, get, &gr, 5*time.Second); err != nil || gr.GetFound() {
		t.Fatalf("second Get = %v, %v; want not found, no error", &gr, err)
	}

	fc.Stall(2, true)
	if err := c.call(fc.Addrs()[2], kvclient.MethodGet, get, &kvpb.GetResponse{}, 200*time.Millisecond); !errors.Is(err, bus.ErrDeadlineExceeded) {
		t.Fatalf("Get at a stalled node: %v; want deadline exceeded", err)
	}
	if got := fc.Calls(2, kvclient.MethodGet); got != 1 {
		t.Fatalf("stalled node counted %d Gets; want 1", got)
	}
	fc.Stall(2, false)
	if err := c.call(fc.Addrs()[2], kvclient.MethodGet, get, &kvpb.GetResponse{}, 5*time.Second); err != nil {
		t.Fatalf("Get after the stall: %v", err)
	}
}

// TestSystemKeys: keys under a daemon system prefix need Header.system,
// as raftd's do, and scans of them stay inside the prefix.
func TestSystemKeys(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	ctx := t.Context()
	user, err := kvclient.New(ctx, kvclient.Config{Addrs: fc.Addrs(), Bus: daemontest.NewRuntime(t, "user").Bus})
	if err != nil {
		t.Fatal(err)
	}
	sys, err := kvclient.New(ctx, kvclient.Config{Addrs: fc.Addrs(), Bus: daemontest.NewRuntime(t, "sys").Bus, System: true})
	if err != nil {
		t.Fatal(err)
	}
	key := func(s string) []byte { return append(append([]byte(nil), kvpb.WorkflowPrefix...), s...) }
	if _, err := user.Put(ctx, key("a"), []byte("1")); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("user Put of a system key = %v; want InvalidArgument", err)
	}
	if _, err := sys.Put(ctx, []byte("\x00meta/x"), []byte("1")); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Errorf("system Put under the meta prefix = %v; want InvalidArgument", err)
	}
	for _, k := range []string{"b", "a", "c"} {
		if _, err := sys.Put(ctx, key(k), []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sys.Put(ctx, []byte("user"), []byte("u")); err != nil {
		t.Fatal(err)
	}
	br, err := sys.Batch(ctx, kvclient.NewBatch().Delete(key("c")).CompareAndSwap(kvclient.CAS{Key: key("a"), Expected: []byte("a"), NewValue: []byte("a2")}))
	if err != nil || !br.Succeeded {
		t.Fatalf("system batch = %+v, %v", br, err)
	}
	kvs, err := sys.Scan(ctx, kvpb.WorkflowPrefix, kvpb.PrefixEnd(kvpb.WorkflowPrefix), kvclient.ScanOptions{PageSize: 1}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, string(kv.Key[len(kvpb.WorkflowPrefix):])+"="+string(kv.Value))
	}
	if want := "[a=a2 b=b]"; fmt.Sprint(got) != want {
		t.Errorf("system scan = %v; want %s", got, want)
	}
	kvs, err = user.Scan(ctx, nil, nil, kvclient.ScanOptions{}).Collect()
	if err != nil || len(kvs) != 1 || string(kvs[0].Key) != "user" {
		t.Errorf("user scan = %v, %v; want only the user key", kvs, err)
	}
}
