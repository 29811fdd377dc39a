package clockclient

import (
	"context"
	"fmt"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Method names of clockd's bus protocol.
const (
	MethodNow         = "Now"
	MethodUpdate      = "Update"
	MethodStatus      = "Status"
	MethodWatchHealth = "WatchHealth"
	MethodProbe       = "Probe"
	MethodOffsets     = "Offsets"
)

// Client calls one clockd over a bus.
type Client struct {
	b    *bus.Bus
	addr string
}

// New returns a client of the clockd at addr, calling through b.
func New(b *bus.Bus, addr string) *Client { return &Client{b: b, addr: addr} }

// Addr returns the clockd's bus address.
func (c *Client) Addr() string { return c.addr }

// Now returns a fresh reading of clockd's clock.
func (c *Client) Now(ctx context.Context) (hlc.Timestamp, error) {
	var resp clockpb.NowResponse
	if err := c.b.Call(ctx, c.addr, wire.ProtoClock, MethodNow, &clockpb.NowRequest{}, &resp); err != nil {
		return hlc.Timestamp{}, fmt.Errorf("clockclient: Now: %w", err)
	}
	return hlc.FromProto(resp.GetNow())
}

// Update folds observed into clockd's clock and returns the clock's
// reading after it. clockd refuses (bus.ErrInvalidArgument) a negative
// timestamp or one more than MaxOffset ahead of its physical time.
func (c *Client) Update(ctx context.Context, observed hlc.Timestamp) (hlc.Timestamp, error) {
	var resp clockpb.UpdateResponse
	if err := c.b.Call(ctx, c.addr, wire.ProtoClock, MethodUpdate, &clockpb.UpdateRequest{Observed: observed.Proto()}, &resp); err != nil {
		return hlc.Timestamp{}, fmt.Errorf("clockclient: Update: %w", err)
	}
	return hlc.FromProto(resp.GetNow())
}

// Status returns the clock's status.
func (c *Client) Status(ctx context.Context) (*clockpb.StatusResponse, error) {
	var resp clockpb.StatusResponse
	if err := c.b.Call(ctx, c.addr, wire.ProtoClock, MethodStatus, &clockpb.StatusRequest{}, &resp); err != nil {
		return nil, fmt.Errorf("clockclient: Status: %w", err)
	}
	return &resp, nil
}

// Offsets returns the per-peer offset estimates of clockd's monitor.
func (c *Client) Offsets(ctx context.Context) ([]*clockpb.PeerOffset, error) {
	var resp clockpb.OffsetsResponse
	if err := c.b.Call(ctx, c.addr, wire.ProtoClock, MethodOffsets, &clockpb.OffsetsRequest{}, &resp); err != nil {
		return nil, fmt.Errorf("clockclient: Offsets: %w", err)
	}
	return resp.GetPeers(), nil
}

// Probe performs the responder half of a four-timestamp exchange; sentNs
// is the caller's physical time (t1).
func (c *Client) Probe(ctx context.Context, sentNs int64) (*clockpb.ProbeResponse, error) {
	var resp clockpb.ProbeResponse
	if err := c.b.Call(ctx, c.addr, wire.ProtoClock, MethodProbe, &clockpb.ProbeRequest{SentNs: sentNs}, &resp); err != nil {
		return nil, fmt.Errorf("clockclient: Probe: %w", err)
	}
	return &resp, nil
}

// HealthStream delivers clockd's health changes.
type HealthStream struct {
	s *bus.ClientStream
}

// WatchHealth subscribes to health changes; the current health comes
// first. Close the stream (or cancel ctx) to stop.
func (c *Client) WatchHealth(ctx context.Context) (*HealthStream, error) {
	s, err := c.b.Stream(ctx, c.addr, wire.ProtoClock, MethodWatchHealth, &clockpb.WatchHealthRequest{})
	if err != nil {
		return nil, fmt.Errorf("clockclient: WatchHealth: %w", err)
	}
	return &HealthStream{s: s}, nil
}

// Recv returns the next health event; io.EOF when the server ends the
// stream.
func (h *HealthStream) Recv() (*clockpb.Health, error) {
	var m clockpb.Health
	if err := h.s.Recv(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Close ends the subscription.
func (h *HealthStream) Close() error { return h.s.Close() }
