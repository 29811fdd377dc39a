package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNominal(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		if got := p.Nominal(n); got != want*time.Millisecond {
			t.Errorf("Nominal(%d) = %v; want %v", n, got, want*time.Millisecond)
		}
	}
	if got := p.Nominal(1 << 20); got != time.Second {
		t.Errorf("Nominal(huge) = %v; want the cap", got)
	}
	if got := (Policy{Min: time.Second}).Nominal(5); got != time.Second {
		t.Errorf("zero Max: Nominal(5) = %v; want Min", got)
	}
}

func TestDelayIsJitteredWithinHalfToFull(t *testing.T) {
	p := Policy{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for n := range 6 {
		nom := p.Nominal(n)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(n)
			if d < nom/2 || d > nom {
				t.Fatalf("Delay(%d) = %v; want within [%v, %v]", n, d, nom/2, nom)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d): %d distinct values in 200 draws; want jitter", n, len(seen))
		}
	}
}

func TestBackoffCountsAndResets(t *testing.T) {
	b := New(time.Millisecond, 4*time.Millisecond)
	for i := range 4 {
		if d := b.Next(); d > b.Nominal(i) {
			t.Fatalf("wait %d = %v; over %v", i, d, b.Nominal(i))
		}
	}
	if b.Failures() != 4 {
		t.Errorf("Failures = %d; want 4", b.Failures())
	}
	b.Reset()
	if d := b.Next(); d > time.Millisecond {
		t.Errorf("after Reset: %v; want at most Min", d)
	}
}

func TestWaitStopsWithContext(t *testing.T) {
	b := New(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Error("Wait on a cancelled context = true; want false")
	}
	if !New(time.Microsecond, time.Microsecond).Wait(context.Background()) {
		t.Error("Wait = false; want true")
	}
}
