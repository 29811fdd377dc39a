package multiraft

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// Versions
//
// Every applied write keeps a version at its timestamp (the apply
// timestamp of its command, the same on every replica) in the versions
// family, beside the key's latest record in the data family (the layout
// is storage's: see its package doc). The latest record serves ordinary
// reads and scans as before; reads at a timestamp (GetRequest.read_at)
// take the newest version at or before it.
//
// Versions older than the retention window (Config.VersionRetention) are
// collected by each store on its own, in the background (collectVersions):
// for each key, every version older than the collection threshold except
// the newest of those goes, and that one too when it is a tombstone (once
// every older version is gone: a read finds the tombstone until then).
// A read at a timestamp at or after the threshold therefore finds what it
// found before the collection. Reads at a timestamp before now minus the
// window fail "compacted"; the threshold stays behind that by
// gcClockSlack, which covers the clock offsets between the nodes that
// collect and the ones that read (a snapshot carries its sender's
// collected versions).

// gcClockSlack keeps the collection threshold this far behind the oldest
// timestamp a read may ask for: more than twice the clock offset a
// cluster allows (hlc's MaxOffset, 500ms by default).
const gcClockSlack = 5 * time.Second

func (c *Config) fillVersions() {
	if c.VersionRetention <= 0 {
		c.VersionRetention = 4 * time.Hour
	}
	if c.VersionGCInterval == 0 {
		c.VersionGCInterval = time.Minute
	}
	if c.VersionGCPageEntries <= 0 {
		c.VersionGCPageEntries = 1000
	}
}

// valueOf is the wire form of a live record.
func valueOf(m storage.Meta, v []byte) *kvpb.Value {
	return &kvpb.Value{Value: v, Timestamp: m.Mod.Proto(), CreateTimestamp: m.Create.Proto(), Version: m.Version}
}

// recordOf is the record of a wire value (a snapshot's): the first
// envelope version when it carries no version count (a sender that keeps
// none), else the current one.
func recordOf(v *kvpb.Value) ([]byte, error) {
	mod, err := hlc.FromProto(v.GetTimestamp())
	if err != nil {
		return nil, err
	}
	if v.GetVersion() == 0 {
		return storage.EncodeValue(mod, v.GetValue()), nil
	}
	created, err := hlc.FromProto(v.GetCreateTimestamp())
	if err != nil {
		return nil, err
	}
	if mod.Less(created) {
		return nil, fmt.Errorf("modified at %v before created at %v", mod, created)
	}
	return storage.EncodeRecord(storage.Meta{Mod: mod, Create: created, Version: v.GetVersion()}, v.GetValue()), nil
}

// checkVersionEntry checks a versions family entry a snapshot carries: a
// valid key within [vstart, vend) (nil vend: unbounded), whose record is
// valid and carries the key's timestamp.
func checkVersionEntry(key, value, vstart, vend []byte) error {
	if bytes.Compare(key, vstart) < 0 || (vend != nil && bytes.Compare(key, vend) >= 0) {
		return fmt.Errorf("version key %x outside the range", key)
	}
	_, ts, err := storage.DecodeVersionKey(key)
	if err != nil {
		return err
	}
	m, _, _, err := storage.DecodeRecord(value)
	if err != nil {
		return fmt.Errorf("version key %x: %w", key, err)
	}
	if m.Mod != ts {
		return fmt.Errorf("version key %x at %v holds a record of %v", key, ts, m.Mod)
	}
	return nil
}

// readHorizon is the oldest timestamp a read may ask for now.
func (s *Store) readHorizon() hlc.Timestamp {
	return hlc.Timestamp{WallTime: s.d.Clock.Now().WallTime - int64(s.cfg.VersionRetention)}
}

// gcThreshold is the timestamp below which collection may remove
// versions: gcClockSlack behind readHorizon.
func (s *Store) gcThreshold() hlc.Timestamp {
	h := s.readHorizon()
	h.WallTime -= int64(gcClockSlack)
	return h
}

// errCompacted refuses a read at ts, older than the retention window.
func errCompacted(ts, horizon hlc.Timestamp) error {
	return bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonCompacted,
		"kv: read at %v is older than the version retention window (oldest readable now: %v)", ts, horizon)
}

