package stored

import (
	"errors"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
)

func TestLeaseTable(t *testing.T) {
	var released []string
	var tab leaseTable[string]
	tab.init(2, 100, func(v string) { released = append(released, v) })
	t0 := time.Unix(1000, 0)
	a, _, err := tab.add("a", time.Second, t0)
	if err != nil || a != 101 {
		t.Fatalf("add = %d, %v; want id 101", a, err)
	}
	b, _, _ := tab.add("b", time.Second, t0)
	if _, _, err := tab.add("c", time.Second, t0); !errors.Is(err, bus.ErrResourceExhausted) {
		t.Errorf("third add over a limit of 2 = %v; want ResourceExhausted", err)
	}
	// get renews: 0.8s, then 0.8s more is within the renewed lease.
	for _, at := range []time.Duration{800 * time.Millisecond, 1600 * time.Millisecond} {
		if v, err := tab.get(a, t0.Add(at), "x"); err != nil || v != "a" {
			t.Fatalf("get at %v = %q, %v", at, v, err)
		}
	}
	// renew never releases, even past the lease: the reaper does.
	if tab.renew(b, t0.Add(1500*time.Millisecond)) {
		t.Error("renew of an expired entry = true")
	}
	if len(released) != 0 {
		t.Errorf("renew released %v", released)
	}
	if n := tab.reap(t0.Add(1500 * time.Millisecond)); n != 1 || len(released) != 1 || released[0] != "b" {
		t.Errorf("reap = %d, released %v; want b alone", n, released)
	}
	// get of an expired entry releases it and fails.
	if _, err := tab.get(a, t0.Add(5*time.Second), "x"); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("get after expiry = %v; want FailedPrecondition", err)
	}
	if tab.remove(a) || tab.len() != 0 || len(released) != 2 {
		t.Errorf("after expiry: remove found it, len %d, released %v", tab.len(), released)
	}
	tab.add("d", time.Second, t0)
	tab.closeAll()
	if _, _, err := tab.add("e", time.Second, t0); !errors.Is(err, bus.ErrUnavailable) || len(released) != 3 {
		t.Errorf("after closeAll: add = %v, released %v", err, released)
	}
}
