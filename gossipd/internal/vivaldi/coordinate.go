package vivaldi

import (
	"math"
	"math/rand/v2"
	"time"
)

// zeroThreshold is the distance below which two vectors are treated as the
// same point (a random direction is then chosen for the force).
const zeroThreshold = 1e-6

// Coordinate is a point in the Vivaldi space. All fields are in seconds
// except Error, which is dimensionless.
type Coordinate struct {
	// Vec is the Euclidean part.
	Vec []float64
	// Error is the confidence in the coordinate (lower is better).
	Error float64
	// Adjustment is added to every distance involving this node.
	Adjustment float64
	// Height models the access link; it is added to Euclidean distances.
	Height float64
}

// NewCoordinate returns the origin of a space with cfg's dimensionality,
// with maximum error and the minimum height.
func NewCoordinate(cfg Config) *Coordinate {
	return &Coordinate{
		Vec:    make([]float64, cfg.Dimensionality),
		Error:  cfg.ErrorMax,
		Height: cfg.HeightMin,
	}
}

// Clone returns a deep copy.
func (c *Coordinate) Clone() *Coordinate {
	out := *c
	out.Vec = append([]float64(nil), c.Vec...)
	return &out
}

// Valid reports whether every component is a finite number.
func (c *Coordinate) Valid() bool {
	for _, v := range c.Vec {
		if !finite(v) {
			return false
		}
	}
	return finite(c.Error) && finite(c.Adjustment) && finite(c.Height)
}

// Compatible reports whether c and o have the same dimensionality.
func (c *Coordinate) Compatible(o *Coordinate) bool { return len(c.Vec) == len(o.Vec) }

// DistanceTo returns the estimated round-trip time between c and o,
// including heights and (when the result stays positive) adjustments.
// Coordinates of different dimensionality yield 0.
func (c *Coordinate) DistanceTo(o *Coordinate) time.Duration {
	if !c.Compatible(o) {
		return 0
	}
	d := c.rawDistance(o)
	if adj := d + c.Adjustment + o.Adjustment; adj > 0 {
		d = adj
	}
	return time.Duration(d * float64(time.Second))
}

// rawDistance is the Euclidean distance plus both heights, in seconds.
func (c *Coordinate) rawDistance(o *Coordinate) float64 {
	return magnitude(diff(c.Vec, o.Vec)) + c.Height + o.Height
}

// applyForce moves c by force seconds along the direction from o to c
// (away from o for a positive force) and returns the result.
func (c *Coordinate) applyForce(cfg Config, rng *rand.Rand, force float64, o *Coordinate) *Coordinate {
	out := c.Clone()
	unit, mag := unitVector(rng, c.Vec, o.Vec)
	for i := range out.Vec {
		out.Vec[i] += unit[i] * force
	}
	if mag > zeroThreshold {
		out.Height = (out.Height+o.Height)*force/mag + out.Height
		out.Height = math.Max(out.Height, cfg.HeightMin)
	}
	return out
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func diff(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func magnitude(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// unitVector returns the unit vector from b to a and the distance between
// them; for coincident points it returns a random direction and 0.
func unitVector(rng *rand.Rand, a, b []float64) ([]float64, float64) {
	d := diff(a, b)
	if mag := magnitude(d); mag > zeroThreshold {
		for i := range d {
			d[i] /= mag
		}
		return d, mag
	}
	for {
		for i := range d {
			d[i] = rng.Float64() - 0.5
		}
		if mag := magnitude(d); mag > zeroThreshold {
			for i := range d {
				d[i] /= mag
			}
			return d, 0
		}
	}
}
