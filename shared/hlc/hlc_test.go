package hlc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakePhysical is a settable physical clock.
type fakePhysical struct {
	mu sync.Mutex
	ns int64
}

func (f *fakePhysical) now() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ns
}

func (f *fakePhysical) set(ns int64) {
	f.mu.Lock()
	f.ns = ns
	f.mu.Unlock()
}

func TestCompare(t *testing.T) {
	for _, tt := range []struct {
		a, b Timestamp
		want int
	}{
		{Timestamp{1, 0}, Timestamp{1, 0}, 0},
		{Timestamp{1, 0}, Timestamp{2, 0}, -1},
		{Timestamp{2, 0}, Timestamp{1, 5}, 1},
		{Timestamp{1, 1}, Timestamp{1, 2}, -1},
		{Timestamp{1, 3}, Timestamp{1, 2}, 1},
	} {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if n := (Timestamp{5, math.MaxInt32}).Next(); n != (Timestamp{6, 0}) {
		t.Errorf("Next at logical overflow = %v", n)
	}
}

func TestStringParse(t *testing.T) {
	for _, ts := range []Timestamp{{0, 0}, {1700000000000000123, 4}, {999, math.MaxInt32}, {1e9, 0}} {
		s := ts.String()
		got, err := Parse(s)
		if err != nil || got != ts {
			t.Errorf("Parse(%q) = %v, %v; want %v", s, got, err, ts)
		}
	}
	if s := (Timestamp{1700000000000000123, 4}).String(); s != "1700000000.000000123,4" {
		t.Errorf("String = %q", s)
	}
	for _, bad := range []string{"", "1", "1.5,0", "1.000000000", "-1.000000000,0", "1.000000000,-1", "a.000000000,0",
		"1.000000000,99999999999", "99999999999999999999.000000000,0", "1.0000000001,0", ".000000000,0", "1.000000000,", "+1.000000000,0"} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalidTimestamp) {
			t.Errorf("Parse(%q) error = %v; want ErrInvalidTimestamp", bad, err)
		}
	}
}

func TestBytesOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a := Timestamp{r.Int64N(1 << 62), r.Int32N(1 << 30)}
		b := Timestamp{a.WallTime + r.Int64N(3) - 1, r.Int32N(1 << 30)}
		if b.WallTime < 0 {
			b.WallTime = 0
		}
		ea, eb := a.AppendBytes(nil), b.AppendBytes(nil)
		if len(ea) != EncodedLen {
			t.Fatalf("len %d", len(ea))
		}
		if got, want := bytes.Compare(ea, eb), a.Compare(b); got != want {
			t.Fatalf("bytes order %d != timestamp order %d for %v %v", got, want, a, b)
		}
		d, err := DecodeBytes(ea)
		if err != nil || d != a {
			t.Fatalf("DecodeBytes = %v, %v; want %v", d, err, a)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), make([]byte, 13), Timestamp{-1, 0}.AppendBytes(nil), Timestamp{1, -1}.AppendBytes(nil)} {
		if _, err := DecodeBytes(bad); !errors.Is(err, ErrInvalidTimestamp) {
			t.Errorf("DecodeBytes(%x) = %v; want ErrInvalidTimestamp", bad, err)
		}
	}
}

func TestProto(t *testing.T) {
	ts := Timestamp{42, 7}
	got, err := FromProto(ts.Proto())
	if err != nil || got != ts {
		t.Fatalf("round trip = %v, %v", got, err)
	}
	if z, err := FromProto(nil); err != nil || !z.IsZero() {
		t.Errorf("FromProto(nil) = %v, %v", z, err)
	}
	if _, err := FromProto(Timestamp{-5, 0}.Proto()); !errors.Is(err, ErrInvalidTimestamp) {
		t.Errorf("negative wall accepted: %v", err)
	}
}

