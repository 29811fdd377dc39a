//go:build e2edocker

package e2edocker

import (
	"sort"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// history is the registers' history (kvclienttest.History: porcupine's
// model of registers read, written and compared-and-swapped, checked per
// key) and the return times of acknowledged writes, for the stall
// figures.
type history struct {
	*kvclienttest.History
	mu sync.Mutex
	// acks are the return times of acknowledged writes (puts, CAS and
	// write-once keys).
	acks []time.Time
}

func newHistory() *history { return &history{History: kvclienttest.NewHistory()} }

// add records an operation called at call and returned at ret.
func (h *history) add(client int, in kvclienttest.Op, out kvclienttest.Outcome, call, ret time.Time) {
	h.Add(client, in, out, call, ret)
	if in.Kind != kvclienttest.OpGet && !out.Unknown {
		h.ack(ret)
	}
}

// ack records an acknowledged write outside the register history.
func (h *history) ack(ret time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acks = append(h.acks, ret)
}

// longestStall is the longest time without an acknowledged write between
// from and to.
func (h *history) longestStall(from, to time.Time) time.Duration {
	h.mu.Lock()
	var ends []time.Time
	for _, a := range h.acks {
		if a.After(from) && a.Before(to) {
			ends = append(ends, a)
		}
	}
	h.mu.Unlock()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	prev, gap := from, time.Duration(0)
	for _, e := range append(ends, to) {
		gap = max(gap, e.Sub(prev))
		prev = e
	}
	return gap
}
