package multiraft

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// DefaultReplicationFactor is the replica count of a new range.
const DefaultReplicationFactor = 3

// MaxInitialRanges bounds InitRequest.initial_ranges (one-byte boundaries).
const MaxInitialRanges = 255

// PlanCluster lays out a new cluster: the meta range [\x00.., \x01) and user
// ranges split at the request's split points (or initial_ranges evenly
// spaced one-byte boundaries), each on min(replication factor, nodes)
// nodes. Placement rotates over the nodes so the first replica, which
// campaigns first, and thus the leaders spread evenly.
func PlanCluster(req *kvpb.InitRequest, nodes []uint64) ([]*kvpb.RangeDescriptor, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("multiraft: no nodes to place ranges on")
	}
	nodes = append([]uint64(nil), nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
	rf := int(req.GetReplicationFactor())
	if rf == 0 {
		rf = DefaultReplicationFactor
	}
	rf = min(rf, len(nodes))
	splits := req.GetSplitPoints()
	if len(splits) > 0 && req.GetInitialRanges() > 0 {
		return nil, fmt.Errorf("multiraft: give split points or initial ranges, not both")
	}
	if n := req.GetInitialRanges(); n > 1 {
		if n > MaxInitialRanges {
			return nil, fmt.Errorf("multiraft: initial ranges %d exceeds %d", n, MaxInitialRanges)
		}
		splits = nil
		for i := uint32(1); i < n; i++ {
			splits = append(splits, []byte{byte(1 + i*255/n)})
		}
	}
	for i, sp := range splits {
		if len(sp) == 0 || sp[0] == 0x00 {
			return nil, fmt.Errorf("multiraft: split point %q is empty or a system key", sp)
		}
		if bytes.Equal(sp, userStart) {
			return nil, fmt.Errorf("multiraft: split point %q is the start of the user keyspace", sp)
		}
		if i > 0 && bytes.Compare(splits[i-1], sp) >= 0 {
			return nil, fmt.Errorf("multiraft: split points must be strictly increasing (%q, %q)", splits[i-1], sp)
		}
	}
	bounds := append([][]byte{nil, userStart}, splits...)
	bounds = append(bounds, nil)
	var out []*kvpb.RangeDescriptor
	for i := 0; i+1 < len(bounds); i++ {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 1), StartKey: bounds[i], EndKey: bounds[i+1], Generation: 1, NextReplicaId: uint64(rf + 1)}
		for j := range rf {
			d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: nodes[(i+j)%len(nodes)], ReplicaId: uint64(j + 1)})
		}
		out = append(out, d)
	}
	return out, nil
}