// readAt reads key as of ts: the newest version at or before it.
func (s *Store) readAt(ctx context.Context, key []byte, ts hlc.Timestamp) (*kvpb.Value, bool, error) {
	if h := s.readHorizon(); ts.Less(h) {
		return nil, false, errCompacted(ts, h)
	}
	// The latest record answers when it is not newer than ts (no write
	// came after it); this also serves keys written before versions were
	// kept.
	b, ok, err := s.cachedGet(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if ok {
		m, v, _, err := storage.DecodeRecord(b)
		if err != nil {
			return nil, false, fmt.Errorf("key %q: %w", key, err)
		}
		if !ts.Less(m.Mod) {
			return valueOf(m, v), true, nil
		}
	}
	kvs, err := s.d.Engine.Scan(ctx, storage.Versions, storage.VersionKey(key, ts), storage.VersionKeyEnd(key), storage.ScanOptions{Limit: 1})
	if err != nil {
		return nil, false, err
	}
	if len(kvs) == 0 {
		return nil, false, nil
	}
	m, v, deleted, err := storage.DecodeRecord(kvs[0].Value)
	if err != nil {
		return nil, false, fmt.Errorf("version %x: %w", kvs[0].Key, err)
	}
	if deleted {
		return nil, false, nil
	}
	return valueOf(m, v), true, nil
}

// startVersionGC starts the collection of old versions, unless disabled.
func (s *Store) startVersionGC() {
	if s.cfg.VersionGCInterval < 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.VersionGCInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
			n, err := s.collectVersions(s.ctx)
			if err != nil && !s.stopping() {
				s.log.Warn("version collection failed", slog.Any("error", err))
			}
			if n > 0 {
				s.log.Debug("versions collected", slog.Int("removed", n))
			}
		}
	}()
}

// collectVersions removes, in every local replica's span, the versions no
// read inside the retention window needs (see Versions above), a page at
// a time, pausing after each page as long as it took. It returns how many
// it removed.
func (s *Store) collectVersions(ctx context.Context) (int, error) {
	s.metrics.versionGCRunning.Store(1)
	defer s.metrics.versionGCRunning.Store(0)
	thr := s.gcThreshold()
	total := 0
	for _, r := range s.Replicas() {
		start, end := clipSpan(nil, nil, r.desc.Load())
		vstart, vend := storage.VersionSpan(start, end)
		n, err := s.collectSpan(ctx, vstart, vend, thr)
		total += n
		if err != nil {
			return total, fmt.Errorf("range %d: %w", r.rangeID, err)
		}
	}
	s.metrics.versionGCRounds.Add(1)
	return total, nil
}

// collectSpan collects the versions of [vstart, vend) (versions family)
// at or below thr that no read at thr or later needs.
func (s *Store) collectSpan(ctx context.Context, vstart, vend []byte, thr hlc.Timestamp) (int, error) {
	var (
		cur      []byte // the user key whose versions are being read
		seenOld  bool   // cur's newest version at or below thr was seen
		tomb     []byte // that version, when a tombstone: removed after the older ones
		removed  int
		pageSize = s.cfg.VersionGCPageEntries
	)
	for from := vstart; ; {
		began := time.Now()
		sctx, cancel := s.storageCtx()
		kvs, err := s.d.Engine.Scan(sctx, storage.Versions, from, vend, storage.ScanOptions{Limit: pageSize, MaxBytes: 4 << 20})
		cancel()
		if err != nil {
			return removed, err
		}
		var ops []storage.Op
		endKey := func() {
			if tomb != nil {
				ops = append(ops, storage.Delete(storage.Versions, tomb))
				tomb = nil
			}
		}
		for _, kv := range kvs {
			uk, ts, err := storage.DecodeVersionKey(kv.Key)
			if err != nil {
				return removed, err
			}
			if !bytes.Equal(uk, cur) {
				endKey()
				cur, seenOld = uk, false
			}
			if thr.Less(ts) {
				continue
			}
			if !seenOld {
				seenOld = true
				_, _, deleted, err := storage.DecodeRecord(kv.Value)
				if err != nil {
					return removed, fmt.Errorf("version %x: %w", kv.Key, err)
				}
				if deleted {
					tomb = bytes.Clone(kv.Key)
				}
				continue
			}
			ops = append(ops, storage.Delete(storage.Versions, kv.Key))
		}
		// The span ends with an empty page (a short one may be cut by
		// bytes): the last key's versions were all read then.
		last := len(kvs) == 0
		if last {
			endKey()
		}
		if len(ops) > 0 {
			wctx, cancel := s.storageCtx()
			err := s.d.Engine.Write(wctx, ops, false)
			cancel()
			if err != nil {
				return removed, err
			}
			removed += len(ops)
			s.metrics.versionsCollected.Add(uint64(len(ops)))
		}
		if last {
			return removed, nil
		}
		from = append(bytes.Clone(kvs[len(kvs)-1].Key), 0)
		select {
		case <-ctx.Done():
			return removed, ctx.Err()
		case <-time.After(max(time.Since(began), time.Millisecond)):
		}
	}
}

