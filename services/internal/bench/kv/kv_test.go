package kv

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeys(t *testing.T) {
	seen := map[string]bool{}
	firsts := map[byte]int{}
	k := make([]byte, 4)
	for i := range 255 * 40 {
		key(k, i)
		if k[0] == 0 {
			t.Fatalf("key %d = %x begins with 0x00", i, k)
		}
		if seen[string(k)] {
			t.Fatalf("key %d = %x repeats", i, k)
		}
		seen[string(k)] = true
		firsts[k[0]]++
	}
	if len(firsts) != 255 || firsts[1] != 40 || firsts[255] != 40 {
		t.Errorf("first bytes spread %d ways (1: %d, 255: %d); want 255 ways, 40 each", len(firsts), firsts[1], firsts[255])
	}
	one := make([]byte, 1)
	key(one, 254)
	if !bytes.Equal(one, []byte{255}) {
		t.Errorf("1-byte key 254 = %x", one)
	}
}

func options(t *testing.T, fc *kvclienttest.Cluster) Options {
	tc, err := daemontest.CA(t).Config("bench")
	if err != nil {
		t.Fatal(err)
	}
	return Options{Addrs: fc.Addrs(), TLS: tc, Conns: 2, Clients: 4, Total: 200, KeySize: 8, ValSize: 16, SequentialKeys: true}
}

func TestRunPutAndGet(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Uninitialized: true})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	o := options(t, fc)
	o.Ranges = 4
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Op != "put" || res.Total != 200 || res.Errors != 0 || res.RequestsPerSec <= 0 || res.P50Ms <= 0 ||
		res.P50Ms > res.P99Ms || res.P99Ms > res.P999Ms || res.P999Ms > res.MaxMs || !strings.Contains(res.InitNote, "created 5") {
		t.Errorf("put result = %+v", res)
	}
	if fc.Len() != 200 || len(fc.RangeIDs()) != 4 {
		t.Errorf("fake holds %d keys in %d ranges; want 200 in 4", fc.Len(), len(fc.RangeIDs()))
	}

	o.Op, o.Consistency, o.KeySpace, o.SequentialKeys = "get", kvclient.Stale, 10, false
	res, err = Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Op != "get" || res.Consistency != "stale" || res.Errors != 0 || res.KeySpace != 10 || !strings.Contains(res.InitNote, "already initialized") {
		t.Errorf("get result = %+v", res)
	}
	gets := 0
	for n := range 3 {
		gets += fc.Calls(n, kvclient.MethodGet)
		// Every client met every node before the clock started, once
		// per run.
		if got := fc.Calls(n, kvclient.MethodRanges); got != 2*o.Conns {
			t.Errorf("node %d: %d Ranges calls over two runs; want %d (each client connects to each node)", n, got, 2*o.Conns)
		}
	}
	if gets != 200 {
		t.Errorf("%d Get calls; want 200", gets)
	}
}

func TestRunCountsErrors(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	fc.Inject(0, kvclient.MethodPut, bus.Errorf(bus.CodeInvalidArgument, "too big"), bus.Errorf(bus.CodeInvalidArgument, "too big"))
	o := options(t, fc)
	o.Conns, o.Clients, o.Total = 1, 1, 20
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 2 || !strings.Contains(res.FirstError, "too big") || fc.Len() != 18 {
		t.Errorf("result %+v with %d keys; want 2 errors and 18 keys", res, fc.Len())
	}
}

func TestValidate(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	base := options(t, fc)
	for _, tt := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Addrs = nil }, "address"},
		{func(o *Options) { o.Conns = 8 }, "conns"},
		{func(o *Options) { o.Op = "range" }, "op"},
		{func(o *Options) { o.KeySize = 1; o.KeySpace = 300 }, "key space"},
		{func(o *Options) { o.Total = -1 }, "total"},
	} {
		o := base
		tt.mod(&o)
		if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run: %v; want an error naming %s", err, tt.want)
		}
	}
	if fc.Len() != 0 {
		t.Error("a refused run wrote keys")
	}
}
