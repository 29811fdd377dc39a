package hlc

import (
	"sync/atomic"
	"time"
)

// WallResync is how often a WallClock re-reads the system wall clock; in
// between it advances by the monotonic clock.
const WallResync = time.Millisecond

// WallClock reads the system wall clock (Unix ns) at about the cost of one
// monotonic clock read instead of time.Now's two clock reads.
//
// It keeps an anchor, a time.Now reading with both its wall and its
// monotonic part, and answers anchor wall + monotonic time elapsed since
// the anchor, re-reading the wall clock once the anchor is WallResync old.
// The kernel slews the wall and monotonic clocks alike (NTP frequency
// corrections apply to both), so between anchors the answer tracks the
// wall clock; only a step of the wall clock (settimeofday, an NTP step, a
// leap second) shows up late, by at most WallResync. That is far below any
// MaxOffset, and Clock already tolerates a physical clock that steps back.
//
// A WallClock is safe for concurrent use; the zero value is not usable,
// call NewWallClock.
type WallClock struct {
	anchor atomic.Pointer[wallAnchor]
}

// wallAnchor is one full reading of the system clock; never modified.
type wallAnchor struct {
	t    time.Time // carries the monotonic reading
	wall int64     // t.UnixNano()
}

// NewWallClock returns a WallClock anchored now.
func NewWallClock() *WallClock {
	w := &WallClock{}
	w.resync()
	return w
}

// Now returns the wall clock in nanoseconds since the Unix epoch.
func (w *WallClock) Now() int64 {
	a := w.anchor.Load()
	d := time.Since(a.t) // reads only the monotonic clock
	if d >= WallResync || d < 0 {
		return w.resync()
	}
	return a.wall + int64(d)
}

// resync takes a new anchor and returns its wall time. Concurrent resyncs
// are harmless: each stores a valid anchor and the last one stays.
func (w *WallClock) resync() int64 {
	t := time.Now()
	a := &wallAnchor{t: t, wall: t.UnixNano()}
	w.anchor.Store(a)
	return a.wall
}
