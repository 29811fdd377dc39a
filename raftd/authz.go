package raftd

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// kvRules authorizes raftd's KV protocol. Reads and writes are for
// applications (client certificates, limited to their key prefixes; a
// Watch's span too), the
// cluster's daemons (node certificates: workflowd, msgd, a forwarding
// raftd) and operators; system keys (Header.system) for daemons alone.
// Descriptors (where the ranges are) is routing for any of them; Watch
// streams data changes to the same callers as reads; the replica table,
// the range events, Init and the range operations (splits, replica
// changes, leader transfers) are for daemons (which also forward them to
// the range's leader) and operators; UpdateMeta and CreateReplica are
// raftd's own, node to node.
func kvRules() bus.Rules {
	data := bus.Nodes | bus.Clients | bus.Admins
	return bus.Rules{
		multiraft.MethodGet:            {Roles: data, Check: checkKV},
		multiraft.MethodPut:            {Roles: data, Check: checkKV},
		multiraft.MethodDelete:         {Roles: data, Check: checkKV},
		multiraft.MethodScan:           {Roles: data, Check: checkKV},
		multiraft.MethodDeleteRange:    {Roles: data, Check: checkKV},
		multiraft.MethodCompareAndSwap: {Roles: data, Check: checkKV},
		multiraft.MethodBatch:          {Roles: data, Check: checkKV},
		multiraft.MethodDescriptors:    {Roles: data, Check: checkKV},
		MethodWatch:                    {Roles: data, Check: checkKV},
		multiraft.MethodRanges:         {Roles: bus.Nodes | bus.Admins},
		MethodWatchRanges:              {Roles: bus.Nodes | bus.Admins},
		MethodInit:                     {Roles: bus.Admins | bus.Nodes},
		multiraft.MethodAdminSplit:     {Roles: bus.Admins | bus.Nodes},
		multiraft.MethodTransferLeader: {Roles: bus.Admins | bus.Nodes},
		multiraft.MethodChangeReplicas: {Roles: bus.Admins | bus.Nodes},
		multiraft.MethodUpdateMeta:     {Roles: bus.Nodes},
		multiraft.MethodCreateReplica:  {Roles: bus.Nodes},
	}
}

// raftRules authorizes raftd's node-to-node protocol: node certificates
// only, and a message must come from the node its sender field names (a
// node cannot speak for another, nor set another's address).
func raftRules() bus.Rules {
	return bus.Rules{
		methodRaft:      {Roles: bus.Nodes, Check: checkSender},
		methodSnapshot:  {Roles: bus.Nodes, Check: checkSender},
		methodHello:     {Roles: bus.Nodes, Check: checkSender},
		methodBootstrap: {Roles: bus.Nodes},
	}
}

// checkSender refuses a raft message, snapshot chunk or hello whose sender
// is not the node of the caller's certificate (a hello naming no node is
// a probe of the callee and records nothing).
func checkSender(peer bus.Peer, req proto.Message) error {
	var from uint64
	switch m := req.(type) {
	case *raftmsgpb.MessageBatch:
		from = m.GetFromNode()
	case *raftmsgpb.SnapshotChunk:
		from = m.GetFromNode()
	case *raftmsgpb.HelloRequest:
		if m.GetNodeId() == 0 {
			return nil // a probe: it records no address
		}
		from = m.GetNodeId()
	default:
		return fmt.Errorf("unexpected request %T", req)
	}
	if from != peer.Role.NodeID {
		return fmt.Errorf("sender claims node %d, certificate is of node %d", from, peer.Role.NodeID)
	}
	return nil
}

// checkKV refuses system keys to all but daemons, and keys outside a
// client certificate's prefixes.
func checkKV(peer bus.Peer, req proto.Message) error {
	if h, ok := req.(interface{ GetHeader() *kvpb.Header }); ok && h.GetHeader().GetSystem() && peer.Role.Kind != tlsutil.KindNode {
		return errors.New("system keys are for the cluster's daemons")
	}
	r := peer.Role
	key := func(k []byte) error {
		if !r.AllowsKey(k) {
			return fmt.Errorf("key %q is outside the certificate's prefixes", k)
		}
		return nil
	}
	span := func(start, end []byte) error {
		if !r.AllowsSpan(start, end) {
			return fmt.Errorf("span [%q, %q) is not within one of the certificate's prefixes", start, end)
		}
		return nil
	}
	switch m := req.(type) {
	case *kvpb.GetRequest:
		return key(m.GetKey())
	case *kvpb.PutRequest:
		return key(m.GetKey())
	case *kvpb.DeleteRequest:
		return key(m.GetKey())
	case *kvpb.CompareAndSwapRequest:
		return key(m.GetKey())
	case *kvpb.ScanRequest:
		return span(m.GetStart(), m.GetEnd())
	case *kvpb.DeleteRangeRequest:
		return span(m.GetStart(), m.GetEnd())
	case *kvpb.WatchRequest:
		return span(m.GetStart(), m.GetEnd())
	case *kvpb.BatchRequest:
		for _, op := range m.GetOps() {
			var k []byte
			switch o := op.GetOp().(type) {
			case *kvpb.BatchOp_Put:
				k = o.Put.GetKey()
			case *kvpb.BatchOp_Delete:
				k = o.Delete.GetKey()
			case *kvpb.BatchOp_Cas:
				k = o.Cas.GetKey()
			default:
				return fmt.Errorf("unknown batch operation %T", o)
			}
			if err := key(k); err != nil {
				return err
			}
		}
		return nil
	case *kvpb.DescriptorsRequest:
		return nil // range boundaries, for routing
	}
	return fmt.Errorf("unexpected request %T", req)
}
