// Package backoff is the wait between retries that every Pleiades retry
// loop uses: exponential from a minimum to a maximum, with jitter.
//
// The n-th wait (n = 0 first) is d = Min·2^n capped at Max, then jittered
// to a uniform draw from [d/2, d] ("equal jitter"): loops that failed
// together (every raftd of a cluster losing stored at once, the
// supervisor's children crashing together, clients retrying the same
// leader) spread out instead of retrying in lockstep, and a wait is never
// shorter than half its nominal value, so a loop still backs off.
//
// Policy computes waits without state (callers that count failures
// themselves, like the bus's dial backoff); Backoff counts a loop's
// consecutive failures and waits with a context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy bounds the waits. The zero Max means Min (a constant wait).
type Policy struct {
	// Min is the nominal first wait; must be positive.
	Min time.Duration
	// Max caps the nominal wait.
	Max time.Duration
}

// Nominal returns the n-th wait before jitter: Min·2^n, at most Max.
func (p Policy) Nominal(n int) time.Duration {
	hi := max(p.Max, p.Min)
	d := p.Min
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Delay returns the n-th wait (n = 0 first): Nominal(n) jittered to a
// uniform draw from [Nominal(n)/2, Nominal(n)].
func (p Policy) Delay(n int) time.Duration {
	d := p.Nominal(n)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}

// Backoff is a retry loop's state: the consecutive failures so far. The
// zero value with a Policy set is ready; it is not safe for concurrent
// use.
type Backoff struct {
	Policy
	n int
}

// New returns a Backoff waiting from min up to max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{Policy: Policy{Min: min, Max: max}}
}

// Next returns the wait after one more failure.
func (b *Backoff) Next() time.Duration {
	d := b.Delay(b.n)
	b.n++
	return d
}

// Reset starts over after a success: the next wait is about Min again.
func (b *Backoff) Reset() { b.n = 0 }

// Failures returns the failures counted since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// Wait waits Next(), or until ctx ends; it reports whether the wait
// completed (false: ctx ended first, stop retrying).
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
