package kvclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// InitOptions shape the ranges of a new cluster.
type InitOptions struct {
	// SplitPoints are the user range boundaries; they win over
	// InitialRanges.
	SplitPoints [][]byte
	// InitialRanges splits the user keyspace into that many ranges at
	// evenly spaced one-byte boundaries (0 or 1: one range).
	InitialRanges int
	// ReplicationFactor is the replicas per range (0: the server's
	// default, 3); fewer when fewer nodes exist.
	ReplicationFactor int
	// MinNodes, when positive, makes raftd refuse (Unavailable, which the
	// client retries while ctx allows) to lay out a new cluster over fewer
	// live nodes, so an Init started with the cluster waits for every
	// node to join instead of leaving some out.
	MinNodes int
}

// InitResult is the outcome of Init.
type InitResult struct {
	// AlreadyInitialized is true when the cluster existed: nothing
	// changed and Descriptors are the existing ranges.
	AlreadyInitialized bool
	Descriptors        []*kvpb.RangeDescriptor
	// LayoutDiffers, when AlreadyInitialized, says how the existing
	// layout lacks what the InitOptions asked for: a split point that is
	// not a range boundary, another number of initial ranges, more
	// replicas than ReplicationFactor. Empty when the options asked for
	// nothing in particular or the existing layout has it.
	LayoutDiffers string
}

// Init bootstraps the cluster through any node: the meta range plus the
// user ranges. It is idempotent: on an initialized cluster nothing changes,
// and the result is AlreadyInitialized with the existing descriptors and,
// when they lack the layout asked for, LayoutDiffers saying how (not an
// error: callers that need the asked layout check it).
func (c *Client) Init(ctx context.Context, o InitOptions) (InitResult, error) {
	if o.InitialRanges < 0 || o.ReplicationFactor < 0 || o.MinNodes < 0 {
		return InitResult{}, errors.New("client: Init: negative initial ranges, replication factor or minimum of nodes")
	}
	req := &kvpb.InitRequest{SplitPoints: o.SplitPoints, InitialRanges: uint32(o.InitialRanges), ReplicationFactor: uint32(o.ReplicationFactor),
		MinNodes: uint32(o.MinNodes)}
	var resp kvpb.InitResponse
	if err := c.invoke(ctx, MethodInit, route{any: true, slow: true}, nil, req, &resp); err != nil {
		return InitResult{}, err
	}
	res := InitResult{AlreadyInitialized: resp.GetAlreadyInitialized(), Descriptors: resp.GetDescriptors()}
	if res.AlreadyInitialized {
		res.LayoutDiffers = layoutDiff(o, res.Descriptors)
	}
	return res, nil
}

// userStart is the first key of the user keyspace; the meta range holds
// the keys below it.
var userStart = []byte{0x01}

// evenSplits returns the boundaries of n initial ranges, as raftd plans
// them: n-1 one-byte keys evenly spaced over 0x01..0xff.
func evenSplits(n int) [][]byte {
	var out [][]byte
	for i := 1; i < n; i++ {
		out = append(out, []byte{byte(1 + i*255/n)})
	}
	return out
}

// layoutDiff says how the user ranges of descs lack the layout o asks for
// ("" when they have it). Ranges split since Init still hold the asked
// boundaries, so only missing boundaries count, not extra ones.
func layoutDiff(o InitOptions, descs []*kvpb.RangeDescriptor) string {
	bounds := make(map[string]bool)
	users := 0
	var diffs []string
	for _, d := range descs {
		if bytes.Compare(d.GetStartKey(), userStart) < 0 {
			continue // the meta range
		}
		users++
		bounds[string(d.GetStartKey())] = true
		if rf := o.ReplicationFactor; rf > 0 && len(d.GetReplicas()) > rf && len(diffs) == 0 {
			diffs = append(diffs, fmt.Sprintf("range %d has %d replicas, not %d", d.GetRangeId(), len(d.GetReplicas()), rf))
		}
	}
	switch {
	case len(o.SplitPoints) > 0:
		var missing []string
		for _, s := range o.SplitPoints {
			if !bounds[string(s)] {
				missing = append(missing, strconv.Quote(string(s)))
			}
		}
		if len(missing) > 0 {
			if len(missing) > 5 {
				missing = append(missing[:5], fmt.Sprintf("and %d more", len(missing)-5))
			}
			diffs = append([]string{fmt.Sprintf("split points %s are not boundaries of its %d user ranges", strings.Join(missing, ", "), users)}, diffs...)
		}
	case o.InitialRanges > 1:
		for _, s := range evenSplits(o.InitialRanges) {
			if !bounds[string(s)] {
				diffs = append([]string{fmt.Sprintf("it has %d user ranges, not the %d initial ranges asked for", users, o.InitialRanges)}, diffs...)
				break
			}
		}
	}
	return strings.Join(diffs, "; ")
}

