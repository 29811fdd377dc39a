package monitor

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestEstimateWithinUncertainty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		theta := r.Int64N(4e9) - 2e9 // peer minus local
		d1, d2 := r.Int64N(5e6), r.Int64N(5e6)
		proc := r.Int64N(1e6)
		t1 := int64(1.7e18) + r.Int64N(1e12)
		t2 := t1 + d1 + theta
		t3 := t2 + proc
		t4 := t3 - theta + d2
		e, err := EstimateOf(Sample{t1, t2, t3, t4}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := int64(e.Offset) - theta; diff > int64(e.Uncertainty) || -diff > int64(e.Uncertainty) {
			t.Fatalf("theta %d: estimate %v ± %v misses by %d", theta, e.Offset, e.Uncertainty, diff)
		}
		if e.RTT != time.Duration(d1+d2) {
			t.Fatalf("rtt %v, want %v", e.RTT, time.Duration(d1+d2))
		}
	}
}

func TestEstimateRefusesInconsistentSample(t *testing.T) {
	for _, s := range []Sample{{T1: 10, T2: 5, T3: 6, T4: 9}, {T1: 1, T2: 7, T3: 6, T4: 9}} {
		if _, err := EstimateOf(s, 0); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

// view returns what node i sees of the others when node clocks have the
// given skews: exact estimates with a small uncertainty.
func view(skews []time.Duration, i int) []Estimate {
	var out []Estimate
	for j, s := range skews {
		if j != i {
			out = append(out, Estimate{Offset: s - skews[i], RTT: time.Millisecond, Uncertainty: time.Millisecond})
		}
	}
	return out
}

func TestJudgeMajority(t *testing.T) {
	const threshold = 400 * time.Millisecond
	for _, n := range []int{3, 5} {
		for skewed := 0; skewed < n; skewed++ {
			for _, skew := range []time.Duration{time.Second, -time.Second} {
				skews := make([]time.Duration, n)
				for i := range skews {
					skews[i] = time.Duration(i) * 10 * time.Millisecond // healthy jitter
				}
				skews[skewed] += skew
				for i := 0; i < n; i++ {
					v := Judge(view(skews, i), threshold)
					if want := i != skewed; v.Healthy != want {
						t.Errorf("n=%d skewed=%d skew=%v: node %d healthy=%v (%+v), want %v", n, skewed, skew, i, v.Healthy, v, want)
					}
				}
			}
		}
	}
}

func TestJudgeEdges(t *testing.T) {
	far := Estimate{Offset: time.Second}
	near := Estimate{Offset: time.Millisecond}
	// Uncertainty gives the benefit of the doubt.
	if (Estimate{Offset: 500 * time.Millisecond, Uncertainty: 200 * time.Millisecond}).Far(400 * time.Millisecond) {
		t.Error("a peer within threshold+uncertainty counted far")
	}
	for _, tt := range []struct {
		name string
		in   []Estimate
		want bool
	}{
		{"no peers", nil, true},
		{"one far of one", []Estimate{far}, false},
		{"one far of two", []Estimate{far, near}, true},
		{"two far of three", []Estimate{far, far, near}, false},
		{"two far of four", []Estimate{far, far, near, near}, true},
	} {
		if got := Judge(tt.in, 400*time.Millisecond).Healthy; got != tt.want {
			t.Errorf("%s: healthy=%v, want %v", tt.name, got, tt.want)
		}
	}
}
