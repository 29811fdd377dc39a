package cli

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

func TestRangeSplitTransferAndAll(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	out := runOK(t, append([]string{"range", "split"}, append(conn, "t")...)...)
	if !strings.Contains(out, "range 3 split at t") || !strings.Contains(out, "[m, t)") || !strings.Contains(out, "[t, +∞)") {
		t.Fatalf("range split:\n%s", out)
	}
	// Splitting again at a range's start (a retry) changes nothing and
	// prints the same two sides.
	if again := runOK(t, append([]string{"range", "split"}, append(conn, "t")...)...); again != out {
		t.Fatalf("split retried at a range start:\n%s\nfirst:\n%s", again, out)
	}
	runOK(t, append(append([]string{"kv", "put"}, conn...), "n", "in the middle range")...)
	for range 2 {
		runOK(t, append(append([]string{"kv", "get"}, conn...), "n")...)
	}
	out = runOK(t, append([]string{"ranges", "--all", "--output", "json"}, conn...)...)
	var v struct {
		Ranges []struct {
			RangeID    uint64   `json:"range_id,string"`
			StartKey   string   `json:"start_key"`
			EndKey     string   `json:"end_key"`
			Generation uint64   `json:"generation"`
			LeaderAddr string   `json:"leader_addr"`
			Size       *uint64  `json:"size"`
			Rate       *float64 `json:"requests_per_sec"`
		} `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ranges --all json: %v\n%s", err, out)
	}
	if len(v.Ranges) != 3 || v.Ranges[2].StartKey != "t" || v.Ranges[2].Generation != 2 || v.Ranges[1].EndKey != "t" || v.Ranges[2].LeaderAddr == "" {
		t.Fatalf("ranges --all = %+v", v)
	}
	// Sizes and loads come from each range's leader: only [m, t) holds
	// data, and it served the put and the two gets (the fake leader
	// reports the requests it served as its rate).
	for i, want := range []float64{0, 3, 0} {
		if sz := v.Ranges[i].Size; sz == nil || (*sz > 0) != (want > 0) {
			t.Fatalf("range %d size = %v; want it known and non-zero %v\n%s", v.Ranges[i].RangeID, sz, want > 0, out)
		}
		if r := v.Ranges[i].Rate; r == nil || *r != want {
			t.Fatalf("range %d requests_per_sec = %v; want %v\n%s", v.Ranges[i].RangeID, r, want, out)
		}
	}
	out = runOK(t, append([]string{"ranges", "--all"}, conn...)...)
	if !strings.Contains(out, "3 ranges") || !strings.Contains(out, "[t, +∞)") || !strings.Contains(out, "LEADER") {
		t.Fatalf("ranges --all:\n%s", out)
	}
	// The table gives each range's size and load in their columns.
	for i, r := range v.Ranges {
		cells := tableRow(t, out, strconv.FormatUint(r.RangeID, 10), "SIZE", "REQ/S")
		if want := []string{humanBytes(*r.Size), []string{"0.0", "3.0", "0.0"}[i]}; !slices.Equal(cells, want) {
			t.Fatalf("range %d: SIZE, REQ/S = %q, want %q\n%s", r.RangeID, cells, want, out)
		}
	}
	out = runOK(t, append([]string{"range", "replicas", "remove", "--output", "json"}, append(conn, "4", "3")...)...)
	if !strings.Contains(out, `"generation": 3`) || strings.Contains(out, `"node_id": "3"`) {
		t.Fatalf("replicas remove:\n%s", out)
	}
	out = runOK(t, append([]string{"range", "replicas", "add", "--learner"}, append(conn, "4", "3")...)...)
	if !strings.Contains(out, "(l)") {
		t.Fatalf("replicas add --learner:\n%s", out)
	}
	code, _, errOut := run(t, append([]string{"range", "replicas", "add"}, append(conn, "4", "9")...)...)
	if code != ExitFailed || !strings.Contains(errOut, "not a known node") {
		t.Fatalf("add on an unknown node: exit %d %q", code, errOut)
	}
	out = runOK(t, append([]string{"range", "replicas", "transfer-leader"}, append(conn, "4", "2")...)...)
	if !strings.Contains(out, "range 4 is led by node 2") {
		t.Fatalf("transfer-leader:\n%s", out)
	}
	for _, tt := range []struct {
		cmd, args []string
		want      string
	}{
		{[]string{"range", "split"}, nil, "KEY"},
		{[]string{"range", "replicas", "transfer-leader"}, []string{"x", "2"}, `RANGE "x" is not a range id`},
		{[]string{"range", "replicas", "transfer-leader"}, []string{"4", "0"}, `NODE "0" is not a node id`},
	} {
		code, _, errOut := run(t, append(append(tt.cmd, conn...), tt.args...)...)
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, %q; want usage error with %q", tt.args, code, errOut, tt.want)
		}
	}
	code, _, errOut = run(t, append([]string{"range", "replicas", "transfer-leader"}, append(conn, "4", "9")...)...)
	if code != ExitFailed || !strings.Contains(errOut, "no replica on node 9") {
		t.Errorf("transfer to a node without a replica: exit %d %q", code, errOut)
	}
}

// tableRow returns the cells under the named columns of the table row in
// out whose first cell is first (columns are aligned: each starts, in
// runes, where its header does).
func tableRow(t *testing.T, out, first string, cols ...string) []string {
	t.Helper()
	lines := strings.Split(out, "\n")
	hdr := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "RANGE ") })
	if hdr < 0 {
		t.Fatalf("no table header in:\n%s", out)
	}
	header := []rune(lines[hdr])
	var names []string
	var starts []int
	for i, r := range header {
		if r != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
			names = append(names, strings.Fields(string(header[i:]))[0])
		}
	}
	for _, l := range lines[hdr+1:] {
		if f := strings.Fields(l); len(f) == 0 || f[0] != first {
			continue
		}
		row := []rune(l)
		var cells []string
		for _, c := range cols {
			i := slices.Index(names, c)
			if i < 0 {
				t.Fatalf("no column %s in %q", c, string(header))
			}
			from, to := min(starts[i], len(row)), len(row)
			if i+1 < len(starts) {
				to = min(starts[i+1], len(row))
			}
			cells = append(cells, strings.TrimSpace(string(row[from:to])))
		}
		return cells
	}
	t.Fatalf("no row %s in:\n%s", first, out)
	return nil
}
