package vivaldi

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Config tunes the Vivaldi algorithm. DefaultConfig documents each default.
type Config struct {
	// Dimensionality of the Euclidean part. Default 8 (Ledlie et al.: 4+
	// dimensions plus height beat 2-D plus height clearly; 8 as in Serf).
	Dimensionality int
	// ErrorMax caps (and starts) the error estimate. Default 1.5.
	ErrorMax float64
	// CE weights new error samples into the error estimate. Default 0.25
	// (Dabek et al.).
	CE float64
	// CC scales how far one sample moves the coordinate. Default 0.25
	// (Dabek et al.).
	CC float64
	// AdjustmentWindow is the number of recent prediction errors averaged
	// into the adjustment term; 0 disables it. Default 20.
	AdjustmentWindow int
	// HeightMin is the smallest height, in seconds. Default 10 µs.
	HeightMin float64
	// LatencyFilterSize is how many recent RTT samples per peer feed the
	// median filter. Default 3.
	LatencyFilterSize int
	// GravityRho is the distance scale (seconds) of the pull toward the
	// origin; larger is weaker. Default 150.
	GravityRho float64
	// MaxRTT rejects larger round trips as bogus. Default 10 s.
	MaxRTT time.Duration
}

// DefaultConfig returns the defaults described on Config.
func DefaultConfig() Config {
	return Config{
		Dimensionality:    8,
		ErrorMax:          1.5,
		CE:                0.25,
		CC:                0.25,
		AdjustmentWindow:  20,
		HeightMin:         10e-6,
		LatencyFilterSize: 3,
		GravityRho:        150,
		MaxRTT:            10 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dimensionality < 1:
		return fmt.Errorf("vivaldi: Dimensionality %d must be at least 1", c.Dimensionality)
	case !(c.ErrorMax > 0):
		return fmt.Errorf("vivaldi: ErrorMax %v must be positive", c.ErrorMax)
	case !(c.CE > 0 && c.CE <= 1):
		return fmt.Errorf("vivaldi: CE %v must be in (0, 1]", c.CE)
	case !(c.CC > 0 && c.CC <= 1):
		return fmt.Errorf("vivaldi: CC %v must be in (0, 1]", c.CC)
	case c.AdjustmentWindow < 0:
		return fmt.Errorf("vivaldi: AdjustmentWindow %d must not be negative", c.AdjustmentWindow)
	case c.HeightMin < 0:
		return fmt.Errorf("vivaldi: HeightMin %v must not be negative", c.HeightMin)
	case c.LatencyFilterSize < 1:
		return fmt.Errorf("vivaldi: LatencyFilterSize %d must be at least 1", c.LatencyFilterSize)
	case !(c.GravityRho > 0):
		return fmt.Errorf("vivaldi: GravityRho %v must be positive", c.GravityRho)
	case c.MaxRTT <= 0:
		return fmt.Errorf("vivaldi: MaxRTT %v must be positive", c.MaxRTT)
	}
	return nil
}

// ErrInvalidSample is returned by Update for a round trip or peer
// coordinate that must not be used.
var ErrInvalidSample = errors.New("vivaldi: invalid sample")

// Stats are counters of a Client.
type Stats struct {
	// Updates is the number of accepted samples.
	Updates uint64
	// Rejected is the number of rejected samples.
	Rejected uint64
	// Resets is how often the coordinate became invalid and was reset.
	Resets uint64
}

// Client maintains one node's coordinate.
type Client struct {
	cfg Config

	mu struct {
		sync.Mutex
		coord      *Coordinate
		origin     *Coordinate
		rng        *rand.Rand
		adjSamples []float64
		adjIndex   int
		latency    map[uint64][]float64
		stats      Stats
	}
}

// New returns a client at the origin. seed makes the random directions
// chosen for coincident points reproducible.
func New(cfg Config, seed uint64) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg}
	c.mu.coord = NewCoordinate(cfg)
	c.mu.origin = NewCoordinate(cfg)
	c.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c.mu.adjSamples = make([]float64, cfg.AdjustmentWindow)
	c.mu.latency = make(map[uint64][]float64)
	return c, nil
}

