//go:build e2edocker

package e2edocker

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// opKind is the kind of a recorded operation.
type opKind int

const (
	opGet opKind = iota
	opPut
	opCAS
)

// op is one operation on one key's register.
type op struct {
	kind     opKind
	key      string
	value    string
	expected string
	// absent: a CAS expecting the key absent.
	absent bool
}

// outcome is what an operation returned.
type outcome struct {
	// unknown: a write that failed; it may have applied at any time after
	// its call (recorded with an infinite return time).
	unknown bool
	found   bool
	value   string
	// swapped: a CAS whose comparison held.
	swapped bool
}

type register struct {
	found bool
	value string
}

// model is independent registers, one per key, read, written and
// compared-and-swapped; a failed CAS reports the current value.
var model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, o := range h {
			k := o.Input.(op).key
			by[k] = append(by[k], o)
		}
		keys := make([]string, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return register{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(register), input.(op), output.(outcome)
		switch in.kind {
		case opPut:
			return true, register{found: true, value: in.value}
		case opCAS:
			match := st.found && st.value == in.expected
			if in.absent {
				match = !st.found
			}
			next := st
			if match {
				next = register{found: true, value: in.value}
			}
			switch {
			case out.unknown:
				return true, next
			case out.swapped:
				return match, next
			default:
				return !match && out.found == st.found && out.value == st.value, st
			}
		default:
			return out.found == st.found && (!st.found || out.value == st.value), st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(op), output.(outcome)
		res := "?"
		if !out.unknown {
			res = fmt.Sprintf("%q", out.value)
			if !out.found {
				res = "absent"
			}
		}
		switch in.kind {
		case opPut:
			return fmt.Sprintf("put(%s, %q)", in.key, in.value)
		case opCAS:
			exp := fmt.Sprintf("%q", in.expected)
			if in.absent {
				exp = "absent"
			}
			if out.unknown {
				return fmt.Sprintf("cas(%s, %s -> %q) = ?", in.key, exp, in.value)
			}
			return fmt.Sprintf("cas(%s, %s -> %q) = %v, %s", in.key, exp, in.value, out.swapped, res)
		}
		return fmt.Sprintf("get(%s) = %s", in.key, res)
	},
}

// history records operations with their call and return times.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// acks are the return times of acknowledged writes (puts, CAS and
	// write-once keys), for the stall figures.
	acks []time.Time
}

func newHistory() *history { return &history{start: time.Now()} }

// add records an operation called at call and returned at ret.
func (h *history) add(client int, in op, out outcome, call, ret time.Time) {
	r := ret.Sub(h.start).Nanoseconds()
	if out.unknown {
		r = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call.Sub(h.start).Nanoseconds(), Output: out, Return: r})
	if in.kind != opGet && !out.unknown {
		h.acks = append(h.acks, ret)
	}
}

// ack records an acknowledged write outside the register history.
func (h *history) ack(ret time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acks = append(h.acks, ret)
}

// counts returns the recorded operations by kind, and unknown outcomes.
func (h *history) counts() (gets, puts, cas, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range h.ops {
		switch o.Input.(op).kind {
		case opGet:
			gets++
		case opPut:
			puts++
		case opCAS:
			cas++
		}
		if o.Output.(outcome).unknown {
			unknown++
		}
	}
	return
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

// check runs porcupine over the history.
func (h *history) check(timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	return porcupine.CheckOperationsVerbose(model, ops, timeout)
}

// illegalKeys checks each key alone and returns the keys whose history
// is not linearizable (Unknown when the check timed out counts as fine).
func (h *history) illegalKeys(timeout time.Duration) []string {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	var bad []string
	for _, part := range model.Partition(ops) {
		if porcupine.CheckOperationsTimeout(model, part, timeout) == porcupine.Illegal {
			bad = append(bad, part[0].Input.(op).key)
		}
	}
	return bad
}

// dump writes key's operations, by call time, as text.
func (h *history) dump(w io.Writer, key string) error {
	h.mu.Lock()
	var ops []porcupine.Operation
	for _, o := range h.ops {
		if o.Input.(op).key == key {
			ops = append(ops, o)
		}
	}
	h.mu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	for _, o := range ops {
		ret := "inf"
		if o.Return != math.MaxInt64 {
			ret = strconv.FormatInt(o.Return/1e3, 10)
		}
		if _, err := fmt.Fprintf(w, "client %3d  call %12dus  return %12sus  %s\n", o.ClientId, o.Call/1e3, ret, model.DescribeOperation(o.Input, o.Output)); err != nil {
			return err
		}
	}
	return nil
}
