package swim

import (
	"math"
	"time"
)

// SuspicionMin returns the minimum suspicion timeout for a cluster of n
// members: mult * max(1, log10(n)) * interval.
func SuspicionMin(mult, n int, interval time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(float64(mult) * scale * float64(interval))
}

// Suspicion tracks one suspected member: the timer starts at max and
// shrinks toward min as independent members confirm the suspicion, by
// log(c+1)/log(k+1) of the way after c of the k expected confirmations.
// Not safe for concurrent use.
type Suspicion struct {
	start      time.Time
	min, max   time.Duration
	k          int
	confirmers map[uint64]struct{}
}

// NewSuspicion starts a suspicion at start raised by from. k is the number
// of confirmations that bring the timeout down to min (SuspicionMult-2 in
// practice; 0 when the cluster is too small, which means min at once).
func NewSuspicion(start time.Time, from uint64, k int, min, max time.Duration) *Suspicion {
	if max < min {
		max = min
	}
	s := &Suspicion{start: start, min: min, max: max, k: max0(k), confirmers: map[uint64]struct{}{from: {}}}
	return s
}

func max0(k int) int {
	if k < 0 {
		return 0
	}
	return k
}

// Confirm records a confirmation by from and reports whether it was new
// (a new confirmation is worth re-broadcasting). The originator and
// repeated confirmers do not count, nor do more than k.
func (s *Suspicion) Confirm(from uint64) bool {
	if len(s.confirmers)-1 >= s.k {
		return false
	}
	if _, ok := s.confirmers[from]; ok {
		return false
	}
	s.confirmers[from] = struct{}{}
	return true
}

// Confirmations returns the number of counted confirmations.
func (s *Suspicion) Confirmations() int { return len(s.confirmers) - 1 }

// Timeout returns the current total timeout.
func (s *Suspicion) Timeout() time.Duration {
	if s.k == 0 {
		return s.min
	}
	frac := math.Log(float64(s.Confirmations())+1) / math.Log(float64(s.k)+1)
	t := time.Duration(float64(s.max) - frac*float64(s.max-s.min))
	return max(t, s.min)
}

// Deadline returns when the suspected member is to be declared dead.
func (s *Suspicion) Deadline() time.Time { return s.start.Add(s.Timeout()) }
