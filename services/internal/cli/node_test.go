package cli

import (
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
)

func TestResolveNode(t *testing.T) {
	nodes := []*workflowpb.NodeLifecycle{{NodeId: 7298468351233154821}, {NodeId: 1111111111111114821}, {NodeId: 5310719028733525558}}
	for _, tc := range []struct {
		arg     string
		want    uint64
		wantErr bool
	}{
		{"7298468351233154821", 7298468351233154821, false},
		{"5558", 5310719028733525558, false},
		{"n5558", 5310719028733525558, false},
		{"54821", 7298468351233154821, false},
		{"4821", 0, true}, // two nodes end so
		{"42", 42, false}, // no node: workflowd says it is unknown
		{"x1", 0, true},
		{"n", 0, true},
		{"-3", 0, true},
	} {
		got, err := resolveNode(tc.arg, nodes)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("resolveNode(%q) = %d, %v; want %d, error %v", tc.arg, got, err, tc.want, tc.wantErr)
		}
	}
}
