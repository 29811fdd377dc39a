package gossipclient

import (
	"context"
	"log/slog"
	"time"

	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// Advertise keeps key=addr in this node's gossip metadata (Addresses,
// merged with what others set) so that every member sees where this node's
// daemon named key listens (`pleiades members` shows them): it publishes
// it, then follows a subscription, which ends when gossipd stops or
// restarts, and publishes again (gossipd keeps metadata in memory only).
// While gossipd does not answer it retries with backoff (100ms up to 10s),
// logging at debug level: a node's daemons start and stop around gossipd.
// It returns when ctx ends.
func (c *Client) Advertise(ctx context.Context, key, addr string, log *slog.Logger) {
	retry := backoff.New(100*time.Millisecond, 10*time.Second)
	for ctx.Err() == nil {
		md := &gossippb.Metadata{Addresses: map[string]string{key: addr}}
		err := c.publishAndFollow(ctx, md)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			retry.Reset()
		}
		log.Debug("advertising the address in gossip again", slog.String("gossip_addr", c.addr), slog.Any("err", err))
		if !retry.Wait(ctx) {
			return
		}
	}
}

// publishAndFollow publishes md, then waits until the subscription ends
// (gossipd stopped) or ctx does; nil means it was published and the
// stream ended.
func (c *Client) publishAndFollow(ctx context.Context, md *gossippb.Metadata) error {
	sub, err := c.Subscribe(ctx, false)
	if err != nil {
		return err
	}
	defer sub.Close()
	// Published after subscribing: a gossipd restart after this point ends
	// the stream, so the next round publishes again.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = c.SetMetadata(cctx, md, false)
	cancel()
	if err != nil {
		return err
	}
	for {
		if _, err := sub.Next(); err != nil {
			return nil
		}
	}
}
