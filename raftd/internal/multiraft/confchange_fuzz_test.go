package multiraft

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// FuzzConfChangeDesc: any conf change entry (as raft would hand it to
// apply) on a descriptor never panics; the descriptor it yields has unique
// replica ids below its next replica id, records a configuration raft
// accepts the same way (confStateOf), and applying the change again
// changes nothing more.
func FuzzConfChangeDesc(f *testing.F) {
	cur := &kvpb.RangeDescriptor{RangeId: 3, StartKey: []byte("m"), Generation: 4, NextReplicaId: 4, Replicas: []*kvpb.ReplicaDescriptor{
		{NodeId: 1, ReplicaId: 1}, {NodeId: 2, ReplicaId: 2}, {NodeId: 3, ReplicaId: 3}}}
	proposed := proto.Clone(cur).(*kvpb.RangeDescriptor)
	proposed.Replicas = append(proposed.Replicas, &kvpb.ReplicaDescriptor{NodeId: 4, ReplicaId: 4, Type: kvpb.ReplicaType_REPLICA_TYPE_LEARNER})
	ctx, _ := proto.Marshal(proposed)
	for _, cc := range []*raftpb.ConfChangeV2{
		{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(4)}}, Context: ctx},
		{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(4)}, {Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(2)}},
			Transition: raftpb.ConfChangeTransitionJointImplicit.Enum()},
		{},
		{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(3)}}},
	} {
		b, _ := proto.Marshal(cc)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cc := &raftpb.ConfChangeV2{}
		if proto.Unmarshal(b, cc) != nil || cc.GetTransition() > raftpb.ConfChangeTransitionJointExplicit || cc.GetTransition() < 0 {
			return // raft itself refuses (panics on) unknown transitions
		}
		nd, changed := confChangeDesc(cur, cc)
		if !changed && nd != cur {
			t.Fatal("unchanged descriptor is a copy")
		}
		seen := map[uint64]bool{}
		for _, r := range nd.GetReplicas() {
			if seen[r.GetReplicaId()] || r.GetReplicaId() >= nd.GetNextReplicaId() {
				t.Fatalf("replica ids %v with next %d", nd.GetReplicas(), nd.GetNextReplicaId())
			}
			seen[r.GetReplicaId()] = true
		}
		if changed && nd.GetGeneration() != cur.GetGeneration()+1 {
			t.Fatalf("generation %d after a change of %d", nd.GetGeneration(), cur.GetGeneration())
		}
		_ = confStateOf(nd)
		again, changedAgain := confChangeDesc(nd, cc)
		if _, joint := cc.EnterJoint(); changedAgain && !joint && !cc.LeaveJoint() {
			t.Fatalf("the same simple change applied twice changed %v into %v", nd, again)
		}
	})
}