// scanAt reads up to limit keys of [start, end) as of ts: for each key
// the latest record (data family) when it is not newer than ts, as
// readAt does (this also finds keys last written before versions were
// kept), else its newest version at or before ts (versions family); a
// tombstone or no version leaves the key out. The page ends with the
// entry that brings the keys and values returned to maxBytes (values
// count even for keys only); read is their size and full reports that
// the page ended at the limit or the bytes. It reads both families side
// by side, VersionGCPageEntries at a time, so it reads every version of
// the keys it passes.
func (s *Store) scanAt(ctx context.Context, start, end []byte, ts hlc.Timestamp, reverse, keysOnly bool, limit, maxBytes int) (out []*kvpb.KeyValue, read int, full bool, _ error) {
	vstart, vend := storage.VersionSpan(start, end)
	vc := &famCursor{s: s, cf: storage.Versions, start: vstart, end: vend, reverse: reverse}
	dc := &famCursor{s: s, cf: storage.Data, start: start, end: end, reverse: reverse}
	for {
		v, err := vc.peek(ctx)
		if err != nil {
			return nil, 0, false, err
		}
		d, err := dc.peek(ctx)
		if err != nil {
			return nil, 0, false, err
		}
		if v == nil && d == nil {
			return out, read, false, nil
		}
		// The next user key in scan order.
		var uk []byte
		if v != nil {
			if uk, _, err = storage.DecodeVersionKey(v.Key); err != nil {
				return nil, 0, false, err
			}
		}
		if d != nil && (v == nil || (bytes.Compare(d.Key, uk) < 0) != reverse) {
			uk = d.Key
		}
		var rec []byte
		if d != nil && bytes.Equal(d.Key, uk) {
			m, _, _, err := storage.DecodeRecord(d.Value)
			if err != nil {
				return nil, 0, false, fmt.Errorf("key %q: %w", uk, err)
			}
			if !ts.Less(m.Mod) {
				rec = d.Value
			}
			dc.next()
		}
		// uk's versions: newest first going forward, oldest first going
		// backwards.
		var cand []byte
		for {
			v, err := vc.peek(ctx)
			if err != nil {
				return nil, 0, false, err
			}
			if v == nil {
				break
			}
			k, vts, err := storage.DecodeVersionKey(v.Key)
			if err != nil {
				return nil, 0, false, err
			}
			if !bytes.Equal(k, uk) {
				break
			}
			if !ts.Less(vts) && (reverse || cand == nil) {
				cand = v.Value
			}
			vc.next()
		}
		if rec == nil {
			rec = cand
		}
		if rec == nil {
			continue
		}
		m, val, deleted, err := storage.DecodeRecord(rec)
		if err != nil {
			return nil, 0, false, fmt.Errorf("key %q version: %w", uk, err)
		}
		if deleted {
			continue
		}
		read += len(uk) + len(val)
		kv := &kvpb.KeyValue{Key: uk, Value: valueOf(m, nil)}
		if !keysOnly {
			kv.Value.Value = val
		}
		out = append(out, kv)
		if len(out) >= limit || read >= maxBytes {
			return out, read, true, nil
		}
	}
}

// famCursor walks [start, end) of one column family in order (or
// reverse), a page of VersionGCPageEntries at a time.
type famCursor struct {
	s          *Store
	cf         storage.CF
	start, end []byte
	reverse    bool
	page       []storage.KV
	pos        int
	done       bool
}

// peek returns the current entry, nil at the end of the span.
func (c *famCursor) peek(ctx context.Context) (*storage.KV, error) {
	for c.pos >= len(c.page) {
		if c.done {
			return nil, nil
		}
		kvs, err := c.s.d.Engine.Scan(ctx, c.cf, c.start, c.end, storage.ScanOptions{Limit: c.s.cfg.VersionGCPageEntries, MaxBytes: 4 << 20, Reverse: c.reverse})
		if err != nil {
			return nil, err
		}
		// Only an empty page ends the span (a short one may be cut by
		// bytes).
		if len(kvs) == 0 {
			c.done = true
			return nil, nil
		}
		c.page, c.pos = kvs, 0
		last := kvs[len(kvs)-1].Key
		if c.reverse {
			c.end = last
		} else {
			c.start = append(bytes.Clone(last), 0)
		}
	}
	return &c.page[c.pos], nil
}

func (c *famCursor) next() { c.pos++ }
