package kvclienttest

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

// OpKind is the kind of a recorded KV operation.
type OpKind int

// Operation kinds of a History.
const (
	OpGet OpKind = iota
	OpPut
	OpCAS
)

// Op is one operation on one key: a linearizable Get, a Put of Value, or
// a CompareAndSwap that writes Value when the key holds Expected (or is
// absent, with ExpectAbsent).
type Op struct {
	Kind         OpKind
	Key          string
	Value        string
	Expected     string
	ExpectAbsent bool
}

// Outcome is what an operation returned.
type Outcome struct {
	// Unknown: the operation failed in a way that leaves its effect
	// unknown (a timeout, a lost connection, a context that ended): it
	// may have taken effect at any time after its call. A Get that
	// failed is not recorded at all.
	Unknown bool
	// Found and Value: a Get's result, or the current value a failed
	// CompareAndSwap reported.
	Found bool
	Value string
	// Succeeded: a CompareAndSwap's comparison held.
	Succeeded bool
}

// register is the model's state for one key.
type register struct {
	found bool
	value string
}

// Model is the porcupine model of a History: independent registers per
// key, each read, written, and compared-and-swapped. A failed
// CompareAndSwap must report the register's value as its current value.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(Op).Key
			by[k] = append(by[k], op)
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
		st, in, out := state.(register), input.(Op), output.(Outcome)
		switch in.Kind {
		case OpPut:
			return true, register{found: true, value: in.Value}
		case OpCAS:
			match := !st.found
			if !in.ExpectAbsent {
				match = st.found && st.value == in.Expected
			}
			next := st
			if match {
				next = register{found: true, value: in.Value}
			}
			switch {
			case out.Unknown:
				return true, next
			case out.Succeeded:
				return match, next
			default:
				return !match && out.Found == st.found && out.Value == st.value, st
			}
		default:
			return out.Found == st.found && (!st.found || out.Value == st.value), st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(Op), output.(Outcome)
		res := "?"
		if !out.Unknown {
			res = fmt.Sprintf("%q", out.Value)
			if !out.Found {
				res = "absent"
			}
		}
		switch in.Kind {
		case OpPut:
			return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
		case OpCAS:
			exp := fmt.Sprintf("%q", in.Expected)
			if in.ExpectAbsent {
				exp = "absent"
			}
			if !out.Unknown && !out.Succeeded {
				res = "failed, current " + res
			} else if !out.Unknown {
				res = "ok"
			}
			return fmt.Sprintf("cas(%s, %s -> %q) -> %s", in.Key, exp, in.Value, res)
		}
		return fmt.Sprintf("get(%s) -> %s", in.Key, res)
	},
	DescribeState: func(state any) string {
		st := state.(register)
		if !st.found {
			return "absent"
		}
		return fmt.Sprintf("%q", st.value)
	},
}

// History records the operations of concurrent clients for a
// linearizability check with Model. It is safe for concurrent use.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// Add records one operation of client, called at call and returning at
// ret. An Unknown outcome returns never (it may apply at any time after
// its call); a Get with an Unknown outcome is dropped (it changed
// nothing).
func (h *History) Add(client int, op Op, out Outcome, call, ret time.Time) {
	r := ret.Sub(h.start).Nanoseconds()
	if out.Unknown {
		if op.Kind == OpGet {
			return
		}
		r = math.MaxInt64
	}
	h.mu.Lock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: op, Call: call.Sub(h.start).Nanoseconds(), Output: out, Return: r})
	h.mu.Unlock()
}

// Counts returns how many operations of each kind were recorded, and how
// many of them have an unknown outcome.
func (h *History) Counts() (gets, puts, cases, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		switch op.Input.(Op).Kind {
		case OpGet:
			gets++
		case OpPut:
			puts++
		case OpCAS:
			cases++
		}
		if op.Output.(Outcome).Unknown {
			unknown++
		}
	}
	return gets, puts, cases, unknown
}

// Check checks the history with Model within timeout. It returns the
// result and the keys whose operations are not linearizable (each key
// is checked on its own for that).
func (h *History) Check(timeout time.Duration) (porcupine.CheckResult, []string) {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	res := porcupine.CheckOperationsTimeout(Model, ops, timeout)
	if res != porcupine.Illegal {
		return res, nil
	}
	var bad []string
	for _, part := range Model.Partition(ops) {
		if porcupine.CheckOperationsTimeout(Model, part, timeout) == porcupine.Illegal {
			bad = append(bad, part[0].Input.(Op).Key)
		}
	}
	return res, bad
}

// Dump writes key's operations, by call time, as text (times in
// microseconds since the history began; an unknown return as "inf").
func (h *History) Dump(w io.Writer, key string) error {
	h.mu.Lock()
	var ops []porcupine.Operation
	for _, o := range h.ops {
		if o.Input.(Op).Key == key {
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
		if _, err := fmt.Fprintf(w, "client %3d  call %12dus  return %12sus  %s\n", o.ClientId, o.Call/1e3, ret, Model.DescribeOperation(o.Input, o.Output)); err != nil {
			return err
		}
	}
	return nil
}

// Visualize writes an HTML view of the history's check to path (see
// porcupine.VisualizePath), for a failure's post-mortem.
func (h *History) Visualize(path string, timeout time.Duration) error {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	_, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	return porcupine.VisualizePath(Model, info, path)
}
