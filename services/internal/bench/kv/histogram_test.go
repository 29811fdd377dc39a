package kv

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 123456789, 1 << 40, 1<<63 - 1} {
		i := bucket(v)
		if hi := bucketHigh(i); hi < v {
			t.Errorf("bucket(%d) = %d with high %d below the value", v, i, hi)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Errorf("bucket(%d) = %d but bucket %d already reaches %d", v, i, i-1, bucketHigh(i-1))
		}
		if hi := bucketHigh(i); v >= 1<<subBits && float64(hi-v) > float64(v)/float64(1<<subBits) {
			t.Errorf("bucket of %d ends at %d: more than 1/%d off", v, hi, 1<<subBits)
		}
	}
}

func TestQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func(i int) time.Duration
		n    int
	}{
		{"uniform ms", func(int) time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }, 10000},
		{"exponential", func(int) time.Duration { return time.Duration(rng.ExpFloat64() * float64(time.Millisecond)) }, 20000},
		{"constant", func(int) time.Duration { return 1500 * time.Microsecond }, 100},
		{"tiny", func(i int) time.Duration { return time.Duration(i % 50) }, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newHistogram(), newHistogram()
			var vals []time.Duration
			for i := range tt.n {
				v := tt.gen(i)
				vals = append(vals, v)
				if i%2 == 0 {
					a.record(v)
				} else {
					b.record(v)
				}
			}
			a.merge(b)
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(float64(len(vals))*q+0.999999) - 1
				want := vals[max(rank, 0)]
				got := a.quantile(q)
				if got < want || float64(got-want) > float64(want)/float64(1<<subBits)+1 {
					t.Errorf("quantile(%v) = %v; want %v within 1/%d above", q, got, want, 1<<subBits)
				}
			}
			if a.n != uint64(tt.n) || a.min != vals[0] || a.max != vals[len(vals)-1] {
				t.Errorf("n %d min %v max %v; want %d %v %v", a.n, a.min, a.max, tt.n, vals[0], vals[len(vals)-1])
			}
		})
	}
	if q := newHistogram().quantile(0.5); q != 0 {
		t.Errorf("empty quantile = %v", q)
	}
}
