package client

import (
	"context"
	"errors"

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
}

// InitResult is the outcome of Init.
type InitResult struct {
	// AlreadyInitialized is true when the cluster existed: nothing
	// changed and Descriptors are the existing ranges.
	AlreadyInitialized bool
	Descriptors        []*kvpb.RangeDescriptor
}

// Init bootstraps the cluster through any node: the meta range plus the
// user ranges. It is idempotent.
func (c *Client) Init(ctx context.Context, o InitOptions) (InitResult, error) {
	if o.InitialRanges < 0 || o.ReplicationFactor < 0 {
		return InitResult{}, errors.New("client: Init: negative initial ranges or replication factor")
	}
	req := &kvpb.InitRequest{SplitPoints: o.SplitPoints, InitialRanges: uint32(o.InitialRanges), ReplicationFactor: uint32(o.ReplicationFactor)}
	var resp kvpb.InitResponse
	if err := c.invoke(ctx, MethodInit, route{any: true, slow: true}, nil, req, &resp); err != nil {
		return InitResult{}, err
	}
	return InitResult{AlreadyInitialized: resp.GetAlreadyInitialized(), Descriptors: resp.GetDescriptors()}, nil
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
// raftd address). It also refreshes the client's range cache.
func (c *Client) Descriptors(ctx context.Context, start, end []byte) (*kvpb.DescriptorsResponse, error) {
	h := &kvpb.Header{}
	var resp kvpb.DescriptorsResponse
	if err := c.invoke(ctx, MethodDescriptors, route{any: true}, h, &kvpb.DescriptorsRequest{Header: h, Start: start, End: end}, &resp); err != nil {
		return nil, err
	}
	c.cache.install(&resp)
	return &resp, nil
}
