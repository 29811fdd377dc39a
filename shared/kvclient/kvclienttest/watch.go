package kvclienttest

import (
	"bytes"
	"context"
	"sort"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// watchPoll is how often the fake's Watch looks for new versions.
const watchPoll = 10 * time.Millisecond

// registerWatch serves kvclient.MethodWatch on node: a replay of the
// versions after from (key by key, oldest first), then, every watchPoll,
// the versions written since, in timestamp order, each followed by a
// checkpoint. The fake's timestamps come from one clock under its lock,
// so the versions after a checkpoint are exactly those written since.
func (c *Cluster) registerWatch(b *bus.Bus) {
	bus.HandleStream(b, wire.ProtoKV, kvclient.MethodWatch, func(ctx context.Context, r *kvpb.WatchRequest, send func(*kvpb.WatchResponse) error) error {
		from, err := hlc.FromProto(r.GetFrom())
		if err != nil {
			return bus.Errorf(bus.CodeInvalidArgument, "clienttest: watch from: %v", err)
		}
		if r.GetFrom() != nil && from.WallTime < c.clock.Now().WallTime-int64(VersionRetention) {
			return bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonCompacted, "clienttest: watch from %v is older than the retention window", from)
		}
		c.mu.Lock()
		evs, resolved := c.changesLocked(r, from, true)
		c.mu.Unlock()
		if r.GetFrom() == nil {
			evs = nil
		}
		for {
			if len(evs) > 0 {
				if err := send(&kvpb.WatchResponse{Events: evs}); err != nil {
					return err
				}
			}
			if err := send(&kvpb.WatchResponse{Resolved: resolved.Proto()}); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.done:
				return bus.Errorf(bus.CodeUnavailable, "clienttest: stopping")
			case <-time.After(watchPoll):
			}
			c.mu.Lock()
			evs, resolved = c.changesLocked(r, resolved, false)
			c.mu.Unlock()
		}
	})
}

// changesLocked lists the versions of r's span after from (by key, or by
// timestamp) and the timestamp every later version will be above.
func (c *Cluster) changesLocked(r *kvpb.WatchRequest, from hlc.Timestamp, byKey bool) ([]*kvpb.WatchEvent, hlc.Timestamp) {
	now := c.clock.Now()
	var out []*kvpb.WatchEvent
	for k, h := range c.mu.history {
		if bytes.Compare([]byte(k), r.GetStart()) < 0 || bytes.Compare([]byte(k), r.GetEnd()) >= 0 {
			continue
		}
		var prev *kvpb.Value
		for _, v := range h {
			ts, _ := hlc.FromProto(v.GetTimestamp())
			if from.Less(ts) {
				ev := &kvpb.WatchEvent{Key: []byte(k), Timestamp: v.GetTimestamp(), Deleted: v.GetVersion() == 0}
				if !ev.Deleted {
					ev.Value = v
				}
				if r.GetPrevValue() && prev != nil && prev.GetVersion() > 0 {
					ev.PrevValue = prev
				}
				out = append(out, ev)
			}
			prev = v
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if byKey {
			if c := bytes.Compare(out[i].GetKey(), out[j].GetKey()); c != 0 {
				return c < 0
			}
		}
		ti, _ := hlc.FromProto(out[i].GetTimestamp())
		tj, _ := hlc.FromProto(out[j].GetTimestamp())
		return ti.Less(tj)
	})
	return out, now
}
