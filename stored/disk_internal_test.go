package stored

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		in   diskInput
		want diskVerdict
	}{
		{"room", diskInput{avail: 500 * mib, floor: 100 * mib, ballast: 10 * mib, present: true}, diskVerdict{}},
		{"below the floor: full, ballast released", diskInput{avail: 99 * mib, floor: 100 * mib, ballast: 10 * mib, present: true},
			diskVerdict{full: true, release: true}},
		{"writes since the check reach the floor", diskInput{avail: 120 * mib, written: 21 * mib, floor: 100 * mib, ballast: 10 * mib, present: true},
			diskVerdict{full: true, release: true}},
		{"released ballast still counts: full", diskInput{avail: 109 * mib, floor: 100 * mib, ballast: 10 * mib, present: false, wasFull: true},
			diskVerdict{full: true}},
		{"deleted ballast counts when not full either", diskInput{avail: 109 * mib, floor: 100 * mib, ballast: 10 * mib, present: false},
			diskVerdict{full: true}},
		{"back over the floor but within the hysteresis: still full", diskInput{avail: 120 * mib, floor: 100 * mib, ballast: 10 * mib, present: false, wasFull: true},
			diskVerdict{full: true}},
		{"past the hysteresis: room, ballast re-created", diskInput{avail: 123 * mib, floor: 100 * mib, ballast: 10 * mib, present: false, wasFull: true},
			diskVerdict{create: true}},
		{"first start with room: ballast created", diskInput{avail: 500 * mib, floor: 100 * mib, ballast: 10 * mib}, diskVerdict{create: true}},
		{"reserve runs out under half the floor", diskInput{avail: 49 * mib, floor: 100 * mib, ballast: 10 * mib, present: true, wasFull: true},
			diskVerdict{full: true, reserveFull: true, release: true}},
		{"reserve ignores the missing ballast", diskInput{avail: 55 * mib, floor: 100 * mib, ballast: 10 * mib, wasFull: true},
			diskVerdict{full: true}},
		{"RocksDB out of space: everything refused", diskInput{avail: 500 * mib, floor: 100 * mib, ballast: 10 * mib, present: true, rocks: true},
			diskVerdict{full: true, reserveFull: true, release: true}},
		{"no floor, no ballast", diskInput{avail: 0, floor: 0}, diskVerdict{}},
		{"no ballast configured", diskInput{avail: 99 * mib, floor: 100 * mib}, diskVerdict{full: true}},
		{"written beyond the free space", diskInput{avail: 10 * mib, written: 20 * mib, floor: 4 * mib}, diskVerdict{full: true, reserveFull: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.in); got != tt.want {
				t.Errorf("decide(%+v) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAutoSizes(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	tests := []struct {
		total, floor, ballast uint64
	}{
		{200 * mib, 50 * mib, 2 * mib},
		{1 * gib, 64 * mib, gib / 100},
		{10 * gib, 10 * gib / 50, 10 * gib / 100},
		{500 * gib, 2 * gib, 1 * gib},
	}
	for _, tt := range tests {
		if f, b := autoFloor(tt.total), autoBallast(tt.total); f != tt.floor || b != tt.ballast {
			t.Errorf("auto sizes of %d = floor %d, ballast %d; want %d, %d", tt.total, f, b, tt.floor, tt.ballast)
		}
	}
}

// admit refuses a burst at the floor without waiting for the periodic
// check: the writes admitted since it count against the free space (which
// statfs may not show yet: RocksDB preallocates its log), and near the
// floor a write reads the free space again when the last read is over a
// millisecond old.
func TestAdmit(t *testing.T) {
	const mib = 1 << 20
	var mu sync.Mutex
	avail := uint64(100*mib + 2*mib) // 2 MiB over the floor
	statfs := func(string) (uint64, uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return avail, 1 << 30, nil
	}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	cfg := DefaultConfig()
	cfg.Dir, cfg.MinFreeBytes, cfg.BallastBytes = t.TempDir(), 100*mib, 0
	m := newDiskMonitor(cfg, 7, statfs, slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	m.start()

	const size = 60000
	n := 0
	for ; m.admit(false, size) == nil; n++ {
		if n > 2*mib/size+1 {
			t.Fatalf("%d writes of %d bytes admitted 2 MiB over the floor", n, size)
		}
	}
	if want := 2*mib/size + 1; n != want {
		t.Errorf("admitted %d writes of %d bytes 2 MiB over the floor; want %d (the one crossing included)", n, size, want)
	}
	if err := m.admit(true, 100); err != nil {
		t.Errorf("reserve write refused above half the floor: %v", err)
	}

	// Another process takes the space: a write a millisecond after the
	// last read reads again and is refused, reserve writes too.
	m2 := newDiskMonitor(cfg, 7, statfs, slog.New(slog.NewTextHandler(io.Discard, nil)), clock)
	mu.Lock()
	avail = 150 * mib
	mu.Unlock()
	m2.start()
	if err := m2.admit(true, 100); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	avail = 40 * mib
	mu.Unlock()
	if err := m2.admit(true, 100); err != nil {
		t.Errorf("write within a millisecond of the last read refused: %v", err)
	}
	now = now.Add(2 * time.Millisecond)
	if err := m2.admit(true, 100); err == nil {
		t.Error("reserve write admitted at 40 MiB free, floor 100 MiB")
	}
}