// TestNowMonotonicProperty drives a clock with random physical readings,
// backward jumps included, and checks every reading increases.
func TestNowMonotonicProperty(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		phys := &fakePhysical{ns: 1e18}
		c := NewClock(Config{Physical: phys.now, MaxOffset: time.Second})
		prev := c.Now()
		for i := range 5000 {
			step := r.Int64N(2000) - 800 // backward steps are common
			if r.IntN(100) == 0 {
				step = -r.Int64N(int64(time.Minute)) // big backward jump
			}
			phys.set(phys.now() + step)
			var cur Timestamp
			if r.IntN(3) == 0 {
				remote := Timestamp{phys.now() + r.Int64N(int64(2*time.Second)) - int64(time.Second), r.Int32N(10)}
				before := c.Peek()
				got, err := c.Update(remote)
				if err != nil {
					if !errors.Is(err, ErrRemoteAhead) || remote.WallTime-phys.now() <= int64(time.Second) {
						t.Fatalf("seed %d step %d: Update(%v) refused wrongly: %v", seed, i, remote, err)
					}
					if after := c.Peek(); after != before {
						t.Fatalf("seed %d: refused update changed the clock %v -> %v", seed, before, after)
					}
					continue
				}
				if !remote.Less(got) || !prev.Less(got) {
					t.Fatalf("seed %d step %d: Update(%v) = %v not after remote and previous %v", seed, i, remote, got, prev)
				}
				cur = got
			} else {
				cur = c.Now()
			}
			if !prev.Less(cur) {
				t.Fatalf("seed %d step %d: reading %v not after %v", seed, i, cur, prev)
			}
			if cur.WallTime < phys.now() {
				t.Fatalf("seed %d: reading %v behind physical %d", seed, cur, phys.now())
			}
			prev = cur
		}
	}
}

func TestUpdateRefusals(t *testing.T) {
	phys := &fakePhysical{ns: 1e12}
	c := NewClock(Config{Physical: phys.now, MaxOffset: 500 * time.Millisecond})
	c.Now()
	before := c.Peek()
	for _, remote := range []Timestamp{
		{1e12 + int64(501*time.Millisecond), 0},
		{-1, 0},
		{5, -3},
	} {
		if _, err := c.Update(remote); err == nil {
			t.Errorf("Update(%v) accepted", remote)
		}
		if c.Peek() != before {
			t.Errorf("refused Update(%v) changed the clock", remote)
		}
	}
	ok := Timestamp{1e12 + int64(400*time.Millisecond), 3}
	got, err := c.Update(ok)
	if err != nil || got != (Timestamp{ok.WallTime, 4}) {
		t.Errorf("Update(%v) = %v, %v", ok, got, err)
	}
	if n := c.Now(); n != (Timestamp{ok.WallTime, 5}) {
		t.Errorf("Now after update = %v", n)
	}
}

func TestForwardJump(t *testing.T) {
	phys := &fakePhysical{ns: 1e12}
	var jumps []time.Duration
	c := NewClock(Config{Physical: phys.now, ForwardJumpThreshold: time.Second, OnForwardJump: func(d time.Duration) { jumps = append(jumps, d) }})
	c.Now()
	phys.set(1e12 + int64(500*time.Millisecond))
	c.Now()
	phys.set(1e12 + int64(3*time.Second))
	c.Now()
	if len(jumps) != 1 || jumps[0] != 2500*time.Millisecond || c.ForwardJumps() != 1 {
		t.Errorf("jumps = %v (count %d); want one of 2.5s", jumps, c.ForwardJumps())
	}
}

func TestForwardJumpOutOfOrderReadings(t *testing.T) {
	// Concurrent callers may reach the lock with physical readings out of
	// order: an older reading arriving late is not a jump and does not
	// lower the mark the next reading is compared with.
	var jumps []time.Duration
	for _, tt := range []struct {
		name      string
		readings  []int64
		wantJumps []time.Duration
	}{
		{"late older reading", []int64{10e9, 10.5e9, 10.2e9, 11e9}, nil},
		{"jump after a late reading", []int64{10e9, 9e9, 11.5e9}, []time.Duration{1500 * time.Millisecond}},
		{"backward step then jump", []int64{10e9, 5e9, 10.9e9, 12e9}, []time.Duration{1100 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jumps = nil
			phys := &fakePhysical{}
			c := NewClock(Config{Physical: phys.now, ForwardJumpThreshold: time.Second, OnForwardJump: func(d time.Duration) { jumps = append(jumps, d) }})
			for _, r := range tt.readings {
				phys.set(r)
				c.Now()
			}
			if !slices.Equal(jumps, tt.wantJumps) || c.ForwardJumps() != uint64(len(tt.wantJumps)) {
				t.Errorf("jumps = %v (count %d); want %v", jumps, c.ForwardJumps(), tt.wantJumps)
			}
		})
	}
}

