package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNodeNames(t *testing.T) {
	for _, tt := range []struct {
		ids    []uint64
		want   []string
		legend string
	}{
		{[]uint64{1, 2, 3}, []string{"n1", "n2", "n3"}, ""},
		{[]uint64{8154362541117094821, 2954812233100000017}, []string{"n4821", "n0017"},
			"nodes: n0017 = 2954812233100000017, n4821 = 8154362541117094821"},
		// Two ids ending alike: more digits, for both.
		{[]uint64{8154362541117094821, 2954812233155594821}, []string{"n094821", "n594821"},
			"nodes: n594821 = 2954812233155594821, n094821 = 8154362541117094821"},
	} {
		n := newNodeNames(tt.ids...)
		for i, id := range tt.ids {
			if got := n.name(id); got != tt.want[i] {
				t.Errorf("name(%d) among %v = %q; want %q", id, tt.ids, got, tt.want[i])
			}
		}
		if got := n.legend(); got != tt.legend {
			t.Errorf("legend of %v = %q; want %q", tt.ids, got, tt.legend)
		}
	}
}

// TestIDsAreJSONStrings: 64-bit ids above 2^53 reach jq and JavaScript
// intact, as strings (protobuf's JSON mapping does the same).
func TestIDsAreJSONStrings(t *testing.T) {
	const id = uint64(1<<63 + 5)
	for _, v := range []any{
		memberView{NodeID: id},
		rangesView{NodeID: id, Replicas: []replicaView{{RangeID: id, ReplicaID: id, LeaderNodeID: id, LeaderReplicaID: id,
			Replicas: []replicaDescView{{NodeID: id, ReplicaID: id}}, Followers: []followerView{{ReplicaID: id}}}}},
		rangeDescView{RangeID: id},
		clockJSONRow{NodeID: id},
		clusterNode{NodeID: id},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `:9223372036854775813`) || !strings.Contains(string(b), `"9223372036854775813"`) {
			t.Errorf("%T: %s; want every id as a string", v, b)
		}
	}
}

// TestRangesTableShortIDs: with real (19-digit) node ids, a ranges row
// shows short names and a legend line maps them back.
func TestRangesTableShortIDs(t *testing.T) {
	a, b, c := uint64(8154362541117094821), uint64(2954812233100000017), uint64(4459912233100003350)
	v := rangesView{Addr: "127.0.0.1:7402", NodeID: a, Replicas: []replicaView{{
		RangeID: 2, ReplicaID: 1, RaftState: "leader", Term: 3, LeaderNodeID: a, LeaderReplicaID: 1, start: []byte{1},
		Replicas: []replicaDescView{{NodeID: a, ReplicaID: 1}, {NodeID: b, ReplicaID: 2}, {NodeID: c, ReplicaID: 3}},
	}}}
	var out strings.Builder
	if err := printRanges(&env{stdout: &out}, v); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"nodes: n0017 = 2954812233100000017, n3350 = 4459912233100003350, n4821 = 8154362541117094821", "n4821/r1,n0017/r2,n3350/r3"} {
		if !strings.Contains(got, want) {
			t.Errorf("ranges table lacks %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "2 ") && len(line) > 140 {
			t.Errorf("row of %d characters: %q", len(line), line)
		}
	}
}
