package kvclient

import (
	"bytes"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// rangeCache maps keys to ranges and ranges to the leader's raftd address,
// as learnt from Descriptors answers and NotLeader hints. It is safe for
// concurrent use.
type rangeCache struct {
	mu struct {
		sync.Mutex
		// ranges is sorted by start key and non-overlapping.
		ranges []cachedRange
		// leaders maps range id to the leader's raftd bus address.
		leaders map[uint64]string
		// lastRefresh is when the last Descriptors refresh started.
		lastRefresh time.Time
		// refreshing is set while one refresh is running.
		refreshing bool
		// unsupported is set when the server does not implement
		// Descriptors; the cache then only holds nothing.
		unsupported bool
	}
}

type cachedRange struct {
	id         uint64
	start, end []byte // end empty: end of keyspace
	generation uint64
}

func newRangeCache() *rangeCache {
	rc := &rangeCache{}
	rc.mu.leaders = make(map[uint64]string)
	return rc
}

func (r cachedRange) contains(key []byte) bool {
	return bytes.Compare(key, r.start) >= 0 && (len(r.end) == 0 || bytes.Compare(key, r.end) < 0)
}

// lookup returns the range holding key and its leader ("" if unknown).
func (rc *rangeCache) lookup(key []byte) (id uint64, leader string, ok bool) {
	r, leader, ok := rc.lookupRange(key)
	return r.id, leader, ok
}

// lookupRange returns the cached range holding key and its leader.
func (rc *rangeCache) lookupRange(key []byte) (cachedRange, string, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rs := rc.mu.ranges
	// The first range whose end is past key (ends are ordered like starts).
	i := sort.Search(len(rs), func(i int) bool {
		return len(rs[i].end) == 0 || bytes.Compare(rs[i].end, key) > 0
	})
	if i == len(rs) || !rs[i].contains(key) {
		return cachedRange{}, "", false
	}
	return rs[i], rc.mu.leaders[rs[i].id], true
}

// setLeader records addr as the leader of range id.
func (rc *rangeCache) setLeader(id uint64, addr string) {
	if id == 0 || addr == "" {
		return
	}
	rc.mu.Lock()
	rc.mu.leaders[id] = addr
	rc.mu.Unlock()
}

// clearLeader forgets the leader of range id if it is still addr.
func (rc *rangeCache) clearLeader(id uint64, addr string) {
	rc.mu.Lock()
	if rc.mu.leaders[id] == addr {
		delete(rc.mu.leaders, id)
	}
	rc.mu.Unlock()
}

// beginRefresh reports whether the caller should refresh now: no refresh
// is running, the server supports Descriptors, and the last refresh began
// at least every ago. It marks a refresh as running; call endRefresh.
func (rc *rangeCache) beginRefresh(now time.Time, every time.Duration) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.refreshing || rc.mu.unsupported || (!rc.mu.lastRefresh.IsZero() && now.Sub(rc.mu.lastRefresh) < every) {
		return false
	}
	rc.mu.refreshing = true
	rc.mu.lastRefresh = now
	return true
}

// endRefresh installs the descriptors of a refresh (resp nil: it failed;
// unsupported: the server lacks the method).
func (rc *rangeCache) endRefresh(resp *kvpb.DescriptorsResponse, unsupported bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.mu.refreshing = false
	if unsupported {
		rc.mu.unsupported = true
		return
	}
	if resp != nil {
		rc.installRespLocked(resp)
	}
}

// markUnsupported notes that the servers lack Descriptors: no refresh is
// tried again.
func (rc *rangeCache) markUnsupported() {
	rc.mu.Lock()
	rc.mu.unsupported = true
	rc.mu.Unlock()
}

// install adds the descriptors and leaders of resp.
func (rc *rangeCache) install(resp *kvpb.DescriptorsResponse) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.installRespLocked(resp)
}

func (rc *rangeCache) installRespLocked(resp *kvpb.DescriptorsResponse) {
	rc.installLocked(resp.GetDescriptors())
	for id, addr := range resp.GetLeaders() {
		if addr != "" {
			rc.mu.leaders[id] = addr
		}
	}
}

// installLocked replaces the cached ranges overlapping the given
// descriptors (one answer's: they do not overlap each other) with them.
// Only the window of cached ranges between the lowest start and the
// highest end of the descriptors is looked at and rewritten, so a
// mismatch's two or three descriptors cost a binary search and a copy of
// the cache's tail, not a pass over every range and a sort of them all.
func (rc *rangeCache) installLocked(descs []*kvpb.RangeDescriptor) {
	if len(descs) == 0 {
		return
	}
	fresh := make([]cachedRange, 0, len(descs))
	ids := make(map[uint64]bool, len(descs))
	for _, d := range descs {
		fresh = append(fresh, cachedRange{id: d.GetRangeId(), start: d.GetStartKey(), end: d.GetEndKey(), generation: d.GetGeneration()})
		ids[d.GetRangeId()] = true
	}
	byStart := func(a, b cachedRange) int { return bytes.Compare(a.start, b.start) }
	slices.SortFunc(fresh, byStart)
	rs := rc.mu.ranges
	// Cached ranges before lo end at or before every fresh start; those
	// from hi on start at or after every fresh end.
	minStart := fresh[0].start
	lo := sort.Search(len(rs), func(i int) bool { return len(rs[i].end) == 0 || bytes.Compare(rs[i].end, minStart) > 0 })
	hi := len(rs)
	var maxEnd []byte
	bounded := true
	for _, f := range fresh {
		if len(f.end) == 0 {
			bounded = false
			break
		}
		if bytes.Compare(f.end, maxEnd) > 0 {
			maxEnd = f.end
		}
	}
	if bounded {
		hi = sort.Search(len(rs), func(i int) bool { return bytes.Compare(rs[i].start, maxEnd) >= 0 })
	}
	hi = max(hi, lo)
	merged := make([]cachedRange, 0, hi-lo+len(fresh))
	j := 0 // the first fresh range that may overlap the cached one at hand
	for _, old := range rs[lo:hi] {
		for j < len(fresh) && len(fresh[j].end) != 0 && bytes.Compare(fresh[j].end, old.start) <= 0 {
			j++
		}
		overlaps := j < len(fresh) && spansOverlap(old.start, old.end, fresh[j].start, fresh[j].end)
		if !overlaps {
			merged = append(merged, old)
		} else if !ids[old.id] {
			delete(rc.mu.leaders, old.id)
		}
	}
	merged = append(merged, fresh...)
	slices.SortFunc(merged, byStart)
	rc.mu.ranges = slices.Replace(rs, lo, hi, merged...)
}

// spansOverlap reports whether [s1, e1) and [s2, e2) intersect; an empty
// end is the end of the keyspace.
func spansOverlap(s1, e1, s2, e2 []byte) bool {
	before := func(end, start []byte) bool { return len(end) != 0 && bytes.Compare(end, start) <= 0 }
	return !before(e1, s2) && !before(e2, s1)
}
