package kvclient

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// benchRanges is how many descriptors the range-cache benchmarks cache.
const benchRanges = 100_000

// benchKey is the i-th split point of the benchmarks' keyspace.
func benchKey(i int) []byte { return fmt.Appendf(nil, "user/%09d", i*10) }

// benchDescs tiles the keyspace with n ranges at generation gen, as a
// Descriptors answer decoded from the wire (so the cache holds what a
// client really receives).
func benchDescs(b *testing.B, n int, gen uint64) *kvpb.DescriptorsResponse {
	b.Helper()
	resp := &kvpb.DescriptorsResponse{Leaders: map[uint64]string{}}
	for i := range n {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 2), Generation: gen}
		if i > 0 {
			d.StartKey = benchKey(i)
		} else {
			d.StartKey = []byte{0x01}
		}
		if i < n-1 {
			d.EndKey = benchKey(i + 1)
		}
		d.Replicas = []*kvpb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}, {NodeId: 3, ReplicaId: 3}}
		resp.Descriptors = append(resp.Descriptors, d)
		resp.Leaders[d.RangeId] = fmt.Sprintf("10.0.0.%d:7000", i%3+1)
	}
	wire, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	out := &kvpb.DescriptorsResponse{}
	if err := proto.Unmarshal(wire, out); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkRangeCacheLookup is the cost of routing one key through a
// cache of benchRanges ranges: the binary search and the leader map read,
// under the cache's lock.
func BenchmarkRangeCacheLookup(b *testing.B) {
	rc := newRangeCache()
	rc.install(benchDescs(b, benchRanges, 1))
	keys := make([][]byte, 1024)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user/%09d", r.IntN(benchRanges*10))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, leader, ok := rc.lookup(keys[i%len(keys)]); !ok || leader == "" {
			b.Fatalf("lookup(%q) missed", keys[i%len(keys)])
		}
	}
}

// BenchmarkRangeCacheInstallMismatch is the cost of installing the
// descriptors of a RangeKeyMismatch (the two sides of a split: the range
// as it is now and its new right neighbour) into a cache of benchRanges
// ranges.
func BenchmarkRangeCacheInstallMismatch(b *testing.B) {
	rc := newRangeCache()
	rc.install(benchDescs(b, benchRanges, 1))
	r := rand.New(rand.NewPCG(3, 4))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Split range j at its middle, then merge it back so the cache
		// keeps its size: each install carries two descriptors or one.
		j := 1 + r.IntN(benchRanges-2)
		start, end := benchKey(j), benchKey(j+1)
		mid := fmt.Appendf(nil, "user/%09d", j*10+5)
		gen := uint64(2*i + 2)
		rc.install(&kvpb.DescriptorsResponse{Descriptors: []*kvpb.RangeDescriptor{
			{RangeId: uint64(j + 2), StartKey: start, EndKey: mid, Generation: gen},
			{RangeId: uint64(benchRanges + 10 + i), StartKey: mid, EndKey: end, Generation: gen},
		}})
		rc.install(&kvpb.DescriptorsResponse{Descriptors: []*kvpb.RangeDescriptor{
			{RangeId: uint64(j + 2), StartKey: start, EndKey: end, Generation: gen + 1},
		}})
	}
	b.StopTimer()
	if n := len(rc.mu.ranges); n != benchRanges {
		b.Fatalf("cache holds %d ranges after the installs, want %d", n, benchRanges)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/install")
}

// BenchmarkRangeCacheMemory reports the heap a cache of benchRanges
// ranges, with a leader each, keeps alive: bytes/descriptor, measured
// after the Descriptors answer it was filled from is dropped (the cached
// keys share that answer's decoded buffers, which stay alive with them).
func BenchmarkRangeCacheMemory(b *testing.B) {
	var perDesc float64
	for b.Loop() {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp := benchDescs(b, benchRanges, 1)
		b.StartTimer()
		rc := newRangeCache()
		rc.install(resp)
		b.StopTimer()
		resp = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		if _, _, ok := rc.lookup(benchKey(benchRanges / 2)); !ok {
			b.Fatal("lookup missed")
		}
		perDesc = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / benchRanges
		runtime.KeepAlive(rc)
		b.StartTimer()
	}
	b.ReportMetric(perDesc, "bytes/descriptor")
}
