package cli

import (
	"encoding/json"
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
	out = runOK(t, append([]string{"ranges", "--all", "--output", "json"}, conn...)...)
	var v struct {
		Ranges []struct {
			RangeID    uint64  `json:"range_id,string"`
			StartKey   string  `json:"start_key"`
			EndKey     string  `json:"end_key"`
			Generation uint64  `json:"generation"`
			LeaderAddr string  `json:"leader_addr"`
			Size       *uint64 `json:"size"`
		} `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ranges --all json: %v\n%s", err, out)
	}
	if len(v.Ranges) != 3 || v.Ranges[2].StartKey != "t" || v.Ranges[2].Generation != 2 || v.Ranges[1].EndKey != "t" || v.Ranges[2].LeaderAddr == "" {
		t.Fatalf("ranges --all = %+v", v)
	}
	// Sizes come from each range's leader: only [m, t) holds data.
	for i, want := range []bool{false, true, false} {
		if sz := v.Ranges[i].Size; sz == nil || (*sz > 0) != want {
			t.Fatalf("range %d size = %v; want it known and non-zero %v\n%s", v.Ranges[i].RangeID, sz, want, out)
		}
	}
	out = runOK(t, append([]string{"ranges", "--all"}, conn...)...)
	if !strings.Contains(out, "3 ranges") || !strings.Contains(out, "[t, +∞)") || !strings.Contains(out, "LEADER") {
		t.Fatalf("ranges --all:\n%s", out)
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
