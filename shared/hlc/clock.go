package hlc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRemoteAhead is returned by Update for a remote timestamp further
// ahead of local physical time than MaxOffset.
var ErrRemoteAhead = errors.New("hlc: remote timestamp too far ahead")

// Config configures a Clock.
type Config struct {
	// Physical returns physical time in nanoseconds since the Unix epoch.
	// It is called once per Now or Update, outside the clock's lock, so
	// it must be safe for concurrent use. Default: a WallClock of its
	// own (the system wall clock, read cheaply).
	Physical func() int64
	// MaxOffset is the largest tolerated offset between two nodes' clocks;
	// Update refuses remote timestamps further ahead than this. Zero
	// disables the check. Default 0; clockd and raftd use 500ms.
	MaxOffset time.Duration
	// ForwardJumpThreshold is the physical forward step, between two
	// readings, above which OnForwardJump is called. Zero disables
	// detection.
	ForwardJumpThreshold time.Duration
	// OnForwardJump is told of each detected forward jump, with its size.
	// It runs with the clock's lock held: it must not call the Clock.
	OnForwardJump func(jump time.Duration)
}

// Clock is a hybrid logical clock; see the package doc.
type Clock struct {
	cfg Config

	mu struct {
		sync.Mutex
		ts           Timestamp
		lastPhysical int64
		jumps        uint64
	}
}

// SystemTime returns the system wall clock in Unix nanoseconds, read
// afresh with time.Now on every call. WallClock.Now is a cheaper reading
// of the same clock.
func SystemTime() int64 { return time.Now().UnixNano() }

// NewClock returns a clock reading cfg.Physical.
func NewClock(cfg Config) *Clock {
	if cfg.Physical == nil {
		cfg.Physical = NewWallClock().Now
	}
	return &Clock{cfg: cfg}
}

// MaxOffset returns the configured maximum offset.
func (c *Clock) MaxOffset() time.Duration { return c.cfg.MaxOffset }

// observeLocked checks the physical reading p, taken before the lock, for
// a forward jump. Concurrent callers may arrive out of order, so p is
// compared with the highest reading seen so far: a late, older reading is
// never a jump and never lowers that mark.
func (c *Clock) observeLocked(p int64) {
	last := c.mu.lastPhysical
	if p <= last {
		return
	}
	if c.cfg.ForwardJumpThreshold > 0 && last != 0 && p-last > int64(c.cfg.ForwardJumpThreshold) {
		c.mu.jumps++
		if c.cfg.OnForwardJump != nil {
			c.cfg.OnForwardJump(time.Duration(p - last))
		}
	}
	c.mu.lastPhysical = p
}

// Now returns a reading strictly after every earlier reading of c.
//
// The physical clock is read before the lock is taken, so the lock is
// held only for a few comparisons. The reading is still at or after
// physical time as it was at some instant during the call, and strictly
// after every reading that completed before (the state only moves
// forward under the lock).
func (c *Clock) Now() Timestamp {
	p := c.cfg.Physical()
	c.mu.Lock()
	c.observeLocked(p)
	ts := c.mu.ts.Next()
	if p > c.mu.ts.WallTime {
		ts = Timestamp{WallTime: p}
	}
	c.mu.ts = ts
	c.mu.Unlock()
	return ts
}

// Peek returns the last reading without advancing the clock.
func (c *Clock) Peek() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.ts
}

// PhysicalNow returns the physical clock's reading.
func (c *Clock) PhysicalNow() int64 { return c.cfg.Physical() }

// Update folds a received timestamp into c and returns a reading strictly
// after both remote and every earlier reading of c. A remote timestamp
// with a negative part (ErrInvalidTimestamp) or more than MaxOffset ahead
// of physical time (ErrRemoteAhead) is refused and leaves c unchanged.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	if err := remote.Valid(); err != nil {
		return Timestamp{}, err
	}
	p := c.cfg.Physical()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(p)
	if c.cfg.MaxOffset > 0 && remote.WallTime-p > int64(c.cfg.MaxOffset) {
		return Timestamp{}, fmt.Errorf("%w: %s is %v ahead of physical time, max offset %v",
			ErrRemoteAhead, remote, time.Duration(remote.WallTime-p), c.cfg.MaxOffset)
	}
	cur := c.mu.ts
	wall := max(p, cur.WallTime, remote.WallTime)
	var next Timestamp
	switch {
	case wall == cur.WallTime && wall == remote.WallTime:
		next = Timestamp{WallTime: wall, Logical: max(cur.Logical, remote.Logical)}.Next()
	case wall == cur.WallTime:
		next = cur.Next()
	case wall == remote.WallTime:
		next = remote.Next()
	default:
		next = Timestamp{WallTime: wall}
	}
	c.mu.ts = next
	return next, nil
}

// ForwardJumps returns how many forward jumps were detected.
func (c *Clock) ForwardJumps() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.jumps
}

// Forward moves c to at least t without the MaxOffset check: for bounds
// the node itself persisted (restart monotonicity), never for timestamps
// received from others.
func (c *Clock) Forward(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.ts.Less(t) {
		c.mu.ts = t
	}
}
