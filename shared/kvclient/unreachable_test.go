package kvclient_test

import (
	"errors"
	"net"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// deadAddr returns a loopback UDP address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// TestNoListener: an operation whose every address has nothing listening
// fails at once with ErrNoListener (not at its deadline), while a client
// with one live address among dead ones fails over to it.
func TestNoListener(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	dead := []string{deadAddr(t), deadAddr(t)}

	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.Addrs = dead })
	_, err := c.Put(ctxT(t), []byte("a"), []byte("1"))
	if !errors.Is(err, kvclient.ErrNoListener) || !errors.Is(err, bus.ErrUnavailable) || bus.ReasonOf(err) != bus.ReasonNoListener {
		t.Fatalf("Put with nothing listening: %v; want ErrNoListener", err)
	}
	if _, err := c.Ranges(ctxT(t), dead[0]); !errors.Is(err, kvclient.ErrNoListener) {
		t.Fatalf("Ranges pinned to a dead address: %v; want ErrNoListener", err)
	}

	mixed := newClient(t, fc, func(cfg *kvclient.Config) { cfg.Addrs = append(append([]string{}, dead...), fc.Addrs()[2]) })
	for i := range 5 {
		if _, err := mixed.Put(ctxT(t), []byte("a"), []byte{byte(i)}); err != nil {
			t.Fatalf("Put %d with one live address of three: %v", i, err)
		}
		if _, _, err := mixed.Get(ctxT(t), []byte("a"), kvclient.WithConsistency(kvclient.Stale)); err != nil {
			t.Fatalf("stale Get %d with one live address of three: %v", i, err)
		}
	}
}

// TestUnauthenticatedIsNotRetried: a client whose certificate the cluster
// refuses fails at once with bus.ErrUnauthenticated: a retry with the same
// certificate cannot succeed.
func TestUnauthenticatedIsNotRetried(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	tc, err := daemontest.NewCA(t).Config("stranger")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.TLS = tc })
	_, _, err = c.Get(ctxT(t), []byte("a"))
	if !errors.Is(err, bus.ErrUnauthenticated) {
		t.Fatalf("Get with a certificate of another CA: %v; want Unauthenticated", err)
	}
	if n := fc.Calls(0, kvclient.MethodGet) + fc.Calls(1, kvclient.MethodGet) + fc.Calls(2, kvclient.MethodGet); n != 0 {
		t.Errorf("%d Gets reached the cluster; want none", n)
	}
}

// TestNotLeaderHintOnTheLastAttempt: with MaxAttempts 1, a write that
// meets a leader change fails, but the NotLeader hint it got is recorded,
// so the next write goes to the new leader instead of failing at the old
// one (alive, so never avoided) until it leads again.
func TestNotLeaderHintOnTheLastAttempt(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.MaxAttempts = 1 })
	id := fc.RangeIDs()[0]
	fc.SetLeader(id, 1)
	if _, err := c.Put(ctxT(t), []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	fc.SetLeader(id, 2)
	if _, err := c.Put(ctxT(t), []byte("a"), []byte("2")); !errors.Is(err, bus.ErrNotLeader) {
		t.Fatalf("Put at the former leader with one attempt: %v; want NotLeader", err)
	}
	for i := range 3 {
		if _, err := c.Put(ctxT(t), []byte("a"), []byte{byte('3' + i)}); err != nil {
			t.Fatalf("Put %d after the hint: %v; want it at the new leader", i, err)
		}
	}
	if p1, p2 := fc.Calls(1, kvclient.MethodPut), fc.Calls(2, kvclient.MethodPut); p1 != 2 || p2 != 3 {
		t.Errorf("puts on the former leader %d, the new one %d; want 2 and 3", p1, p2)
	}
}
