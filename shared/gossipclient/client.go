package gossipclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Method names of gossipd's bus protocol (wire.ProtoGossip).
const (
	// MethodMembers lists members (local API).
	MethodMembers = "Members"
	// MethodMember returns one member (local API).
	MethodMember = "Member"
	// MethodJoin joins through given addresses (local API).
	MethodJoin = "Join"
	// MethodLeave leaves gracefully (local API).
	MethodLeave = "Leave"
	// MethodSubscribe streams membership events (local API).
	MethodSubscribe = "Subscribe"
	// MethodSetMetadata changes this node's metadata (local API).
	MethodSetMetadata = "SetMetadata"
	// MethodCoordinate returns a member's coordinate (local API).
	MethodCoordinate = "Coordinate"
	// MethodEstimateRTT estimates the RTT between two members (local API).
	MethodEstimateRTT = "EstimateRTT"
	// MethodBroadcast sends a cluster-wide user event (local API).
	MethodBroadcast = "Broadcast"
	// MethodPushPull exchanges full state between gossipds.
	MethodPushPull = "PushPull"
	// MethodPing is the stream fallback probe between gossipds.
	MethodPing = "Ping"
)

// Client calls one gossipd over a bus.
type Client struct {
	b    *bus.Bus
	addr string
}

// New returns a client of the gossipd at addr, calling through b.
func New(b *bus.Bus, addr string) *Client { return &Client{b: b, addr: addr} }

// Addr returns the gossipd's bus address.
func (c *Client) Addr() string { return c.addr }

func (c *Client) call(ctx context.Context, method string, req, resp proto.Message) error {
	if err := c.b.Call(ctx, c.addr, wire.ProtoGossip, method, req, resp); err != nil {
		return fmt.Errorf("gossipclient: %s: %w", method, err)
	}
	return nil
}

// Members returns the known members ordered by node id; includeDead also
// returns dead and left members still remembered. selfID is the answering
// node's id.
func (c *Client) Members(ctx context.Context, includeDead bool) (members []*gossippb.Member, selfID uint64, err error) {
	var resp gossippb.MembersResponse
	if err := c.call(ctx, MethodMembers, &gossippb.MembersRequest{IncludeDead: includeDead}, &resp); err != nil {
		return nil, 0, err
	}
	return resp.GetMembers(), resp.GetSelfId(), nil
}

// Member returns one member; id 0 means the gossipd's own node. An unknown
// id yields an error matching bus.ErrNotFound.
func (c *Client) Member(ctx context.Context, id uint64) (*gossippb.Member, error) {
	var resp gossippb.MemberResponse
	if err := c.call(ctx, MethodMember, &gossippb.MemberRequest{NodeId: id}, &resp); err != nil {
		return nil, err
	}
	return resp.GetMember(), nil
}

// Join asks gossipd to join the cluster through addrs (gossipd bus
// addresses) and returns how many answered.
func (c *Client) Join(ctx context.Context, addrs ...string) (int, error) {
	var resp gossippb.JoinResponse
	if err := c.call(ctx, MethodJoin, &gossippb.JoinRequest{Addrs: addrs}, &resp); err != nil {
		return 0, err
	}
	return int(resp.GetJoined()), nil
}

// Leave makes gossipd announce a graceful leave and waits until the
// announcement has been sent or ctx ends.
func (c *Client) Leave(ctx context.Context) error {
	return c.call(ctx, MethodLeave, &gossippb.LeaveRequest{}, &gossippb.LeaveResponse{})
}

// SetMetadata merges md into the node's metadata (an empty value deletes
// a key; replace swaps the whole metadata) and returns the result. Too
// large metadata yields an error matching bus.ErrInvalidArgument.
func (c *Client) SetMetadata(ctx context.Context, md *gossippb.Metadata, replace bool) (*gossippb.Metadata, error) {
	var resp gossippb.SetMetadataResponse
	if err := c.call(ctx, MethodSetMetadata, &gossippb.SetMetadataRequest{Metadata: md, Replace: replace}, &resp); err != nil {
		return nil, err
	}
	return resp.GetMetadata(), nil
}

// Coordinate returns a member's Vivaldi coordinate; id 0 means this node.
func (c *Client) Coordinate(ctx context.Context, id uint64) (*gossippb.Coordinate, error) {
	var resp gossippb.CoordinateResponse
	if err := c.call(ctx, MethodCoordinate, &gossippb.CoordinateRequest{NodeId: id}, &resp); err != nil {
		return nil, err
	}
	return resp.GetCoordinate(), nil
}

// EstimateRTT returns the estimated round-trip time between members a and
// b (0 means this node).
func (c *Client) EstimateRTT(ctx context.Context, a, b uint64) (time.Duration, error) {
	var resp gossippb.EstimateRTTResponse
	if err := c.call(ctx, MethodEstimateRTT, &gossippb.EstimateRTTRequest{A: a, B: b}, &resp); err != nil {
		return 0, err
	}
	return time.Duration(resp.GetRttNanos()), nil
}

// Broadcast queues a cluster-wide user event and returns its id.
func (c *Client) Broadcast(ctx context.Context, name string, payload []byte) (uint64, error) {
	var resp gossippb.BroadcastResponse
	if err := c.call(ctx, MethodBroadcast, &gossippb.BroadcastRequest{Name: name, Payload: payload}, &resp); err != nil {
		return 0, err
	}
	return resp.GetId(), nil
}

// Subscription is an open stream of membership events.
type Subscription struct {
	s *bus.ClientStream
}

// Subscribe opens a stream of membership and user events; with snapshot,
// one JOIN event per alive member comes first. Close the subscription (or
// cancel ctx) when done.
func (c *Client) Subscribe(ctx context.Context, snapshot bool) (*Subscription, error) {
	s, err := c.b.Stream(ctx, c.addr, wire.ProtoGossip, MethodSubscribe, &gossippb.SubscribeRequest{Snapshot: snapshot})
	if err != nil {
		return nil, fmt.Errorf("gossipclient: %s: %w", MethodSubscribe, err)
	}
	return &Subscription{s: s}, nil
}

// Next blocks for the next event. It returns io.EOF when gossipd ends the
// stream normally, or the stream's error.
func (s *Subscription) Next() (*gossippb.Event, error) {
	var ev gossippb.Event
	if err := s.s.Recv(&ev); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("gossipclient: %s: %w", MethodSubscribe, err)
	}
	return &ev, nil
}

// Close abandons the stream.
func (s *Subscription) Close() error { return s.s.Close() }
