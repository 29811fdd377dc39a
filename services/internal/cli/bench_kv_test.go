package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func TestBenchKV(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{Uninitialized: true})
	args := append(append([]string{"bench", "kv"}, conn...), "--conns", "2", "--clients", "4", "--total", "100",
		"--key-size", "8", "--val-size", "32", "--sequential-keys", "--ranges", "4", "--output", "json")
	out := runOK(t, args...)
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"requests_per_sec", "p50_ms", "p99_ms", "p999_ms", "errors", "op", "clients", "total", "duration"} {
		if _, ok := r[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if r["op"] != "put" || r["total"] != 100.0 || r["errors"] != 0.0 || r["requests_per_sec"].(float64) <= 0 {
		t.Errorf("result = %s", out)
	}
	if fc.Len() != 100 || len(fc.RangeIDs()) != 4 {
		t.Errorf("fake holds %d keys in %d ranges; want 100 in 4", fc.Len(), len(fc.RangeIDs()))
	}
	out = runOK(t, append(append([]string{"bench", "kv"}, conn...), "--op", "get", "--consistency", "stale", "--total", "50")...)
	for _, want := range []string{"get (stale): 50 requests", "REQ/S", "P99.9", "ERRORS"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchKVUsageErrors(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{Nodes: 1})
	for _, extra := range [][]string{
		{"--op", "range"},
		{"--clients", "0"},
		{"--conns", "4", "--clients", "2"},
		{"--consistency", "stale"},
		{"--op", "get", "--consistency", "weak"},
		{"--key-size", "1", "--key-space-size", "1000"},
		{"--val-size", "-1"},
		{"--ranges", "-1"},
		{"--output", "csv"},
		{"extra"},
	} {
		code, _, errOut := run(t, append(append([]string{"bench", "kv"}, conn...), extra...)...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d; want %d (%s)", extra, code, ExitUsage, errOut)
		}
	}
	if fc.Len() != 0 {
		t.Errorf("refused runs wrote %d keys", fc.Len())
	}
}

func TestBenchWatch(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{})
	out := runOK(t, append(append([]string{"bench", "watch"}, conn...), "--streams", "2", "--watchers-per-stream", "3",
		"--put-total", "20", "--put-rate", "200", "--output", "json")...)
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if r["watchers"] != 6.0 || r["events"] != 120.0 || r["missing"] != 0.0 || r["p99_ms"] == nil || r["puts_per_sec"].(float64) <= 0 {
		t.Errorf("result = %s", out)
	}
	if fc.Len() != 1 {
		t.Errorf("fake holds %d keys; want 1", fc.Len())
	}
	out = runOK(t, append(append([]string{"bench", "watch"}, conn...), "--streams", "1", "--watchers-per-stream", "1", "--put-total", "5")...)
	for _, want := range []string{"1 watchers", "5 puts at 100/s", "EVENTS", "P99.9", "MISSING"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, extra := range [][]string{{"--streams", "0"}, {"--put-rate", "-5"}, {"--val-size", "-1"}, {"--drain", "0s"}, {"--hold", "-1s"},
		{"--streams", "1000", "--watchers-per-stream", "1000"}, {"extra"}} {
		code, _, errOut := run(t, append(append([]string{"bench", "watch"}, conn...), extra...)...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d; want %d (%s)", extra, code, ExitUsage, errOut)
		}
	}
	if fc.Len() != 2 {
		t.Errorf("the fake holds %d keys after two runs and the refused ones; want 2", fc.Len())
	}
}
