package raftd

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

func TestSplitBatch(t *testing.T) {
	msg := func(n int) *raftmsgpb.RaftMessage {
		return &raftmsgpb.RaftMessage{RangeId: 7, Message: make([]byte, n)}
	}
	b := &raftmsgpb.MessageBatch{FromNode: 1, ToNode: 2, FromAddr: "a",
		Heartbeats: []*raftmsgpb.Heartbeat{{RangeId: 3}}, HeartbeatResponses: []*raftmsgpb.Heartbeat{{RangeId: 4}},
		Messages: []*raftmsgpb.RaftMessage{msg(400), msg(400), msg(5000), msg(100)}}
	for _, tt := range []struct {
		budget int
		want   []int // messages per piece
	}{
		{1 << 20, []int{4}},
		{1000, []int{2, 1, 1}},
		{500, []int{1, 1, 1, 1}},
	} {
		pieces, sizes := splitBatch(b, tt.budget)
		for i, p := range pieces {
			if sizes[i] != proto.Size(p) {
				t.Errorf("budget %d: piece %d of %d bytes reported as %d", tt.budget, i, proto.Size(p), sizes[i])
			}
		}
		var got []int
		var all []*raftmsgpb.RaftMessage
		for i, p := range pieces {
			got = append(got, len(p.GetMessages()))
			all = append(all, p.GetMessages()...)
			if p.GetFromNode() != 1 || p.GetToNode() != 2 || p.GetFromAddr() != "a" {
				t.Errorf("budget %d: piece %d addressed %d -> %d (%q)", tt.budget, i, p.GetFromNode(), p.GetToNode(), p.GetFromAddr())
			}
			if hb := len(p.GetHeartbeats()) + len(p.GetHeartbeatResponses()); (i == 0) != (hb == 2) {
				t.Errorf("budget %d: piece %d carries %d heartbeats", tt.budget, i, hb)
			}
			if len(p.GetMessages()) > 1 && proto.Size(p) > tt.budget {
				t.Errorf("budget %d: piece %d of %d bytes holds %d messages", tt.budget, i, proto.Size(p), len(p.GetMessages()))
			}
		}
		if len(all) != 4 || len(got) != len(tt.want) {
			t.Errorf("budget %d: pieces %v; want %v", tt.budget, got, tt.want)
			continue
		}
		for i := range all {
			if all[i] != b.GetMessages()[i] {
				t.Errorf("budget %d: message %d out of order", tt.budget, i)
			}
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("budget %d: pieces %v; want %v", tt.budget, got, tt.want)
				break
			}
		}
	}
}
