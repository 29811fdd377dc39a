package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func TestParseAt(t *testing.T) {
	now := time.Unix(1000, 500)
	maxLogical := int32(1<<31 - 1)
	for _, tc := range []struct {
		in   string
		want hlc.Timestamp
		bad  bool
	}{
		{in: "12.000000005,3", want: hlc.Timestamp{WallTime: 12e9 + 5, Logical: 3}},
		{in: "-5s", want: hlc.Timestamp{WallTime: 995e9 + 500, Logical: maxLogical}},
		{in: "1970-01-01T00:00:10Z", want: hlc.Timestamp{WallTime: 10e9, Logical: maxLogical}},
		{in: "", bad: true},
		{in: "yesterday", bad: true},
		{in: "-forever", bad: true},
		{in: "12.5,3", bad: true},
		{in: "1960-01-01T00:00:00Z", bad: true},
	} {
		got, err := parseAt(tc.in, now)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestKVGetAt reads a key as of the timestamp of its first write and
// checks the JSON output's key metadata.
func TestKVGetAt(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{})
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}
	var first struct{ Timestamp string }
	if err := json.Unmarshal([]byte(runOK(t, kv("put", "--output", "json", "alpha", "one")...)), &first); err != nil {
		t.Fatal(err)
	}
	runOK(t, kv("put", "alpha", "two")...)
	type view struct {
		Value, Timestamp string
		CreateTimestamp  string `json:"create_timestamp"`
		Version          uint64
	}
	for _, tc := range []struct {
		args []string
		want view
	}{
		{[]string{"--output", "json", "alpha"}, view{Value: "two", CreateTimestamp: first.Timestamp, Version: 2}},
		{[]string{"--output", "json", "--at", first.Timestamp, "alpha"}, view{Value: "one", Timestamp: first.Timestamp, CreateTimestamp: first.Timestamp, Version: 1}},
	} {
		var got view
		out := runOK(t, kv("get", tc.args...)...)
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("get %q: %q: %v", tc.args, out, err)
		}
		if tc.want.Timestamp == "" {
			tc.want.Timestamp = got.Timestamp
		}
		if got != tc.want {
			t.Errorf("get %q = %+v; want %+v", tc.args, got, tc.want)
		}
	}
	if out := runOK(t, kv("get", "--at", first.Timestamp, "alpha")...); !strings.Contains(out, "one") {
		t.Errorf("get --at (table) = %q; want the first value", out)
	}
	code, _, errOut := run(t, kv("get", "--at", "-48h", "alpha")...)
	if code == 0 || !strings.Contains(errOut, "retention") {
		t.Errorf("get --at -48h: exit %d, %q; want a compacted error", code, errOut)
	}
	code, _, errOut = run(t, kv("get", "--at", "soon", "alpha")...)
	if code == 0 || !strings.Contains(errOut, "--at") {
		t.Errorf("get --at soon: exit %d, %q; want a flag error", code, errOut)
	}
}

// TestKVScanAt scans as of the timestamp of a past write: the keys and
// values of that time, in the table and in JSON, and a compacted error
// for a timestamp older than the retention window.
func TestKVScanAt(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{})
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}
	runOK(t, kv("put", "alpha", "one")...)
	var then struct{ Timestamp string }
	if err := json.Unmarshal([]byte(runOK(t, kv("put", "--output", "json", "beta", "b1")...)), &then); err != nil {
		t.Fatal(err)
	}
	runOK(t, kv("put", "alpha", "two")...)
	runOK(t, kv("del", "beta")...)
	runOK(t, kv("put", "gamma", "g1")...)
	type entry struct{ Key, Value string }
	for _, tc := range []struct {
		args []string
		want []entry
	}{
		{nil, []entry{{"alpha", "two"}, {"gamma", "g1"}}},
		{[]string{"--at", then.Timestamp}, []entry{{"alpha", "one"}, {"beta", "b1"}}},
		{[]string{"--at", then.Timestamp, "--reverse"}, []entry{{"beta", "b1"}, {"alpha", "one"}}},
	} {
		var got struct{ KVs []entry }
		out := runOK(t, kv("scan", append([]string{"--output", "json"}, tc.args...)...)...)
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("scan %q: %q: %v", tc.args, out, err)
		}
		if !slices.Equal(got.KVs, tc.want) {
			t.Errorf("scan %q = %v; want %v", tc.args, got.KVs, tc.want)
		}
	}
	if out := runOK(t, kv("scan", "--at", then.Timestamp)...); !strings.Contains(out, "b1") || strings.Contains(out, "gamma") {
		t.Errorf("scan --at (table) = %q; want beta and not gamma", out)
	}
	code, _, errOut := run(t, kv("scan", "--at", "-48h")...)
	if code == 0 || !strings.Contains(errOut, "retention") {
		t.Errorf("scan --at -48h: exit %d, %q; want a compacted error", code, errOut)
	}
}

// TestKVWatch replays the changes under a prefix from a timestamp: puts
// and deletes, in order, with previous values; keys outside the prefix
// are left out.
func TestKVWatch(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{})
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}
	var first struct{ Timestamp string }
	if err := json.Unmarshal([]byte(runOK(t, kv("put", "--output", "json", "p/a", "1")...)), &first); err != nil {
		t.Fatal(err)
	}
	runOK(t, kv("put", "p/a", "2")...)
	runOK(t, kv("put", "q", "outside")...)
	runOK(t, kv("del", "p/a")...)
	runOK(t, kv("put", "p/b", "3")...)
	out := runOK(t, kv("watch", "--output", "json", "--prefix", "--prev-value", "--from", first.Timestamp, "--timeout", "300ms", "p/")...)
	dec := json.NewDecoder(strings.NewReader(out))
	var got []string
	for dec.More() {
		var v struct {
			Op, Key, Value string
			PrevValue      *string `json:"prev_value"`
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("watch output %q: %v", out, err)
		}
		s := v.Op + " " + v.Key + " " + v.Value
		if v.PrevValue != nil {
			s += " was " + *v.PrevValue
		}
		got = append(got, s)
	}
	want := []string{"put p/a 2 was 1", "delete p/a  was 2", "put p/b 3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("watch = %q; want %q", got, want)
	}
	out = runOK(t, kv("watch", "--from", first.Timestamp, "--timeout", "300ms", "--resolved", "p/b")...)
	if !strings.Contains(out, "PUT p/b 3") || !strings.Contains(out, "RESOLVED ") || strings.Contains(out, "p/a") {
		t.Errorf("watch p/b (text) = %q; want its put and checkpoints only", out)
	}
	code, _, errOut := run(t, kv("watch", "--from", "-48h", "--timeout", "2s", "p/")...)
	if code == 0 || !strings.Contains(errOut, "retention") {
		t.Errorf("watch --from -48h: exit %d, %q; want a compacted error", code, errOut)
	}
}
