package gossipclient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// Follow keeps a caller in step with gossipd's membership: it publishes md
// in this node's metadata (merged, when md is not nil), subscribes to
// membership events and calls onMembers with the full member list (dead
// and left members included) and gossipd's own node id at once, after
// every membership event and at least every refresh (a slow subscriber
// may have lost events). It returns when ctx ends or the event stream
// breaks, reporting whether gossipd answered at all; callers retry with
// backoff, publishing again, since a restarted gossipd forgot the
// metadata. onMembers runs on Follow's goroutine, one call at a time.
func (c *Client) Follow(ctx context.Context, md *gossippb.Metadata, refresh time.Duration, onMembers func(members []*gossippb.Member, selfID uint64)) (answered bool, err error) {
	if refresh <= 0 {
		return false, errors.New("gossipclient: Follow: refresh must be positive")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if md != nil {
		if _, err := c.SetMetadata(ctx, md, false); err != nil {
			return false, fmt.Errorf("gossipclient: publish metadata: %w", err)
		}
		answered = true
	}
	sub, err := c.Subscribe(ctx, false)
	if err != nil {
		return answered, err
	}
	kick := make(chan struct{}, 1)
	ended := make(chan error, 1)
	var wg sync.WaitGroup
	// The reader exits when the stream ends: gossipd closes it, it
	// breaks, or the cleanup below cancels ctx and closes it.
	wg.Go(func() {
		for {
			ev, err := sub.Next()
			if err != nil {
				ended <- err
				return
			}
			if ev.GetType() == gossippb.EventType_EVENT_TYPE_USER {
				continue
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	defer func() {
		cancel()
		_ = sub.Close()
		wg.Wait()
	}()
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		members, self, err := c.Members(ctx, true)
		if err != nil {
			return true, err
		}
		onMembers(members, self)
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-ended:
			if err == nil {
				err = errors.New("gossipclient: membership stream ended")
			}
			return true, err
		case <-kick:
		case <-t.C:
		}
	}
}
