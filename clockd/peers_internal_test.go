package clockd

import (
	"slices"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

func TestPeersOf(t *testing.T) {
	m := func(id uint64, st gossippb.MemberState, addr string) *gossippb.Member {
		md := &gossippb.Metadata{Addresses: map[string]string{"raftd": "127.0.0.1:7402"}}
		if addr != "" {
			md.Addresses[MetadataKey] = addr
		}
		return &gossippb.Member{NodeId: id, State: st, Metadata: md}
	}
	alive, suspect := gossippb.MemberState_MEMBER_STATE_ALIVE, gossippb.MemberState_MEMBER_STATE_SUSPECT
	dead, left := gossippb.MemberState_MEMBER_STATE_DEAD, gossippb.MemberState_MEMBER_STATE_LEFT
	for _, tt := range []struct {
		name    string
		members []*gossippb.Member
		want    []string
	}{
		{"none", nil, nil},
		{"alive and suspect, sorted", []*gossippb.Member{m(3, suspect, "127.0.0.1:7424"), m(2, alive, "127.0.0.1:7414")}, []string{"127.0.0.1:7414", "127.0.0.1:7424"}},
		{"dead and left skipped", []*gossippb.Member{m(2, dead, "127.0.0.1:7414"), m(3, left, "127.0.0.1:7424")}, nil},
		{"self by gossip id, node id and address", []*gossippb.Member{m(1, alive, "127.0.0.1:7404"), m(9, alive, "127.0.0.1:7494"), m(5, alive, "127.0.0.1:7000")}, nil},
		{"missing or bad address", []*gossippb.Member{m(2, alive, ""), m(3, alive, "nohost"), m(4, alive, "127.0.0.1:7444")}, []string{"127.0.0.1:7444"}},
		{"duplicates once", []*gossippb.Member{m(2, alive, "127.0.0.1:7414"), m(3, alive, "127.0.0.1:7414")}, []string{"127.0.0.1:7414"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := peersOf(tt.members, 1, 9, "127.0.0.1:7000"); !slices.Equal(got, tt.want) {
				t.Errorf("peersOf = %v; want %v", got, tt.want)
			}
		})
	}
}
