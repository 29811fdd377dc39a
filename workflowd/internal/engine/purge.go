package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
)

// Purging: finished instances and published events are deleted once they
// are older than Config.Retention and Config.EventRetention, so the meta
// range, where workflow state lives, does not grow for ever. Every
// workflowd purges every PurgeInterval; two purging the same instance at
// once are harmless (the second one's compare-and-swap of the list entry
// fails). A round deletes at most purgeMaxInstances instances and
// purgeMaxEvents events, one small batch at a time, and the next round
// goes on: a backlog is worked off without holding the meta range.
const (
	purgeMaxInstances = 1000
	purgeMaxEvents    = 10000
	purgeEventBatch   = 256
)

// purgeLoop purges every PurgeInterval until the engine stops.
func (e *Engine) purgeLoop() {
	t := time.NewTicker(e.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		inst, evs, err := e.Purge(e.ctx)
		if err != nil && e.ctx.Err() == nil {
			e.log.Warn("purge of finished instances and old events", slog.Any("err", err))
		}
		if inst+evs > 0 {
			e.log.Info("purged", slog.Int("instances", inst), slog.Int("events", evs))
		}
	}
}

// Purge deletes, once, the finished instances whose end is older than
// Retention and the events whose effective time is older than
// EventRetention (a negative retention keeps them for ever), up to a
// round's limits. It returns how many of each it deleted.
func (e *Engine) Purge(ctx context.Context) (instances, events int, err error) {
	now := e.now()
	if e.cfg.Retention >= 0 {
		instances, err = e.purgeInstances(ctx, now.Add(-e.cfg.Retention).UnixNano())
		if err != nil {
			return instances, 0, err
		}
	}
	if e.cfg.EventRetention >= 0 {
		events, err = e.purgeEvents(ctx, now.Add(-e.cfg.EventRetention).UnixNano())
	}
	return instances, events, err
}

// purgeInstances deletes finished instances that ended before cutoff:
// record, revision, list entry and idempotency key, in one batch each,
// guarded by a compare-and-swap of the list entry.
func (e *Engine) purgeInstances(ctx context.Context, cutoff int64) (int, error) {
	n := 0
	for _, st := range listOrder {
		if !terminal(st) {
			continue
		}
		start, end := span(key(nsList, []byte{byte(st), '/'}))
		type victim struct {
			id      string
			listKey []byte
			summary []byte
		}
		var victims []victim
		it := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{PageSize: 512})
		for it.Next() && n+len(victims) < purgeMaxInstances {
			kv := it.KV()
			s := &workflowpb.InstanceSummary{}
			if err := proto.Unmarshal(kv.Value, s); err != nil || s.GetEndedUnixNano() == 0 || s.GetEndedUnixNano() >= cutoff {
				continue
			}
			victims = append(victims, victim{id: idFromKey(kv.Key, start), listKey: bytes.Clone(kv.Key), summary: bytes.Clone(kv.Value)})
		}
		if err := it.Err(); err != nil {
			return n, err
		}
		for _, v := range victims {
			ok, err := e.purgeInstance(ctx, v.id, v.listKey, v.summary)
			if err != nil {
				return n, err
			}
			if ok {
				n++
				e.m.purged.WithLabelValues("instance").Inc()
			}
		}
	}
	return n, nil
}

// purgeInstance deletes one finished instance; false if another purger
// got there first.
func (e *Engine) purgeInstance(ctx context.Context, id string, listKey, summary []byte) (bool, error) {
	b := kvclient.NewBatch().
		CompareAndSwap(kvclient.CAS{Key: listKey, Expected: summary, Delete: true}).
		Delete(instanceKey(id)).
		Delete(fenceKey(id))
	rec, _, err := e.load(ctx, id)
	switch {
	case err == nil:
		if !terminal(rec.GetStatus()) {
			// The list entry is stale; leave it for the instance's own
			// writes to settle.
			return false, nil
		}
		if k := rec.GetIdempotencyKey(); k != "" {
			cur, found, err := e.kv.Get(ctx, idemKey(k))
			if err != nil {
				return false, err
			}
			if found && string(cur.Value) == id {
				b.Delete(idemKey(k))
			}
		}
	case errors.Is(err, ErrNotFound):
		// A purge that deleted the record but whose answer was lost
		// leaves nothing behind (one batch), so this is a list entry
		// without a record: delete it all the same.
	default:
		return false, err
	}
	res, err := e.kv.Batch(ctx, b)
	if err != nil {
		return false, err
	}
	return res.Succeeded, nil
}

// purgeEvents deletes events whose effective time is before cutoff (read
// from their keys: ev/<name>\0<key>\0<time 8B><id 8B>).
func (e *Engine) purgeEvents(ctx context.Context, cutoff int64) (int, error) {
	start, end := span(key(nsEvent))
	var old [][]byte
	it := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{KeysOnly: true, PageSize: 1000})
	for it.Next() && len(old) < purgeMaxEvents {
		k := it.KV().Key
		if len(k) < len(start)+16 {
			continue
		}
		if unbe64(k[len(k)-16:len(k)-8]) < cutoff {
			old = append(old, bytes.Clone(k))
		}
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	n := 0
	for len(old) > 0 {
		chunk := old[:min(len(old), purgeEventBatch)]
		old = old[len(chunk):]
		b := kvclient.NewBatch()
		for _, k := range chunk {
			b.Delete(k)
		}
		if _, err := e.kv.Batch(ctx, b); err != nil {
			return n, err
		}
		n += len(chunk)
		e.m.purged.WithLabelValues("event").Add(float64(len(chunk)))
	}
	return n, nil
}
