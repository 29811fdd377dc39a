package kvclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// MethodWatch is raftd's server stream of the changes to a span of one
// range (kvpb.WatchRequest → kvpb.WatchResponse).
const MethodWatch = "Watch"

// WatchOptions shape a Watch.
type WatchOptions struct {
	// From, when set, replays every change after it (within the
	// cluster's version retention window; older fails with an error
	// IsCompacted reports) before the live ones. Zero: changes after the
	// watch opens.
	From hlc.Timestamp
	// PrevValue adds each change's previous value.
	PrevValue bool
	// CheckpointInterval is how often each range reports its resolved
	// timestamp (0: the server's default, 200ms).
	CheckpointInterval time.Duration
}

// WatchEvent is one change of one key.
type WatchEvent struct {
	Key []byte
	// Value is the value written, with its timestamps and version count;
	// zero when Deleted.
	Value   Value
	Deleted bool
	// PrevValue is the value before the change (WatchOptions.PrevValue;
	// nil when the key was absent).
	PrevValue *Value
	Timestamp hlc.Timestamp
}

// WatchResponse is what a Watch delivers: changes, or a checkpoint.
type WatchResponse struct {
	// Events are changes, in timestamp order for each key.
	Events []WatchEvent
	// Resolved, when set, is a checkpoint: every change at or below it to
	// the watched span has been delivered. Resuming a watch from it
	// (WatchOptions.From) misses nothing and repeats nothing.
	Resolved hlc.Timestamp
}

// Watch calls fn, from one goroutine, with the changes to [start, end)
// (nil end: the key start alone) and checkpoints, until ctx ends (it
// returns ctx's error), fn returns an error (returned), or the watch
// fails for good (a From older than the retention window, bad
// arguments). It opens one stream per range of the span at the range's
// leader; a stream that ends (leader change, node down, a watcher too
// slow) is reopened from its last checkpoint, so every change is
// delivered once. A range that splits under a watch is followed: its
// stream ends with a RangeKeyMismatch and each side is watched from the
// last checkpoint.
func (c *Client) Watch(ctx context.Context, start, end []byte, o WatchOptions, fn func(WatchResponse) error) error {
	if len(end) == 0 {
		end = append(bytes.Clone(start), 0)
	}
	if bytes.Compare(end, start) <= 0 {
		return fmt.Errorf("client: watch end %q is not after start %q", end, start)
	}
	return c.watchSpans(ctx, start, end, o, map[string]hlc.Timestamp{}, false, fn)
}

// watchSpans watches [start, end) with one watchRange per range of the
// span, delivering their changes and, as checkpoints, the lowest of their
// resolved timestamps. seen holds the keys' latest change delivered since
// o.From (each range's watch takes its keys' entries). split: a range's
// stream ended because the span is no longer one range's, so the
// descriptors are read again until they show it (the node answering may
// not know of the split yet).
func (c *Client) watchSpans(ctx context.Context, start, end []byte, o WatchOptions, seen map[string]hlc.Timestamp, split bool, fn func(WatchResponse) error) error {
	var descs *kvpb.DescriptorsResponse
	for attempt := 0; ; attempt++ {
		var err error
		if descs, err = c.Descriptors(ctx, start, end); err != nil {
			return fmt.Errorf("client: watch: %w", err)
		}
		if !split || len(descs.GetDescriptors()) != 1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.backoff(attempt)):
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		idx  int
		resp WatchResponse
		err  error
	}
	out := make(chan item)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var spans [][2][]byte
	for _, d := range descs.GetDescriptors() {
		s, e := start, end
		if bytes.Compare(d.GetStartKey(), s) > 0 {
			s = d.GetStartKey()
		}
		if len(d.GetEndKey()) > 0 && bytes.Compare(d.GetEndKey(), e) < 0 {
			e = d.GetEndKey()
		}
		if bytes.Compare(s, e) < 0 {
			spans = append(spans, [2][]byte{s, e})
		}
	}
	if len(spans) == 0 {
		return fmt.Errorf("client: watch: no range holds [%q, %q)", start, end)
	}
	if len(spans) == 1 {
		return c.watchOne(ctx, spans[0][0], spans[0][1], o, seen, fn)
	}
	for i, sp := range spans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := map[string]hlc.Timestamp{}
			for k, ts := range seen {
				if k >= string(sp[0]) && k < string(sp[1]) {
					mine[k] = ts
				}
			}
			err := c.watchRange(ctx, sp[0], sp[1], o, mine, func(r WatchResponse) error {
				select {
				case out <- item{idx: i, resp: r}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			select {
			case out <- item{idx: i, err: err}:
			case <-ctx.Done():
			}
		}()
	}
	resolved := make([]hlc.Timestamp, len(spans))
	var sent hlc.Timestamp
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it := <-out:
			if it.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return it.err
			}
			if len(it.resp.Events) > 0 {
				if err := fn(WatchResponse{Events: it.resp.Events}); err != nil {
					return err
				}
			}
			if it.resp.Resolved.IsZero() {
				continue
			}
			resolved[it.idx] = it.resp.Resolved
			low := resolved[0]
			for _, r := range resolved[1:] {
				if r.Less(low) {
					low = r
				}
			}
			if !low.IsZero() && sent.Less(low) {
				sent = low
				if err := fn(WatchResponse{Resolved: low}); err != nil {
					return err
				}
			}
		}
	}
}

