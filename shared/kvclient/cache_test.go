package kvclient

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// installReference is the plain form of installLocked: every cached range
// checked against every descriptor, then everything sorted.
func installReference(ranges []cachedRange, leaders map[uint64]string, descs []*kvpb.RangeDescriptor) []cachedRange {
	var fresh []cachedRange
	for _, d := range descs {
		fresh = append(fresh, cachedRange{id: d.GetRangeId(), start: d.GetStartKey(), end: d.GetEndKey(), generation: d.GetGeneration()})
	}
	var out []cachedRange
	for _, old := range ranges {
		overlaps, replaced := false, false
		for _, f := range fresh {
			overlaps = overlaps || spansOverlap(old.start, old.end, f.start, f.end)
			replaced = replaced || f.id == old.id
		}
		if !overlaps {
			out = append(out, old)
		} else if !replaced {
			delete(leaders, old.id)
		}
	}
	out = append(out, fresh...)
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].start, out[j].start) < 0 })
	return out
}

// tiling returns descriptors tiling [start, end) at the given cut points.
func tiling(next *uint64, start, end []byte, cuts [][]byte) []*kvpb.RangeDescriptor {
	var out []*kvpb.RangeDescriptor
	s := start
	for _, c := range append(cuts, end) {
		*next++
		out = append(out, &kvpb.RangeDescriptor{RangeId: *next, StartKey: s, EndKey: c, Generation: *next})
		s = c
	}
	return out
}

// TestInstallMatchesReference: installing random answers — a few
// neighbouring ranges (a split's or a merge's sides), or everything —
// into a random cache leaves the same ranges and leaders as the plain
// algorithm.
func TestInstallMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(i int) []byte { return []byte(fmt.Sprintf("k%04d", i)) }
	for round := range 300 {
		var next uint64
		// A cache of a tiling of the keyspace at random cut points, with
		// leaders for some ranges.
		n := rng.IntN(40)
		var cuts [][]byte
		for _, c := range rng.Perm(1000)[:n] {
			cuts = append(cuts, key(c))
		}
		slices.SortFunc(cuts, bytes.Compare)
		rc := newRangeCache()
		rc.install(&kvpb.DescriptorsResponse{Descriptors: tiling(&next, nil, nil, cuts)})
		for _, r := range rc.mu.ranges {
			if rng.IntN(2) == 0 {
				rc.mu.leaders[r.id] = fmt.Sprintf("node%d", r.id)
			}
		}
		for range 5 {
			// An answer: a random span cut into 1-3 ranges.
			a, b := rng.IntN(1000), rng.IntN(1000)
			if a > b {
				a, b = b, a
			}
			var s, e []byte
			if rng.IntN(4) > 0 {
				s = key(a)
			}
			if rng.IntN(4) > 0 && a != b {
				e = key(b)
			}
			var inner [][]byte
			if len(e) != 0 && b-a > 2 {
				for c := a + 1; c < b && len(inner) < 2; c += 1 + rng.IntN(b-a) {
					inner = append(inner, key(c))
				}
			} else if len(e) == 0 {
				inner = append(inner, key(min(a+1, 999)))
				if bytes.Compare(inner[0], s) <= 0 {
					inner = nil
				}
			}
			descs := tiling(&next, s, e, inner)
			rng.Shuffle(len(descs), func(i, j int) { descs[i], descs[j] = descs[j], descs[i] })
			wantLeaders := maps(rc.mu.leaders)
			want := installReference(slices.Clone(rc.mu.ranges), wantLeaders, descs)
			rc.install(&kvpb.DescriptorsResponse{Descriptors: descs})
			if fmt.Sprint(rc.mu.ranges) != fmt.Sprint(want) {
				t.Fatalf("round %d: installing %v\ngot  %v\nwant %v", round, descs, rc.mu.ranges, want)
			}
			if fmt.Sprint(rc.mu.leaders) != fmt.Sprint(wantLeaders) {
				t.Fatalf("round %d: leaders %v; want %v", round, rc.mu.leaders, wantLeaders)
			}
		}
	}
}

func maps(m map[uint64]string) map[uint64]string {
	out := make(map[uint64]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
