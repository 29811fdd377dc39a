package kv

import (
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func watchOptions(t *testing.T, fc *kvclienttest.Cluster) WatchOptions {
	tc, err := daemontest.CA(t).Config("bench")
	if err != nil {
		t.Fatal(err)
	}
	return WatchOptions{Addrs: fc.Addrs(), TLS: tc, Conns: 2, Streams: 3, WatchersPerStream: 2, PutTotal: 40, PutRate: 400, KeySize: 12, ValSize: 20, Drain: 20 * time.Second}
}

func TestRunWatch(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	o := watchOptions(t, fc)
	res, err := RunWatch(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The fake delivers what was written every 10 ms, after the put's
	// answer: every event has a positive latency.
	if res.Watchers != 6 || res.Events != 6*40 || res.Missing != 0 || res.PutsPerSec <= 0 || res.PutP50Ms <= 0 ||
		res.P50Ms <= 0 || res.P50Ms > res.P99Ms || res.P99Ms > res.MaxMs || res.MaxMs > 20_000 {
		t.Errorf("result = %+v", res)
	}
	// One key, written PutTotal times.
	if fc.Len() != 1 {
		t.Errorf("fake holds %d keys; want the one watched", fc.Len())
	}
	puts := 0
	for n := range 3 {
		puts += fc.Calls(n, kvclient.MethodPut)
	}
	if puts != 40 {
		t.Errorf("%d puts; want 40", puts)
	}
}

func TestValidateWatch(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	base := watchOptions(t, fc)
	for _, tt := range []struct {
		mod  func(*WatchOptions)
		want string
	}{
		{func(o *WatchOptions) { o.Addrs = nil }, "address"},
		{func(o *WatchOptions) { o.PutRate = -1 }, "put rate"},
		{func(o *WatchOptions) { o.Streams, o.WatchersPerStream = 1000, 1000 }, "at most"},
		{func(o *WatchOptions) { o.KeySize = 1 << 20 }, "key size"},
		{func(o *WatchOptions) { o.ValSize = -1 }, "value size"},
		{func(o *WatchOptions) { o.TLS = nil }, "TLS"},
		{func(o *WatchOptions) { o.Hold = -time.Second }, "hold"},
	} {
		o := base
		tt.mod(&o)
		if _, err := RunWatch(t.Context(), o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RunWatch: %v; want an error naming %s", err, tt.want)
		}
	}
	if fc.Len() != 0 || fc.Calls(0, kvclient.MethodPut) != 0 {
		t.Error("a refused run wrote keys")
	}
}