// watchOne watches a span of one range from the calling goroutine: what
// its stream receives goes to fn without the hop through watchSpans'
// merge of several ranges (one goroutine switch less per event on the
// common watch of one key). Checkpoints are passed on only when they
// move forward, as watchSpans does.
func (c *Client) watchOne(ctx context.Context, start, end []byte, o WatchOptions, seen map[string]hlc.Timestamp, fn func(WatchResponse) error) error {
	var (
		sent  hlc.Timestamp
		fnErr error
	)
	err := c.watchRange(ctx, start, end, o, seen, func(r WatchResponse) error {
		if len(r.Events) > 0 {
			if fnErr = fn(WatchResponse{Events: r.Events}); fnErr != nil {
				return fnErr
			}
		}
		if !r.Resolved.IsZero() && sent.Less(r.Resolved) {
			sent = r.Resolved
			fnErr = fn(WatchResponse{Resolved: r.Resolved})
		}
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// watchRange watches [start, end) of one range, reopening its stream from
// the last checkpoint until ctx ends or the watch fails for good.
func (c *Client) watchRange(ctx context.Context, start, end []byte, o WatchOptions, seen map[string]hlc.Timestamp, deliver func(WatchResponse) error) error {
	from := o.From
	// seen holds the keys' latest change delivered since the last
	// checkpoint: a stream reopened from the checkpoint repeats them
	// (a replay comes key by key, not in timestamp order).
	hint, avoid := "", ""
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		req := &kvpb.WatchRequest{Header: &kvpb.Header{}, Start: start, End: end, PrevValue: o.PrevValue,
			CheckpointMillis: uint32(o.CheckpointInterval / time.Millisecond)}
		if !from.IsZero() {
			req.From = from.Proto()
		}
		addr, _, _ := c.pick(route{key: start, pointOp: true}, hint, avoid)
		hint = ""
		err := c.watchStream(ctx, addr, req, seen, func(r WatchResponse) error {
			if !r.Resolved.IsZero() {
				from = r.Resolved
				clear(seen)
				attempt = 0
			}
			return deliver(r)
		})
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errDelivery):
			return err
		case err == nil || errors.Is(err, io.EOF):
		case mismatch(err):
			// The range split (or the span was never one range's): watch
			// each range of the span from the last checkpoint, the changes
			// delivered since then still filtered out.
			c.learnMismatch(err)
			o.From = from
			return c.watchSpans(ctx, start, end, o, seen, true, deliver)
		case bus.CodeOf(err) == bus.CodeNotLeader:
			hint = bus.LeaderHint(err)
			if hint == "" {
				c.maybeRefresh(ctx)
			}
		case retryable(bus.CodeOf(err)) || bus.CodeOf(err) == bus.CodeInternal:
			avoid = addr
			c.maybeRefresh(ctx)
		default:
			return fmt.Errorf("client: watch [%q, %q): %w", start, end, err)
		}
		c.cfg.Logger.Debug("client: watch stream ended; resuming", "addr", addr, "from", from.String(), "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.backoff(attempt)):
		}
	}
}

// errDelivery marks a failure to hand a response over (the watch ends).
var errDelivery = errors.New("client: watch delivery ended")

// watchStream runs one stream until it ends.
func (c *Client) watchStream(ctx context.Context, addr string, req *kvpb.WatchRequest, seen map[string]hlc.Timestamp, deliver func(WatchResponse) error) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.bus.Stream(sctx, addr, wire.ProtoKV, MethodWatch, req)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	for {
		var m kvpb.WatchResponse
		if err := st.Recv(&m); err != nil {
			return err
		}
		var r WatchResponse
		for _, ev := range m.GetEvents() {
			ts := timestamp(ev.GetTimestamp())
			if last, ok := seen[string(ev.GetKey())]; ok && !last.Less(ts) {
				continue // delivered before the stream was reopened
			}
			seen[string(ev.GetKey())] = ts
			we := WatchEvent{Key: ev.GetKey(), Deleted: ev.GetDeleted(), Timestamp: ts}
			if v := ev.GetValue(); v != nil {
				we.Value = valueFromProto(v)
			}
			if p := ev.GetPrevValue(); p != nil {
				pv := valueFromProto(p)
				we.PrevValue = &pv
			}
			r.Events = append(r.Events, we)
		}
		if res := m.GetResolved(); res != nil {
			r.Resolved = timestamp(res)
		}
		if len(r.Events) == 0 && r.Resolved.IsZero() {
			continue
		}
		if err := deliver(r); err != nil {
			return fmt.Errorf("%w: %w", errDelivery, err)
		}
	}
}

func valueFromProto(v *kvpb.Value) Value {
	return Value{Value: v.GetValue(), Timestamp: timestamp(v.GetTimestamp()), CreateTimestamp: timestamp(v.GetCreateTimestamp()), Version: v.GetVersion()}
}
