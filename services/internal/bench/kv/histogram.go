package kv

import (
	"math"
	"math/bits"
	"time"
)

// subBits is log2 of the linear sub-buckets per power of two: 2^7 = 128
// sub-buckets bound the relative error of a recorded value to 1/128.
const subBits = 7

// histogram records durations in log-linear buckets, in the manner of an
// HDR histogram: each power of two of nanoseconds is split into 2^subBits
// equal buckets, so quantiles are exact to within 1% at any scale. It is
// not safe for concurrent use; give each worker its own and merge.
type histogram struct {
	counts        []uint64
	n             uint64
	sum, min, max time.Duration
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, (64-subBits+1)<<subBits)}
}

// bucket returns v's bucket index.
func bucket(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	exp := bits.Len64(v) - subBits - 1 // shift that leaves subBits+1 significant bits
	return (exp+1)<<subBits + int(v>>exp) - 1<<subBits
}

// bucketHigh returns the largest value of bucket i.
func bucketHigh(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	exp := i>>subBits - 1
	mant := uint64(i&(1<<subBits-1)) + 1<<subBits
	return (mant+1)<<exp - 1
}

// record adds one duration (negative counts as zero).
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucket(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
}

// merge adds o's values to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value at quantile q in [0, 1]: the upper bound of
// the bucket holding the ceil(q*n)-th smallest value, capped at the
// largest value recorded.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.max)
		}
	}
	return h.max
}

// mean returns the average value.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}