// Coordinate returns a copy of the current coordinate.
func (c *Client) Coordinate() *Coordinate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.coord.Clone()
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.stats
}

// Forget drops the latency filter of a peer (call when it leaves).
func (c *Client) Forget(peer uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.latency, peer)
}

// DistanceTo estimates the RTT from this node to o.
func (c *Client) DistanceTo(o *Coordinate) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.coord.DistanceTo(o)
}

// Update feeds one measured round trip to peer, whose coordinate is o,
// and returns the new local coordinate.
func (c *Client) Update(peer uint64, o *Coordinate, rtt time.Duration) (*Coordinate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o == nil || !o.Valid() || !c.mu.coord.Compatible(o) {
		c.mu.stats.Rejected++
		return nil, fmt.Errorf("peer %d coordinate is unusable: %w", peer, ErrInvalidSample)
	}
	if rtt <= 0 || rtt > c.cfg.MaxRTT {
		c.mu.stats.Rejected++
		return nil, fmt.Errorf("round trip %v to peer %d outside (0, %v]: %w", rtt, peer, c.cfg.MaxRTT, ErrInvalidSample)
	}
	sample := c.filterLocked(peer, rtt.Seconds())
	c.vivaldiLocked(o, sample)
	c.adjustLocked(o, sample)
	c.gravityLocked()
	if !c.mu.coord.Valid() {
		c.mu.stats.Resets++
		c.mu.coord = NewCoordinate(c.cfg)
	}
	c.mu.stats.Updates++
	return c.mu.coord.Clone(), nil
}

// filterLocked records a sample for peer and returns the median of the
// peer's recent samples.
func (c *Client) filterLocked(peer uint64, rtt float64) float64 {
	s := append(c.mu.latency[peer], rtt)
	if len(s) > c.cfg.LatencyFilterSize {
		s = s[1:]
	}
	c.mu.latency[peer] = s
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// vivaldiLocked is the core spring step: move along the line to o in
// proportion to the prediction error, weighted by relative confidence.
func (c *Client) vivaldiLocked(o *Coordinate, rtt float64) {
	cur := c.mu.coord
	dist := cur.rawDistance(o)
	wrongness := math.Abs(dist-rtt) / rtt
	total := cur.Error + o.Error
	if total < zeroThreshold {
		total = zeroThreshold
	}
	weight := cur.Error / total
	cur.Error = c.cfg.CE*weight*wrongness + cur.Error*(1-c.cfg.CE*weight)
	cur.Error = math.Min(cur.Error, c.cfg.ErrorMax)
	force := c.cfg.CC * weight * (rtt - dist)
	c.mu.coord = cur.applyForce(c.cfg, c.mu.rng, force, o)
}

// adjustLocked updates the adjustment term: half the mean of the recent
// differences between measured and predicted (unadjusted) distance.
func (c *Client) adjustLocked(o *Coordinate, rtt float64) {
	w := c.cfg.AdjustmentWindow
	if w == 0 {
		return
	}
	c.mu.adjSamples[c.mu.adjIndex] = rtt - c.mu.coord.rawDistance(o)
	c.mu.adjIndex = (c.mu.adjIndex + 1) % w
	var sum float64
	for _, s := range c.mu.adjSamples {
		sum += s
	}
	c.mu.coord.Adjustment = sum / (2 * float64(w))
}

// gravityLocked pulls the coordinate toward the origin, quadratically in
// its distance from it.
func (c *Client) gravityLocked() {
	d := c.mu.coord.DistanceTo(c.mu.origin).Seconds()
	force := -math.Pow(d/c.cfg.GravityRho, 2)
	c.mu.coord = c.mu.coord.applyForce(c.cfg, c.mu.rng, force, c.mu.origin)
}
