package raftd_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestAuthorizationTables calls every method raftd registers with each
// role: the lists below are the review of who may call what.
func TestAuthorizationTables(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, raftd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := raftd.DefaultConfig()
	cfg.StoredAddr, cfg.GossipAddr = "", ""
	if _, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID}); err != nil {
		t.Fatal(err)
	}
	data := []string{bustest.Node, bustest.OtherNode, bustest.Client, bustest.Admin}
	ops := []string{bustest.Node, bustest.OtherNode, bustest.Admin}
	nodes := []string{bustest.Node, bustest.OtherNode}
	bustest.CheckRules(t, rt.Bus, wire.ProtoKV, rt.NodeID, map[string]bustest.Want{
		"Get":            {Allow: data},
		"Put":            {Allow: data},
		"Delete":         {Allow: data},
		"Scan":           {Allow: data, Req: &kvpb.ScanRequest{Start: []byte("a"), End: []byte("b")}},
		"DeleteRange":    {Allow: data, Req: &kvpb.DeleteRangeRequest{Start: []byte("a"), End: []byte("b")}},
		"CompareAndSwap": {Allow: data},
		"Batch":          {Allow: data, Req: &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte("k")}}}}}},
		"Descriptors":    {Allow: data},
		"Watch":          {Allow: data, Req: &kvpb.WatchRequest{Start: []byte("a"), End: []byte("b")}},
		"Ranges":         {Allow: ops},
		"WatchRanges":    {Allow: ops},
		"Init":           {Allow: ops},
		"AdminSplit":     {Allow: ops},
		"TransferLeader": {Allow: ops},
		"ChangeReplicas": {Allow: ops},
		"UpdateMeta":     {Allow: nodes},
		"CreateReplica":  {Allow: nodes},
	})
	// System keys: daemons only.
	bustest.CheckRules(t, rt.Bus, wire.ProtoKV, rt.NodeID, map[string]bustest.Want{
		"Get":            {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.GetRequest{Header: &kvpb.Header{System: true}}},
		"Put":            {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.PutRequest{Header: &kvpb.Header{System: true}}},
		"Delete":         {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.DeleteRequest{Header: &kvpb.Header{System: true}}},
		"Scan":           {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.ScanRequest{Header: &kvpb.Header{System: true}}},
		"DeleteRange":    {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.DeleteRangeRequest{Header: &kvpb.Header{System: true}}},
		"CompareAndSwap": {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.CompareAndSwapRequest{Header: &kvpb.Header{System: true}}},
		"Batch":          {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.BatchRequest{Header: &kvpb.Header{System: true}}},
		"Descriptors":    {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.DescriptorsRequest{Header: &kvpb.Header{System: true}}},
		"Watch":          {Allow: []string{bustest.Node, bustest.OtherNode}, Req: &kvpb.WatchRequest{Header: &kvpb.Header{System: true}}},
		"Ranges":         {Allow: ops},
		"WatchRanges":    {Allow: ops},
		"Init":           {Allow: ops},
		"AdminSplit":     {Allow: ops},
		"TransferLeader": {Allow: ops},
		"ChangeReplicas": {Allow: ops},
		"UpdateMeta":     {Allow: nodes},
		"CreateReplica":  {Allow: nodes},
	})
	// Raft traffic: nodes only, each speaking for itself.
	self := func(r tlsutil.Role) uint64 { return r.NodeID }
	bustest.CheckRules(t, rt.Bus, wire.ProtoRaft, rt.NodeID, map[string]bustest.Want{
		"Raft":      {Allow: nodes, ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.MessageBatch{FromNode: self(r)} }},
		"Snapshot":  {Allow: nodes, ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.SnapshotChunk{FromNode: self(r)} }},
		"Hello":     {Allow: nodes, ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.HelloRequest{NodeId: self(r)} }},
		"Bootstrap": {Allow: nodes},
	})
	// A hello naming no node is a probe (it records no address).
	bustest.CheckRules(t, rt.Bus, wire.ProtoRaft, rt.NodeID, map[string]bustest.Want{
		"Raft":      {Allow: nil},
		"Snapshot":  {Allow: nil},
		"Hello":     {Allow: nodes, Req: &raftmsgpb.HelloRequest{Addr: "192.0.2.1:7402"}},
		"Bootstrap": {Allow: nodes},
	})
	// A sender claiming another node than its certificate's is refused.
	forged := func(tlsutil.Role) uint64 { return rt.NodeID + 7 }
	bustest.CheckRules(t, rt.Bus, wire.ProtoRaft, rt.NodeID, map[string]bustest.Want{
		"Raft":      {ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.MessageBatch{FromNode: forged(r)} }},
		"Snapshot":  {ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.SnapshotChunk{FromNode: forged(r)} }},
		"Hello":     {ReqFor: func(r tlsutil.Role) proto.Message { return &raftmsgpb.HelloRequest{NodeId: forged(r)} }},
		"Bootstrap": {Allow: nodes},
	})
}

