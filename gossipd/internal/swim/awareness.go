package swim

import (
	"sync"
	"time"
)

// Awareness is Lifeguard's local health score: 0 is healthy, max-1 is the
// worst. Missed acks and nacks raise it, successful probes lower it, and
// the probe interval and timeout are stretched by (score+1). Safe for
// concurrent use.
type Awareness struct {
	max int

	mu struct {
		sync.Mutex
		score int
	}
}

// NewAwareness returns a healthy score bounded by max (at least 1).
func NewAwareness(max int) *Awareness {
	if max < 1 {
		max = 1
	}
	return &Awareness{max: max}
}

// Apply adds delta to the score, clamped to [0, max-1].
func (a *Awareness) Apply(delta int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mu.score = min(max(a.mu.score+delta, 0), a.max-1)
}

// Score returns the current score.
func (a *Awareness) Score() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.score
}

// Scale stretches d by (score+1).
func (a *Awareness) Scale(d time.Duration) time.Duration {
	return d * time.Duration(a.Score()+1)
}
