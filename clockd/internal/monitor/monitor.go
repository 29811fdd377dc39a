package monitor

import (
	"errors"
	"fmt"
	"time"
)

// Sample is one four-timestamp exchange, in nanoseconds of the respective
// physical clocks.
type Sample struct {
	// T1 is the prober's clock when sending.
	T1 int64
	// T2 is the peer's clock on receipt.
	T2 int64
	// T3 is the peer's clock when replying.
	T3 int64
	// T4 is the prober's clock on receipt of the reply.
	T4 int64
}

// Estimate is a peer's offset as measured by one exchange.
type Estimate struct {
	// Offset is the peer's clock minus the local clock.
	Offset time.Duration
	// RTT is the round trip, without the peer's processing time.
	RTT time.Duration
	// Uncertainty bounds |Offset - true offset|.
	Uncertainty time.Duration
}

// ErrBadSample is returned for an exchange whose timestamps are
// inconsistent (a clock went backwards during it).
var ErrBadSample = errors.New("monitor: inconsistent probe timestamps")

// EstimateOf computes the offset estimate of s; readErr is the allowance for
// reading the two clocks, added to the uncertainty.
func EstimateOf(s Sample, readErr time.Duration) (Estimate, error) {
	if s.T4 < s.T1 || s.T3 < s.T2 {
		return Estimate{}, fmt.Errorf("%w: t1=%d t2=%d t3=%d t4=%d", ErrBadSample, s.T1, s.T2, s.T3, s.T4)
	}
	rtt := (s.T4 - s.T1) - (s.T3 - s.T2)
	if rtt < 0 {
		rtt = 0
	}
	// Sum first, halve second: (a+b)/2 without losing the odd nanosecond's
	// sign in the intermediate.
	off := ((s.T2 - s.T1) + (s.T3 - s.T4)) / 2
	return Estimate{
		Offset:      time.Duration(off),
		RTT:         time.Duration(rtt),
		Uncertainty: time.Duration(rtt/2+rtt%2) + readErr,
	}, nil
}

// Far reports whether e's offset exceeds threshold even at the near end of
// its uncertainty.
func (e Estimate) Far(threshold time.Duration) bool {
	off := e.Offset
	if off < 0 {
		off = -off
	}
	return off-e.Uncertainty > threshold
}

// Verdict is the health of the local clock.
type Verdict struct {
	// Healthy is false when a strict majority of reachable peers are far.
	Healthy bool
	// Reachable is the number of peers with a fresh estimate.
	Reachable int
	// Far is the number of those further than the threshold.
	Far int
	// Reason explains an unhealthy verdict.
	Reason string
}

// Judge returns the verdict over the fresh estimates of the reachable peers.
func Judge(fresh []Estimate, threshold time.Duration) Verdict {
	v := Verdict{Healthy: true, Reachable: len(fresh)}
	for _, e := range fresh {
		if e.Far(threshold) {
			v.Far++
		}
	}
	if v.Reachable > 0 && 2*v.Far > v.Reachable {
		v.Healthy = false
		v.Reason = fmt.Sprintf("clock offset beyond %v from %d of %d reachable peers", threshold, v.Far, v.Reachable)
	}
	return v
}
