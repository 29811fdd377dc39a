package kvclienttest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// TestModel shows the checker rejects what a lost or repeated write looks
// like, so the histories checked with it can fail.
func TestModel(t *testing.T) {
	put := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvclienttest.Op{Kind: kvclienttest.OpPut, Key: "k", Value: v}, Output: kvclienttest.Outcome{}, Call: call, Return: ret}
	}
	get := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvclienttest.Op{Kind: kvclienttest.OpGet, Key: "k"}, Output: kvclienttest.Outcome{Found: true, Value: v}, Call: call, Return: ret}
	}
	cas := func(exp, v string, out kvclienttest.Outcome, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: kvclienttest.Op{Kind: kvclienttest.OpCAS, Key: "k", Expected: exp, Value: v}, Output: out, Call: call, Return: ret}
	}
	tests := []struct {
		name string
		h    []porcupine.Operation
		ok   bool
	}{
		{"plain", []porcupine.Operation{put("1", 0, 1), get("1", 2, 3), cas("1", "2", kvclienttest.Outcome{Succeeded: true}, 4, 5), get("2", 6, 7)}, true},
		{"stale read", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), get("1", 4, 5)}, false},
		// A put applied again after newer writes: the old value comes back.
		{"put applied twice", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), get("1", 4, 5), get("2", 6, 7)}, false},
		// A CAS retried after it applied reports failure, finding its own value.
		{"cas reports its own write", []porcupine.Operation{put("1", 0, 1), cas("1", "2", kvclienttest.Outcome{Found: true, Value: "2"}, 2, 3)}, false},
		{"failed cas with the right current", []porcupine.Operation{put("1", 0, 1), cas("0", "2", kvclienttest.Outcome{Found: true, Value: "1"}, 2, 3)}, true},
		// An operation of unknown outcome may apply at any time after its call, or never.
		{"unknown cas applied", []porcupine.Operation{put("1", 0, 1), cas("1", "2", kvclienttest.Outcome{Unknown: true}, 2, 1<<62), get("2", 4, 5)}, true},
		{"unknown put not applied", []porcupine.Operation{put("1", 0, 1), put("9", 2, 1<<62), get("1", 4, 5)}, true},
		{"lost write", []porcupine.Operation{put("1", 0, 1), put("2", 2, 3), porcupine.Operation{Input: kvclienttest.Op{Kind: kvclienttest.OpGet, Key: "k"}, Output: kvclienttest.Outcome{}, Call: 4, Return: 5}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(kvclienttest.Model, tt.h); got != tt.ok {
				t.Errorf("linearizable = %v; want %v", got, tt.ok)
			}
		})
	}
}

// TestHistory records operations and finds the key whose history is not
// linearizable.
func TestHistory(t *testing.T) {
	h := kvclienttest.NewHistory()
	for _, k := range []string{"a", "b"} {
		call := time.Now()
		h.Add(1, kvclienttest.Op{Kind: kvclienttest.OpPut, Key: k, Value: "1"}, kvclienttest.Outcome{}, call, time.Now())
	}
	call := time.Now()
	h.Add(2, kvclienttest.Op{Kind: kvclienttest.OpGet, Key: "b"}, kvclienttest.Outcome{Found: true, Value: "0"}, call, time.Now())
	h.Add(2, kvclienttest.Op{Kind: kvclienttest.OpGet, Key: "a"}, kvclienttest.Outcome{Unknown: true}, call, time.Now())
	if gets, puts, _, _ := h.Counts(); gets != 1 || puts != 2 {
		t.Errorf("Counts = %d gets, %d puts; want 1, 2 (a failed get is not recorded)", gets, puts)
	}
	res, bad := h.Check(0)
	if res != porcupine.Illegal || len(bad) != 1 || bad[0] != "b" {
		t.Errorf("Check = %v, %v; want Illegal on key b", res, bad)
	}
	var sb strings.Builder
	if err := h.Dump(&sb, "b"); err != nil {
		t.Fatal(err)
	}
	if out := sb.String(); strings.Count(out, "\n") != 2 || !strings.Contains(out, `put(b, "1")`) || !strings.Contains(out, `get(b) -> "0"`) {
		t.Errorf("Dump of b:\n%s", out)
	}
}