func TestWallClockTracksSystemClock(t *testing.T) {
	// Each reading lies between two time.Now readings taken around it
	// (within a small slack for the wall and monotonic parts of one
	// time.Now being read a few ns apart), across several resyncs.
	const slack = int64(50 * time.Microsecond)
	w := NewWallClock()
	start := time.Now()
	n := 0
	for time.Since(start) < 5*WallResync {
		before := time.Now().UnixNano()
		got := w.Now()
		after := time.Now().UnixNano()
		if got < before-slack || got > after+slack {
			t.Fatalf("WallClock.Now = %d; want within [%d, %d] ± %d", got, before, after, slack)
		}
		n++
	}
	if n < 2 {
		t.Fatalf("only %d readings", n)
	}
}

func TestLogicalOverflow(t *testing.T) {
	phys := &fakePhysical{ns: 100}
	c := NewClock(Config{Physical: phys.now})
	c.Forward(Timestamp{100, math.MaxInt32 - 1})
	if n := c.Now(); n != (Timestamp{100, math.MaxInt32}) {
		t.Fatalf("Now = %v", n)
	}
	if n := c.Now(); n != (Timestamp{101, 0}) {
		t.Fatalf("Now at overflow = %v; want wall+1", n)
	}
}

func TestConcurrentNow(t *testing.T) {
	c := NewClock(Config{})
	const workers, each = 8, 2000
	out := make([][]Timestamp, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				out[w] = append(out[w], c.Now())
			}
		}()
	}
	wg.Wait()
	seen := map[Timestamp]bool{}
	for _, rs := range out {
		for i, ts := range rs {
			if seen[ts] {
				t.Fatalf("duplicate reading %v", ts)
			}
			seen[ts] = true
			if i > 0 && !rs[i-1].Less(ts) {
				t.Fatalf("readings of one goroutine not increasing: %v then %v", rs[i-1], ts)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1700000000.000000123,4", "0.000000000,0", "1.5,0", "-1.000000000,0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := Parse(s)
		if err != nil {
			return
		}
		if ts.Valid() != nil {
			t.Fatalf("Parse(%q) = %v: invalid timestamp accepted", s, ts)
		}
		if again, err := Parse(ts.String()); err != nil || again != ts {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

func FuzzDecodeBytes(f *testing.F) {
	f.Add(Timestamp{1700000000000000123, 4}.AppendBytes(nil))
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := DecodeBytes(b)
		if err != nil {
			return
		}
		if !bytes.Equal(ts.AppendBytes(nil), b) {
			t.Fatalf("re-encoding of %x differs", b)
		}
	})
}

// BenchmarkNow is Now from one goroutine, with the default physical
// clock (a WallClock) and with time.Now read on every call.
func BenchmarkNow(b *testing.B) {
	for _, bm := range []struct {
		name string
		phys func() int64
	}{{"wallclock", nil}, {"timenow", SystemTime}} {
		b.Run(bm.name, func(b *testing.B) {
			c := NewClock(Config{Physical: bm.phys})
			for b.Loop() {
				c.Now()
			}
		})
	}
}

// BenchmarkNowParallel is Now from many goroutines: GOMAXPROCS, and
// 16×GOMAXPROCS.
func BenchmarkNowParallel(b *testing.B) {
	for _, p := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", p), func(b *testing.B) {
			c := NewClock(Config{})
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.Now()
				}
			})
		})
	}
}

// BenchmarkPhysical is the cost of the physical clock reading alone.
func BenchmarkPhysical(b *testing.B) {
	var sink int64
	b.Run("wallclock", func(b *testing.B) {
		w := NewWallClock()
		for b.Loop() {
			sink += w.Now()
		}
	})
	b.Run("timenow", func(b *testing.B) {
		for b.Loop() {
			sink += SystemTime()
		}
	})
	_ = sink
}