// TestClientPrefixes checks a client certificate limited to prefixes
// against every kind of key argument.
func TestClientPrefixes(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, raftd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := raftd.DefaultConfig()
	cfg.StoredAddr, cfg.GossipAddr = "", ""
	if _, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID}); err != nil {
		t.Fatal(err)
	}
	limited := tlsutil.ClientRole([]byte("app/"), []byte("\xff\xff"))
	put := func(k string) *kvpb.BatchOp {
		return &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte(k)}}}
	}
	for _, tt := range []struct {
		method string
		req    proto.Message
		ok     bool
	}{
		{"Get", &kvpb.GetRequest{Key: []byte("app/x")}, true},
		{"Get", &kvpb.GetRequest{Key: []byte("app")}, false},
		{"Put", &kvpb.PutRequest{Key: []byte("app/")}, true},
		{"Put", &kvpb.PutRequest{Key: []byte("other")}, false},
		{"Delete", &kvpb.DeleteRequest{Key: []byte("b")}, false},
		{"CompareAndSwap", &kvpb.CompareAndSwapRequest{Key: []byte("app/k")}, true},
		{"CompareAndSwap", &kvpb.CompareAndSwapRequest{Key: []byte("ap")}, false},
		{"Scan", &kvpb.ScanRequest{Start: []byte("app/"), End: []byte("app0")}, true},
		{"Scan", &kvpb.ScanRequest{Start: []byte("app/a"), End: []byte("app/b")}, true},
		{"Scan", &kvpb.ScanRequest{Start: []byte("app/"), End: []byte("app1")}, false},
		{"Scan", &kvpb.ScanRequest{Start: []byte("app/")}, false},
		{"Scan", &kvpb.ScanRequest{Start: []byte("a"), End: []byte("app/z")}, false},
		{"Scan", &kvpb.ScanRequest{Start: []byte("\xff\xff"), End: nil}, true},
		{"Scan", &kvpb.ScanRequest{Start: []byte("\xff"), End: nil}, false},
		{"DeleteRange", &kvpb.DeleteRangeRequest{Start: []byte("app/a"), End: []byte("app/z")}, true},
		{"DeleteRange", &kvpb.DeleteRangeRequest{Start: []byte(""), End: []byte("zzz")}, false},
		{"Batch", &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{put("app/1"), put("app/2")}}, true},
		{"Batch", &kvpb.BatchRequest{Ops: []*kvpb.BatchOp{put("app/1"), put("nope")}}, false},
		{"Descriptors", &kvpb.DescriptorsRequest{}, true},
		{"Watch", &kvpb.WatchRequest{Start: []byte("app/a"), End: []byte("app/b")}, true},
		{"Watch", &kvpb.WatchRequest{Start: []byte("app/a"), End: []byte("b")}, false},
	} {
		err := rt.Bus.Permitted(wire.ProtoKV, tt.method, busPeer(limited), tt.req)
		if (err == nil) != tt.ok {
			t.Errorf("%s %v by %s: %v; want allowed=%v", tt.method, tt.req, limited, err, tt.ok)
		}
	}
}

func busPeer(r tlsutil.Role) bus.Peer { return bus.Peer{Addr: "test", Role: r} }
