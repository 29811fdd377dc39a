package bus_test

import (
	"crypto/tls"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestResumesWithEveryPeer: all node certificates share one server name,
// yet a client that talked to several peers keeps a session ticket for
// each, so a later dial to any of them resumes.
func TestResumesWithEveryPeer(t *testing.T) {
	var addrs []string
	for _, name := range []string{"s1", "s2", "s3"} {
		s := newBus(t, name)
		echo(s)
		addrs = append(addrs, start(t, s))
	}
	cache := tls.NewLRUClientSessionCache(16)
	var resumed, full atomic.Int64
	client := func() *bus.Bus {
		return newBus(t, "c", func(c *bus.Config) {
			c.TLS.ClientSessionCache = cache
			c.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
				if cs.DidResume {
					resumed.Add(1)
				} else {
					full.Add(1)
				}
				return nil
			}
		})
	}
	call := func(b *bus.Bus) {
		for _, a := range addrs {
			var out wrapperspb.BytesValue
			if err := b.Call(ctxT(t), a, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &out); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1 := client()
	start(t, c1)
	call(c1)
	if resumed.Load() != 0 || full.Load() != 3 {
		t.Fatalf("first client: %d resumed, %d full; want 0 and 3", resumed.Load(), full.Load())
	}
	// A second endpoint sharing the cache dials each peer afresh.
	c2 := client()
	start(t, c2)
	call(c2)
	if resumed.Load() != 3 {
		t.Fatalf("second client resumed %d of 3 sessions; want all", resumed.Load())
	}
}