// Ranges lists the local replicas of the raftd at addr ("" means the first
// configured address), retrying there only.
func (c *Client) Ranges(ctx context.Context, addr string) (*kvpb.RangesResponse, error) {
	if addr == "" {
		addr = c.cfg.Addrs[0]
	}
	var resp kvpb.RangesResponse
	if err := c.invoke(ctx, MethodRanges, route{addr: addr, slow: true}, nil, &kvpb.RangesRequest{}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Descriptors returns the descriptors of the ranges overlapping
// [start, end) and the leaders the answering node knows (range id to
// raftd address). It also refreshes the client's range cache. The
// descriptors are linearizable: read at the meta range's leader, they
// hold every split and replica change done before the call.
// WithConsistency(Stale) takes them from any node's copy of the meta
// range as it is: faster, and available without a meta leader, but
// possibly behind.
func (c *Client) Descriptors(ctx context.Context, start, end []byte, opts ...ReadOption) (*kvpb.DescriptorsResponse, error) {
	h := &kvpb.Header{ReadConsistency: readOpts(opts).consistency.proto()}
	var resp kvpb.DescriptorsResponse
	if err := c.invoke(ctx, MethodDescriptors, route{any: true}, h, &kvpb.DescriptorsRequest{Header: h, Start: start, End: end}, &resp); err != nil {
		return nil, err
	}
	c.cache.install(&resp)
	c.observeClock(timestamp(resp.GetNow()), true)
	return &resp, nil
}

// Range administration methods of raftd (wire.ProtoKV).
const (
	MethodAdminSplit     = "AdminSplit"
	MethodTransferLeader = "TransferLeader"
	MethodChangeReplicas = "ChangeReplicas"
)

// ReplicaChange names the nodes of a replica change: one to add, one to
// remove, or one of each (a replacement).
type ReplicaChange struct {
	Add, Remove []uint64
	// Learners keeps an added replica a learner (non-voting).
	Learners bool
}

// ChangeReplicas changes a range's replicas at its leader: an added
// replica starts as a learner, receives a snapshot and is promoted to
// voter once caught up; a replacement goes through a joint
// configuration. It returns the range's descriptor after the change.
func (c *Client) ChangeReplicas(ctx context.Context, rangeID uint64, ch ReplicaChange) (*kvpb.RangeDescriptor, error) {
	h := &kvpb.Header{}
	var resp kvpb.ChangeReplicasResponse
	req := &kvpb.ChangeReplicasRequest{Header: h, RangeId: rangeID, Add: ch.Add, Remove: ch.Remove, Learners: ch.Learners}
	if err := c.invoke(ctx, MethodChangeReplicas, route{any: true, slow: true}, h, req, &resp); err != nil {
		return nil, err
	}
	c.cache.install(&kvpb.DescriptorsResponse{Descriptors: []*kvpb.RangeDescriptor{resp.GetDescriptor_()}})
	return resp.GetDescriptor_(), nil
}

// AdminSplit splits the range holding key at key: the range keeps the
// keys before it and a new range, on the same replicas, takes the rest.
// It returns both sides' descriptors. A key at a range's start, a system
// key or an empty one is refused (InvalidArgument); a retry of a split
// that applied although its answer was lost gets that refusal too.
func (c *Client) AdminSplit(ctx context.Context, key []byte) (left, right *kvpb.RangeDescriptor, err error) {
	h := &kvpb.Header{}
	var resp kvpb.AdminSplitResponse
	if err := c.invoke(ctx, MethodAdminSplit, route{key: key, slow: true}, h, &kvpb.AdminSplitRequest{Header: h, Key: key}, &resp); err != nil {
		return nil, nil, err
	}
	c.cache.install(&kvpb.DescriptorsResponse{Descriptors: []*kvpb.RangeDescriptor{resp.GetLeft(), resp.GetRight()}})
	return resp.GetLeft(), resp.GetRight(), nil
}

// TransferLeader moves the leadership of a range to its voter on node,
// returning once that node leads it.
func (c *Client) TransferLeader(ctx context.Context, rangeID, node uint64) error {
	h := &kvpb.Header{}
	var resp kvpb.TransferLeaderResponse
	return c.invoke(ctx, MethodTransferLeader, route{any: true, slow: true}, h, &kvpb.TransferLeaderRequest{Header: h, RangeId: rangeID, NodeId: node}, &resp)
}
