package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// DefaultScanLimit is the page size of a Scan without a limit.
const DefaultScanLimit = 1000

// MaxScanBytes caps a Scan page's keys and values (ScanRequest.max_bytes):
// a page of large values must fit one bus frame.
const MaxScanBytes = 4 << 20

// KV method names (wire.ProtoKV).
const (
	MethodGet            = "Get"
	MethodPut            = "Put"
	MethodDelete         = "Delete"
	MethodScan           = "Scan"
	MethodDeleteRange    = "DeleteRange"
	MethodCompareAndSwap = "CompareAndSwap"
	MethodBatch          = "Batch"
	MethodDescriptors    = "Descriptors"
	MethodRanges         = "Ranges"
)

// HandleKV serves one KV request by method name; the bus server and the
// local test network both dispatch through it.
func (s *Store) HandleKV(ctx context.Context, method string, req proto.Message) (proto.Message, error) {
	switch method {
	case MethodGet:
		return call(ctx, req, s.Get)
	case MethodPut:
		return call(ctx, req, s.Put)
	case MethodDelete:
		return call(ctx, req, s.Delete)
	case MethodScan:
		return call(ctx, req, s.Scan)
	case MethodDeleteRange:
		return call(ctx, req, s.DeleteRange)
	case MethodCompareAndSwap:
		return call(ctx, req, s.CompareAndSwap)
	case MethodBatch:
		return call(ctx, req, s.Batch)
	case MethodDescriptors:
		return call(ctx, req, s.Descriptors)
	case MethodRanges:
		return call(ctx, req, s.Ranges)
	case MethodAdminSplit:
		return call(ctx, req, s.AdminSplit)
	case MethodTransferLeader:
		return call(ctx, req, s.TransferLeader)
	case MethodUpdateMeta:
		return call(ctx, req, s.UpdateMeta)
	case MethodChangeReplicas:
		return call(ctx, req, s.ChangeReplicas)
	case MethodCreateReplica:
		return call(ctx, req, s.CreateReplica)
	}
	return nil, bus.Errorf(bus.CodeUnimplemented, "kv: unknown method %q", method)
}

func call[Req proto.Message, Resp proto.Message](ctx context.Context, req proto.Message, f func(context.Context, Req) (Resp, error)) (proto.Message, error) {
	r, ok := req.(Req)
	if !ok {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: wrong request type %T", req)
	}
	return f(ctx, r)
}

// checkKey validates a user key, or with h.system a key under a daemon
// system prefix (kvpb.DaemonPrefixes).
func (s *Store) checkKey(h *kvpb.Header, key []byte) error {
	switch {
	case len(key) == 0:
		return bus.Errorf(bus.CodeInvalidArgument, "kv: empty key")
	case key[0] == 0x00 && !h.GetSystem():
		return bus.Errorf(bus.CodeInvalidArgument, "kv: key %q begins with 0x00 (reserved for system keys)", key)
	case key[0] == 0x00 && kvpb.DaemonPrefix(key) == nil:
		return bus.Errorf(bus.CodeInvalidArgument, "kv: system key %q is outside the daemon system prefixes", key)
	case len(key) > s.cfg.MaxKeyBytes:
		return bus.Errorf(bus.CodeInvalidArgument, "kv: key of %d bytes exceeds %d", len(key), s.cfg.MaxKeyBytes)
	}
	return nil
}

func (s *Store) checkValue(v []byte) error {
	if len(v) > s.cfg.MaxValueBytes {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: value of %d bytes exceeds %d", len(v), s.cfg.MaxValueBytes)
	}
	return nil
}

// wireErr maps internal errors to bus errors.
func (s *Store) wireErr(err error) error {
	var nl *NotLeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nl):
		return bus.NotLeader(s.NodeAddr(nl.LeaderNode))
	case errors.Is(err, ErrStopped):
		return fmt.Errorf("%w (%w)", bus.Errorf(bus.CodeUnavailable, "kv: node stopping"), err)
	}
	return err
}

// target is where a request for one range goes: a local replica that
// serves it, or a node to forward to.
type target struct {
	r    *Replica
	desc *kvpb.RangeDescriptor
	node uint64
}

// route picks who serves a request on the range holding key.
func (s *Store) route(ctx context.Context, key []byte, h *kvpb.Header, write bool) (target, error) {
	desc, err := s.lookup(ctx, key)
	if err != nil {
		return target{}, err
	}
	if err := s.checkHeaderRange(key, h, desc); err != nil {
		return target{}, err
	}
	r := s.Replica(desc.GetRangeId())
	if r != nil && r.applied.Load() == 0 {
		r = nil // created empty, waiting for its snapshot: serves nothing
	}
	if r != nil && (r.IsLeader() || (!write && h.GetReadConsistency() == kvpb.ReadConsistency_READ_CONSISTENCY_STALE)) {
		if err := s.diskFullErr(); write && err != nil {
			return target{}, err // this node leads, and its disk is full
		}
		if r.IsLeader() {
			r.noteRequest(key)
		}
		return target{r: r, desc: desc}, nil
	}
	leader := uint64(0)
	if r != nil {
		leader = r.LeaderNode()
		if et := s.cfg.TickInterval * time.Duration(s.cfg.ElectionTicks); leader == 0 && time.Since(r.created) < 3*et && r.waitLeader(ctx, et) {
			// A range just made by a split (or loaded by a restart)
			// elects within an election timeout: hold the request for
			// that long rather than send the client into its back-off.
			// An older range without a leader lost it: fail fast, the
			// client looks elsewhere.
			return s.route(ctx, key, h, write)
		}
	}
	if h.GetNoForward() || h.GetForwarded() {
		return target{}, bus.NotLeader(s.NodeAddr(leader))
	}
	if leader == 0 || leader == s.d.NodeID {
		if r != nil {
			return target{}, bus.Errorf(bus.CodeUnavailable, "kv: range %d has no leader yet", desc.GetRangeId())
		}
		leader = s.forwardNode(desc)
	}
	if !s.nodeLive(leader) {
		// Its pings stopped: forwarding would wait for a dial timeout.
		// Fail fast; the client retries once a new leader is elected.
		return target{}, bus.Errorf(bus.CodeUnavailable, "kv: range %d: leader node %d is not responding", desc.GetRangeId(), leader)
	}
	return target{desc: desc, node: leader}, nil
}

// forwardNode picks where a request for a range this node knows no
// leader of goes: the first replica on another node that is live (a
// follower answers with the leader it knows, which forward follows), else
// the first on another node; 0 when there is none. Not simply the first:
// once that node is dead, until the range's replicas change (which takes
// this very forwarding when the meta range is not local), every request
// would fail.
func (s *Store) forwardNode(desc *kvpb.RangeDescriptor) uint64 {
	var first uint64
	for _, rd := range desc.GetReplicas() {
		n := rd.GetNodeId()
		if n == s.d.NodeID {
			continue
		}
		if s.nodeLive(n) {
			return n
		}
		if first == 0 {
			first = n
		}
	}
	return first
}

// lookup returns the descriptor of the range holding key.
func (s *Store) lookup(ctx context.Context, key []byte) (*kvpb.RangeDescriptor, error) {
	if r := s.ReplicaForKey(key); r != nil {
		return r.Descriptor(), nil
	}
	if !s.Initialized() {
		return nil, bus.WithReason(bus.CodeUnavailable, kvpb.ReasonNotInitialized, "kv: cluster not initialized")
	}
	descs, err := s.metaDescriptors(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range descs {
		if bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0) {
			return d, nil
		}
	}
	return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: no range holds key %q", key)
}

// metaDescriptors reads every descriptor: from the local meta replica, or
// from a node that has one. Both may be behind (a paused or cut-off
// node's meta replica serves its past): for routing, where a stale
// descriptor is refused (RangeKeyMismatch) and looked up again, and for
// replica GC, which acts only on a newer descriptor. Clients get
// linearizableDescriptors unless they ask for stale reads.
func (s *Store) metaDescriptors(ctx context.Context) ([]*kvpb.RangeDescriptor, error) {
	if s.Replica(MetaRangeID) != nil {
		return s.localMetaDescriptors(ctx)
	}
	var lastErr error = bus.Errorf(bus.CodeUnavailable, "kv: no node with the meta range known")
	for node := range s.Nodes() {
		if node == s.d.NodeID || s.d.Forwarder == nil {
			continue
		}
		resp := &kvpb.DescriptorsResponse{}
		req := &kvpb.DescriptorsRequest{Header: &kvpb.Header{Forwarded: true, ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}}
		if err := s.d.Forwarder.Forward(ctx, node, MethodDescriptors, req, resp); err != nil {
			lastErr = err
			continue
		}
		return resp.GetDescriptors(), nil
	}
	return nil, lastErr
}

// localMetaDescriptors reads every descriptor from the local meta
// replica's state, as applied.
func (s *Store) localMetaDescriptors(ctx context.Context) ([]*kvpb.RangeDescriptor, error) {
	start, end := storage.MetaSpan()
	kvs, err := s.d.Engine.Scan(ctx, storage.Data, start, end, storage.ScanOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*kvpb.RangeDescriptor, 0, len(kvs))
	for _, kv := range kvs {
		_, v, err := storage.DecodeValue(kv.Value)
		if err != nil {
			return nil, err
		}
		d := &kvpb.RangeDescriptor{}
		if err := proto.Unmarshal(v, d); err != nil {
			return nil, fmt.Errorf("kv: decode descriptor: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// linearizableDescriptors reads every descriptor at the meta range's
// leader, after its read barrier (a lease, or ReadIndex): the answer
// holds every split and replica change recorded in meta before the
// call. A node that does not lead meta forwards to the leader it knows,
// then to the other nodes (those without a meta replica refuse with
// Unavailable, those that do not lead it with NotLeader and their hint,
// which forward follows).
func (s *Store) linearizableDescriptors(ctx context.Context, h *kvpb.Header) ([]*kvpb.RangeDescriptor, error) {
	if !s.Initialized() {
		return nil, bus.WithReason(bus.CodeUnavailable, kvpb.ReasonNotInitialized, "kv: cluster not initialized")
	}
	r := s.Replica(MetaRangeID)
	if r != nil && r.IsLeader() && r.applied.Load() > 0 {
		if err := s.wireErr(r.ReadBarrier(ctx)); err != nil {
			return nil, err
		}
		descs, err := s.localMetaDescriptors(ctx)
		if err == nil {
			err = r.goneErr()
		}
		if err != nil {
			return nil, err
		}
		return descs, nil
	}
	var leader uint64
	if r != nil {
		leader = r.LeaderNode()
	}
	if h.GetForwarded() {
		if r == nil {
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: no meta replica on this node")
		}
		return nil, bus.NotLeader(s.NodeAddr(leader))
	}
	var nodes []uint64
	if leader != 0 && leader != s.d.NodeID {
		nodes = append(nodes, leader)
	}
	for node := range s.Nodes() {
		if node != s.d.NodeID && node != leader {
			nodes = append(nodes, node)
		}
	}
	var lastErr error = bus.Errorf(bus.CodeUnavailable, "kv: no node with the meta range known")
	fr := &kvpb.DescriptorsRequest{Header: forwardedHeader(h)}
	for _, node := range nodes {
		if !s.nodeLive(node) {
			continue
		}
		resp := &kvpb.DescriptorsResponse{}
		if err := s.forward(ctx, target{node: node}, MethodDescriptors, fr, resp); err != nil {
			lastErr = err
			continue
		}
		return resp.GetDescriptors(), nil
	}
	return nil, lastErr
}

// maxForwardHops bounds how many NotLeader hints one forwarded request
// follows.
const maxForwardHops = 3

// forward sends a request to t.node. A node that does not lead the range
// refuses a forwarded request with NotLeader before doing anything (its
// hint names the leader it knows), so forward follows the hint: a node
// without a replica of the range picks one of the descriptor's replicas,
// which need not be the leader.
func (s *Store) forward(ctx context.Context, t target, method string, req, resp proto.Message) error {
	for hop := 0; ; hop++ {
		err := s.forwardOnce(ctx, t, method, req, resp)
		if err == nil || hop == maxForwardHops || !errors.Is(err, bus.ErrNotLeader) {
			return err
		}
		next := s.nodeAt(bus.LeaderHint(err))
		if next == 0 || next == t.node || next == s.d.NodeID || !s.nodeLive(next) {
			return err
		}
		t.node = next
	}
}

// nodeAt returns the id of the node whose raftd listens at addr, or 0.
func (s *Store) nodeAt(addr string) uint64 {
	if addr == "" {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, a := range s.mu.nodes {
		if a == addr {
			return id
		}
	}
	return 0
}

func (s *Store) forwardOnce(ctx context.Context, t target, method string, req, resp proto.Message) error {
	if err := ctx.Err(); err != nil {
		return err // nobody waits for the answer
	}
	if s.d.Forwarder == nil {
		return bus.Errorf(bus.CodeUnavailable, "kv: no forwarder")
	}
	// A leader that dies mid-call never answers: give up as soon as its
	// node stops pinging rather than at the caller's deadline.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t0 := time.NewTicker(s.cfg.TickInterval)
		defer t0.Stop()
		for {
			select {
			case <-done:
				return
			case <-t0.C:
				if !s.nodeLive(t.node) {
					// The request may have run: its outcome is unknown.
					cancel(bus.Errorf(bus.CodeDeadlineExceeded, "kv: node %d stopped responding", t.node))
					return
				}
			}
		}
	}()
	err := s.d.Forwarder.Forward(ctx, t.node, method, req, resp)
	if err != nil && context.Cause(ctx) != nil && ctx.Err() != nil {
		if c := context.Cause(ctx); c != context.Canceled && c != context.DeadlineExceeded {
			return c
		}
	}
	return err
}

// forwardedHeader is a copy of h for a forwarded request.
func forwardedHeader(h *kvpb.Header) *kvpb.Header {
	out := &kvpb.Header{}
	if h != nil {
		out = proto.Clone(h).(*kvpb.Header)
	}
	out.Forwarded = true
	return out
}

// readBarrier makes a local read of r linearizable unless stale is asked.
func (s *Store) readBarrier(ctx context.Context, r *Replica, h *kvpb.Header) error {
	if h.GetReadConsistency() == kvpb.ReadConsistency_READ_CONSISTENCY_STALE {
		return nil
	}
	return s.wireErr(r.ReadBarrier(ctx))
}

// readValue reads key's value from the value cache or the engine.
func (s *Store) readValue(ctx context.Context, key []byte) (*kvpb.Value, bool, error) {
	b, ok, err := s.cachedGet(ctx, key)
	if err != nil || !ok {
		return nil, false, err
	}
	m, v, deleted, err := storage.DecodeRecord(b)
	if err == nil && deleted {
		err = fmt.Errorf("%w: a tombstone in the data family", storage.ErrBadEnvelope)
	}
	if err != nil {
		return nil, false, fmt.Errorf("key %q: %w", key, err)
	}
	return valueOf(m, v), true, nil
}

// cachedGet returns key's engine value, through the value cache.
func (s *Store) cachedGet(ctx context.Context, key []byte) ([]byte, bool, error) {
	return s.cachedGetCounted(ctx, key, nil)
}

// cachedGetCounted is cachedGet, adding one to reads (if not nil) when
// it reads the engine.
func (s *Store) cachedGetCounted(ctx context.Context, key []byte, reads *atomic.Uint64) ([]byte, bool, error) {
	if b, found, hit := s.vcache.get(key); hit {
		return b, found, nil
	}
	if reads != nil {
		reads.Add(1)
	}
	var epoch uint64
	if s.vcache != nil {
		epoch = s.vcache.epoch.Load()
	}
	b, ok, err := s.d.Engine.Get(ctx, storage.Data, key)
	if err != nil {
		return nil, false, err
	}
	s.vcache.fill(epoch, key, b, ok)
	return b, ok, nil
}

// MaxStaleness bounds Header.max_staleness_nanos.
const MaxStaleness = 24 * time.Hour

// staleness returns a read's max staleness (0: none), or InvalidArgument.
func staleness(h *kvpb.Header) (time.Duration, error) {
	n := time.Duration(h.GetMaxStalenessNanos())
	switch {
	case n == 0:
		return 0, nil
	case n < 0:
		return 0, bus.Errorf(bus.CodeInvalidArgument, "kv: max staleness %v is negative", n)
	case n > MaxStaleness:
		return 0, bus.Errorf(bus.CodeInvalidArgument, "kv: max staleness %v exceeds %v", n, MaxStaleness)
	case h.GetReadConsistency() == kvpb.ReadConsistency_READ_CONSISTENCY_STALE:
		return 0, bus.Errorf(bus.CodeInvalidArgument, "kv: max staleness and stale consistency are exclusive")
	}
	return n, nil
}

// closedRead picks the local replica and timestamp that serve a
// bounded-staleness read of key (span: of [key, end), end empty: to the
// end of the keyspace):
// at read_at (at, nil if unset) when the replica's closed timestamp
// covers it, else at the closed timestamp when it is within bound of the
// clock. ok is false when no local replica may serve it.
func (s *Store) closedRead(key, end []byte, span bool, at *hlcpb.Timestamp, bound time.Duration) (r *Replica, ts hlc.Timestamp, ok bool, err error) {
	r = s.ReplicaForKey(key)
	if r == nil || r.applied.Load() == 0 {
		return nil, hlc.Timestamp{}, false, nil
	}
	r.wantClosed()
	closed := r.ClosedTimestamp()
	if at != nil {
		if ts, err = hlc.FromProto(at); err != nil {
			return nil, hlc.Timestamp{}, false, bus.Errorf(bus.CodeInvalidArgument, "kv: read_at: %v", err)
		}
		if closed.Less(ts) {
			return nil, hlc.Timestamp{}, false, nil
		}
	} else {
		if closed.IsZero() || closed.WallTime < s.d.Clock.Now().WallTime-int64(bound) {
			return nil, hlc.Timestamp{}, false, nil
		}
		ts = closed
	}
	// The closed timestamp is the range's as of its applied state: the
	// key must still be the range's there (a split hands later writes of
	// its keys to the new range, which closes its own timestamps).
	d := r.applyDesc()
	if !spanContains(d, key) || (span && len(d.GetEndKey()) > 0 && (len(end) == 0 || bytes.Compare(end, d.GetEndKey()) > 0)) {
		return nil, hlc.Timestamp{}, false, nil
	}
	if hz := s.readHorizon(); ts.Less(hz) {
		return nil, hlc.Timestamp{}, false, errCompacted(ts, hz)
	}
	s.metrics.closedReads.Add(1)
	return r, ts, true, nil
}

// Get reads one key.
func (s *Store) Get(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	if err := s.checkKey(req.GetHeader(), req.GetKey()); err != nil {
		return nil, err
	}
	bound, err := staleness(req.GetHeader())
	if err != nil {
		return nil, err
	}
	if bound > 0 {
		if r, ts, ok, err := s.closedRead(req.GetKey(), nil, false, req.GetReadAt(), bound); err != nil || ok {
			if err != nil {
				return nil, err
			}
			s.hook(r.rangeID, "read")
			v, found, err := s.readAt(ctx, req.GetKey(), ts)
			if err == nil {
				err = r.goneErr()
			}
			if err != nil {
				return nil, err
			}
			return &kvpb.GetResponse{Found: found, Value: v, ReadAt: ts.Proto()}, nil
		}
		// Not here: the leader serves it (at its closed timestamp, or
		// linearizably).
	}
	for attempt := 0; ; attempt++ {
		t, err := s.route(ctx, req.GetKey(), req.GetHeader(), false)
		if err != nil {
			return nil, err
		}
		if t.r == nil {
			resp := &kvpb.GetResponse{}
			fr := proto.Clone(req).(*kvpb.GetRequest)
			fr.Header = forwardedHeader(req.GetHeader())
			return resp, s.forward(ctx, t, MethodGet, fr, resp)
		}
		if err := s.readBarrier(ctx, t.r, req.GetHeader()); err != nil {
			return nil, err
		}
		// The barrier may have applied a split that moved the key: the
		// range that holds it now serves it (its writes are not behind
		// this range's barrier).
		if err := t.r.stillHolds(ctx, req.GetKey(), t.desc); err != nil {
			if attempt < maxMismatchRetries {
				continue
			}
			return nil, err
		}
		s.hook(t.r.rangeID, "read")
		resp, err := s.getLocal(ctx, req)
		if err == nil {
			err = t.r.goneErr()
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

func (s *Store) getLocal(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	var v *kvpb.Value
	var ok bool
	var err error
	if at := req.GetReadAt(); at != nil {
		ts, terr := hlc.FromProto(at)
		if terr != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: read_at: %v", terr)
		}
		v, ok, err = s.readAt(ctx, req.GetKey(), ts)
	} else {
		v, ok, err = s.readValue(ctx, req.GetKey())
	}
	if err != nil {
		return nil, err
	}
	return &kvpb.GetResponse{Found: ok, Value: v}, nil
}

// writeHeader returns the header of a write: h, with a session of this
// raftd (Store.proxy) when h has none, so that its re-proposals and
// forwards apply once; end releases that session's seq once the write is
// answered.
func (s *Store) writeHeader(h *kvpb.Header) (out *kvpb.Header, end func(), err error) {
	if sess := h.GetSession(); sess != nil {
		return h, func() {}, checkSession(sess)
	}
	out = &kvpb.Header{}
	if h != nil {
		out = proto.Clone(h).(*kvpb.Header)
	}
	ps := s.proxySession()
	seq := ps.seqs.Begin()
	out.Session = &kvpb.Session{Id: ps.id[:], Seq: seq, FirstUnacked: ps.seqs.FirstUnacked(), IssuedNanos: s.d.Clock.Now().WallTime}
	return out, func() { ps.seqs.End(seq) }, nil
}

// proxyWindow is how far a proxy session's seqs may run past its first
// write in flight before a new one starts (see kvclient's sessionWindow).
const proxyWindow = 4096

// proxySession is a client session of this raftd (Store.proxy).
type proxySession struct {
	// id is the node id, the low 32 bits of the incarnation and a count
	// of this run's proxy sessions.
	id   sessionID
	seqs kvpb.Seqs
}

// proxySession returns the current proxy session.
func (s *Store) proxySession() *proxySession {
	s.proxy.Lock()
	defer s.proxy.Unlock()
	if s.proxy.cur == nil || s.proxy.cur.seqs.Span() >= proxyWindow {
		s.proxy.n++
		ps := &proxySession{}
		binary.BigEndian.PutUint64(ps.id[:8], s.d.NodeID)
		binary.BigEndian.PutUint32(ps.id[8:12], uint32(s.incarnation))
		binary.BigEndian.PutUint32(ps.id[12:], s.proxy.n)
		s.proxy.cur = ps
	}
	return s.proxy.cur
}

// proposeOn runs ops on the range holding key, forwarding when needed.
// fwd builds the request to forward (only when forwarding: the leader's
// path copies nothing).
func (s *Store) proposeOn(ctx context.Context, key []byte, h *kvpb.Header, ops []*raftmsgpb.Op, method string, fwd func() proto.Message, resp proto.Message) (*Result, error) {
	if err := ctx.Err(); err != nil {
		// Nobody waits for the answer: do nothing.
		return nil, err
	}
	size := 0
	for _, op := range ops {
		size += proto.Size(op)
	}
	if size > s.cfg.MaxCommandBytes {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: command of %d bytes exceeds %d", size, s.cfg.MaxCommandBytes)
	}
	for attempt := 0; ; attempt++ {
		t, err := s.route(ctx, key, h, true)
		if err != nil {
			return nil, err
		}
		if t.r == nil {
			return nil, s.forward(ctx, t, method, fwd(), resp)
		}
		res, err := t.r.Propose(ctx, ops, h.GetSession())
		if errors.Is(err, ErrStopped) {
			// The command may be in the other replicas' logs, and commit
			// there: its outcome is unknown (Unavailable, which wireErr
			// makes of ErrStopped, says nothing was done). The caller's
			// retry applies once through its session.
			return nil, fmt.Errorf("%w (%w)", bus.Errorf(bus.CodeDeadlineExceeded, "kv: range %d: node %d stopped with the write in flight; its outcome is unknown", t.r.rangeID, s.d.NodeID), err)
		}
		if !isMismatch(err) || attempt == maxMismatchRetries {
			return res, s.wireErr(err)
		}
		// A split moved the keys after routing: nothing was done, and
		// the command's session lets it be sent again. Route again once
		// this node publishes the split.
		if err := t.r.waitDescPast(ctx, t.desc.GetGeneration()); err != nil {
			return nil, err
		}
	}
}

// Put writes one key.
func (s *Store) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	if err := s.checkKey(req.GetHeader(), req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.checkValue(req.GetValue()); err != nil {
		return nil, err
	}
	h, end, err := s.writeHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	defer end()
	resp := &kvpb.PutResponse{}
	fwd := func() proto.Message {
		return &kvpb.PutRequest{Header: forwardedHeader(h), Key: req.GetKey(), Value: req.GetValue()}
	}
	res, err := s.proposeOn(ctx, req.GetKey(), h, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Put{Put: &kvpb.PutRequest{Key: req.GetKey(), Value: req.GetValue()}}}}, MethodPut, fwd, resp)
	if err != nil || res == nil {
		return resp, err
	}
	resp.Timestamp = res.Timestamp.Proto()
	return resp, nil
}

// Delete removes one key.
func (s *Store) Delete(ctx context.Context, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	if err := s.checkKey(req.GetHeader(), req.GetKey()); err != nil {
		return nil, err
	}
	h, end, err := s.writeHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	defer end()
	resp := &kvpb.DeleteResponse{}
	fwd := func() proto.Message { return &kvpb.DeleteRequest{Header: forwardedHeader(h), Key: req.GetKey()} }
	res, err := s.proposeOn(ctx, req.GetKey(), h, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Delete{Delete: &kvpb.DeleteRequest{Key: req.GetKey()}}}}, MethodDelete, fwd, resp)
	if err != nil || res == nil {
		return resp, err
	}
	resp.Deleted = res.Deleted[0]
	return resp, nil
}

func (s *Store) checkCAS(h *kvpb.Header, c *kvpb.CompareAndSwapRequest) error {
	if err := s.checkKey(h, c.GetKey()); err != nil {
		return err
	}
	if err := s.checkValue(c.GetNewValue()); err != nil {
		return err
	}
	return s.checkValue(c.GetExpectedValue())
}

func casOp(c *kvpb.CompareAndSwapRequest) *raftmsgpb.Op {
	return &raftmsgpb.Op{Op: &raftmsgpb.Op_Cas{Cas: &kvpb.CompareAndSwapRequest{Key: c.GetKey(), ExpectAbsent: c.GetExpectAbsent(),
		ExpectedValue: c.GetExpectedValue(), Delete: c.GetDelete(), NewValue: c.GetNewValue()}}}
}

// CompareAndSwap writes or deletes a key if its current value matches.
func (s *Store) CompareAndSwap(ctx context.Context, req *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	if err := s.checkCAS(req.GetHeader(), req); err != nil {
		return nil, err
	}
	h, end, err := s.writeHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	defer end()
	resp := &kvpb.CompareAndSwapResponse{}
	fwd := func() proto.Message {
		fr := casOp(req).GetCas()
		fr.Header = forwardedHeader(h)
		return fr
	}
	res, err := s.proposeOn(ctx, req.GetKey(), h, []*raftmsgpb.Op{casOp(req)}, MethodCompareAndSwap, fwd, resp)
	if err != nil || res == nil {
		return resp, err
	}
	resp.Succeeded, resp.Current, resp.Timestamp = res.Succeeded, res.Current, res.Timestamp.Proto()
	return resp, nil
}

// Batch applies ops atomically within one range.
func (s *Store) Batch(ctx context.Context, req *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	if len(req.GetOps()) == 0 {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: empty batch")
	}
	var ops []*raftmsgpb.Op
	var keys [][]byte
	for i, op := range req.GetOps() {
		switch {
		case op.GetPut() != nil:
			p := op.GetPut()
			if err := s.checkKey(req.GetHeader(), p.GetKey()); err != nil {
				return nil, err
			}
			if err := s.checkValue(p.GetValue()); err != nil {
				return nil, err
			}
			ops = append(ops, &raftmsgpb.Op{Op: &raftmsgpb.Op_Put{Put: &kvpb.PutRequest{Key: p.GetKey(), Value: p.GetValue()}}})
			keys = append(keys, p.GetKey())
		case op.GetDelete() != nil:
			if err := s.checkKey(req.GetHeader(), op.GetDelete().GetKey()); err != nil {
				return nil, err
			}
			ops = append(ops, &raftmsgpb.Op{Op: &raftmsgpb.Op_Delete{Delete: &kvpb.DeleteRequest{Key: op.GetDelete().GetKey()}}})
			keys = append(keys, op.GetDelete().GetKey())
		case op.GetCas() != nil:
			if err := s.checkCAS(req.GetHeader(), op.GetCas()); err != nil {
				return nil, err
			}
			ops = append(ops, casOp(op.GetCas()))
			keys = append(keys, op.GetCas().GetKey())
		default:
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: batch op %d is empty", i)
		}
	}
	desc, err := s.lookup(ctx, keys[0])
	if err != nil {
		return nil, err
	}
	for _, k := range keys[1:] {
		if bytes.Compare(k, desc.GetStartKey()) < 0 || (len(desc.GetEndKey()) > 0 && bytes.Compare(k, desc.GetEndKey()) >= 0) {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: batch spans ranges: key %q is outside range %d [%q, %q)", k, desc.GetRangeId(), desc.GetStartKey(), desc.GetEndKey())
		}
	}
	h, end, err := s.writeHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	defer end()
	resp := &kvpb.BatchResponse{}
	fwd := func() proto.Message { return &kvpb.BatchRequest{Header: forwardedHeader(h), Ops: req.GetOps()} }
	res, err := s.proposeOn(ctx, keys[0], h, ops, MethodBatch, fwd, resp)
	if err != nil || res == nil {
		return resp, err
	}
	resp.Succeeded, resp.FailedOp, resp.Timestamp = res.Succeeded, uint32(res.FailedOp), res.Timestamp.Proto()
	return resp, nil
}

// spanStart returns where a Scan or DeleteRange of [start, end) begins:
// at the first user key at the earliest, unless h.system asks for a span
// inside one daemon system prefix.
func spanStart(h *kvpb.Header, start, end []byte) ([]byte, error) {
	if h.GetSystem() && len(start) > 0 && start[0] == 0x00 {
		p := kvpb.DaemonPrefix(start)
		if p == nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: span start %q is outside the daemon system prefixes", start)
		}
		if pe := kvpb.PrefixEnd(p); len(end) == 0 || bytes.Compare(end, pe) > 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: system span [%q, %q) leaves its prefix %q", start, end, p)
		}
		return start, nil
	}
	if bytes.Compare(start, userStart) < 0 {
		return userStart, nil
	}
	return start, nil
}

func (s *Store) checkSpan(start, end []byte) error {
	if len(start) > 0 && start[0] == 0x00 && kvpb.DaemonPrefix(start) == nil {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: span start %q is a system key", start)
	}
	if len(end) > 0 && bytes.Compare(end, start) <= 0 {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: span end %q is not after start %q", end, start)
	}
	return nil
}

// userStart is the first user key.
var userStart = []byte{0x01}

// DeleteRange deletes [start, end) range by range (atomic per range only).
func (s *Store) DeleteRange(ctx context.Context, req *kvpb.DeleteRangeRequest) (*kvpb.DeleteRangeResponse, error) {
	start, end := req.GetStart(), req.GetEnd()
	start, err := spanStart(req.GetHeader(), start, end)
	if err != nil {
		return nil, err
	}
	if err := s.checkSpan(start, end); err != nil {
		return nil, err
	}
	// One session seq for every range: each range applies its part once.
	h, release, err := s.writeHeader(req.GetHeader())
	if err != nil {
		return nil, err
	}
	defer release()
	total := &kvpb.DeleteRangeResponse{}
	for cur, mismatches := start, 0; ; {
		desc, err := s.lookup(ctx, cur)
		if err != nil {
			return total, err
		}
		cs, ce := clipSpan(cur, end, desc)
		fwd := func() proto.Message { return &kvpb.DeleteRangeRequest{Header: forwardedHeader(h), Start: cs, End: ce} }
		resp := &kvpb.DeleteRangeResponse{}
		res, err := s.proposeOn(ctx, cur, h, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Start: cs, End: ce}}}}, MethodDeleteRange, fwd, resp)
		if isMismatch(err) && mismatches < maxMismatchRetries {
			// The range split after the lookup: nothing of this part was
			// done; look its range up again.
			mismatches++
			continue
		}
		if err != nil {
			return total, err
		}
		mismatches = 0
		if res != nil {
			total.Deleted += res.Count
		} else {
			total.Deleted += resp.GetDeleted()
		}
		if len(desc.GetEndKey()) == 0 || (len(end) > 0 && bytes.Compare(desc.GetEndKey(), end) >= 0) {
			return total, nil
		}
		cur = desc.GetEndKey()
	}
}

// Scan reads one page of [start, end), across ranges.
func (s *Store) Scan(ctx context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	start, end := req.GetStart(), req.GetEnd()
	start, err := spanStart(req.GetHeader(), start, end)
	if err != nil {
		return nil, err
	}
	if err := s.checkSpan(start, end); err != nil {
		return nil, err
	}
	if at := req.GetReadAt(); at != nil {
		ts, err := hlc.FromProto(at)
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: read_at: %v", err)
		}
		if h := s.readHorizon(); ts.Less(h) {
			return nil, errCompacted(ts, h)
		}
	}
	if _, err := staleness(req.GetHeader()); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = DefaultScanLimit
	}
	budget := MaxScanBytes
	if b := int(req.GetMaxBytes()); b > 0 && b < budget {
		budget = b
	}
	size := 0 // keys and values read, as the engine counts them
	out := &kvpb.ScanResponse{}
	// key is the range-locating key: start going forward; going
	// backwards, the last range is the one holding the key before end.
	var cur []byte
	if req.GetReverse() {
		cur = end
	} else {
		cur = start
	}
	for mismatches := 0; ; {
		var desc *kvpb.RangeDescriptor
		var err error
		if req.GetReverse() {
			desc, err = s.lookupBefore(ctx, cur)
		} else {
			desc, err = s.lookup(ctx, cur)
		}
		if err != nil {
			return nil, err
		}
		cs, ce := clipSpan(start, end, desc)
		if !req.GetReverse() {
			cs, ce = clipSpan(cur, end, desc)
		} else if len(cur) > 0 {
			cs, ce = clipSpan(start, cur, desc)
		}
		kvs, read, full, used, servedAt, err := s.scanRange(ctx, req, desc, cs, ce, limit-len(out.Kvs), max(budget-size, 1))
		if isMismatch(err) && mismatches < maxMismatchRetries {
			// A split moved this part: look its range up again.
			mismatches++
			continue
		}
		if err != nil {
			return nil, err
		}
		mismatches = 0
		desc = used
		if servedAt != nil && req.GetReadAt() == nil {
			// A bounded-staleness page: its other ranges read at the
			// timestamp the first one was served at.
			out.ReadAt = servedAt
			req = proto.CloneOf(req)
			req.ReadAt = servedAt
		} else if servedAt != nil {
			out.ReadAt = servedAt
		}
		out.Kvs = append(out.Kvs, kvs...)
		size += read
		if full && len(out.Kvs) > 0 {
			last := out.Kvs[len(out.Kvs)-1].GetKey()
			if req.GetReverse() {
				out.ResumeKey = bytes.Clone(last)
			} else {
				out.ResumeKey = append(bytes.Clone(last), 0)
			}
			return out, nil
		}
		if req.GetReverse() {
			if bytes.Compare(desc.GetStartKey(), start) <= 0 {
				return out, nil
			}
			cur = desc.GetStartKey()
		} else {
			if len(desc.GetEndKey()) == 0 || (len(end) > 0 && bytes.Compare(desc.GetEndKey(), end) >= 0) {
				return out, nil
			}
			cur = desc.GetEndKey()
		}
	}
}

// lookupBefore returns the range holding the last key before end (empty:
// the last range).
func (s *Store) lookupBefore(ctx context.Context, end []byte) (*kvpb.RangeDescriptor, error) {
	if len(end) == 0 {
		descs, err := s.allDescriptors(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range descs {
			if len(d.GetEndKey()) == 0 {
				return d, nil
			}
		}
		return nil, bus.Errorf(bus.CodeInternal, "kv: no last range")
	}
	descs, err := s.allDescriptors(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range descs {
		if bytes.Compare(d.GetStartKey(), end) < 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(end, d.GetEndKey()) <= 0) {
			return d, nil
		}
	}
	return nil, bus.Errorf(bus.CodeInvalidArgument, "kv: no range before %q", end)
}

func (s *Store) allDescriptors(ctx context.Context) ([]*kvpb.RangeDescriptor, error) {
	if !s.Initialized() {
		return nil, bus.WithReason(bus.CodeUnavailable, kvpb.ReasonNotInitialized, "kv: cluster not initialized")
	}
	return s.metaDescriptors(ctx)
}

// scanRange reads up to limit entries of [start, end) from one range,
// ending with the one that brings the keys and values read to maxBytes
// (values count even for keys only). read is their size; full reports
// that the page ended there, at the limit or the bytes, so the range may
// hold more.
//
// A local range serves the part of [start, end) it holds once its read
// barrier passed: a split applied meanwhile narrows it (used is the
// descriptor that served, whose bounds the caller continues from), or
// refuses with RangeKeyMismatch when it no longer holds the part's first
// key.
//
// A bounded-staleness scan (Header.max_staleness_nanos) is served by the
// local replica at its closed timestamp when it may (closedRead; the
// whole part must be the range's), else by the leader; servedAt is the
// timestamp such a read was served at.
func (s *Store) scanRange(ctx context.Context, req *kvpb.ScanRequest, desc *kvpb.RangeDescriptor, start, end []byte, limit, maxBytes int) (_ []*kvpb.KeyValue, read int, full bool, used *kvpb.RangeDescriptor, servedAt *hlcpb.Timestamp, _ error) {
	key := start
	if req.GetReverse() {
		key = desc.GetStartKey()
		if bytes.Compare(key, start) < 0 {
			key = start
		}
	}
	if bound, _ := staleness(req.GetHeader()); bound > 0 {
		r, ts, ok, err := s.closedRead(key, end, true, req.GetReadAt(), bound)
		if err != nil {
			return nil, 0, false, nil, nil, err
		}
		if ok {
			used = r.applyDesc()
			start, end = clipSpan(start, end, used)
			s.hook(r.rangeID, "read")
			kvs, read, full, err := s.scanAt(ctx, start, end, ts, req.GetReverse(), req.GetKeysOnly(), limit, maxBytes)
			if err == nil {
				err = r.goneErr()
			}
			return kvs, read, full, used, ts.Proto(), err
		}
	}
	t, err := s.route(ctx, key, req.GetHeader(), false)
	if err != nil {
		return nil, 0, false, nil, nil, err
	}
	if t.r == nil {
		sub := &kvpb.ScanRequest{Header: forwardedHeader(req.GetHeader()), Start: start, End: end, Limit: uint32(limit), Reverse: req.GetReverse(),
			KeysOnly: req.GetKeysOnly(), MaxBytes: uint32(maxBytes), ReadAt: req.GetReadAt()}
		resp := &kvpb.ScanResponse{}
		if err := s.forward(ctx, t, MethodScan, sub, resp); err != nil {
			return nil, 0, false, nil, nil, err
		}
		for _, kv := range resp.GetKvs() {
			read += len(kv.GetKey()) + len(kv.GetValue().GetValue())
		}
		return resp.GetKvs(), read, resp.GetResumeKey() != nil, desc, resp.GetReadAt(), nil
	}
	if err := s.readBarrier(ctx, t.r, req.GetHeader()); err != nil {
		return nil, 0, false, nil, nil, err
	}
	if err := t.r.stillHolds(ctx, key, t.desc); err != nil {
		return nil, 0, false, nil, nil, err
	}
	used = t.r.applyDesc()
	if req.GetReverse() && len(used.GetEndKey()) > 0 && (len(end) == 0 || bytes.Compare(end, used.GetEndKey()) > 0) {
		// Going backwards the part's end comes first, and a split moved it.
		return nil, 0, false, nil, nil, errRangeKeyMismatch([]*kvpb.RangeDescriptor{used}, nil, "kv: range %d no longer holds the keys before %q", used.GetRangeId(), end)
	}
	start, end = clipSpan(start, end, used)
	s.hook(t.r.rangeID, "read")
	if at := req.GetReadAt(); at != nil {
		ts, err := hlc.FromProto(at) // checked by Scan
		if err != nil {
			return nil, 0, false, nil, nil, err
		}
		kvs, read, full, err := s.scanAt(ctx, start, end, ts, req.GetReverse(), req.GetKeysOnly(), limit, maxBytes)
		if err == nil {
			err = t.r.goneErr()
		}
		return kvs, read, full, used, nil, err
	}
	kvs, err := s.d.Engine.Scan(ctx, storage.Data, start, end, storage.ScanOptions{Limit: limit, MaxBytes: maxBytes, Reverse: req.GetReverse()})
	if err == nil {
		err = t.r.goneErr()
	}
	if err != nil {
		return nil, 0, false, nil, nil, err
	}
	out := make([]*kvpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		read += len(kv.Key) + len(kv.Value)
		m, v, deleted, err := storage.DecodeRecord(kv.Value)
		if err == nil && deleted {
			err = fmt.Errorf("%w: a tombstone in the data family", storage.ErrBadEnvelope)
		}
		if err != nil {
			return nil, 0, false, nil, nil, fmt.Errorf("key %q: %w", kv.Key, err)
		}
		val := valueOf(m, nil)
		if !req.GetKeysOnly() {
			val.Value = v
		}
		out = append(out, &kvpb.KeyValue{Key: kv.Key, Value: val})
	}
	return out, read, len(kvs) >= limit || read >= maxBytes, used, nil, nil
}

// Descriptors returns the descriptors overlapping [start, end) and the
// leaders this node knows. They are linearizable (read at the meta
// range's leader after its read barrier) unless the header asks for a
// stale read: then this node's meta replica answers as it is (or, without
// one, any node's), faster and without the meta leader, but possibly
// without the latest splits and replica changes.
func (s *Store) Descriptors(ctx context.Context, req *kvpb.DescriptorsRequest) (*kvpb.DescriptorsResponse, error) {
	h := req.GetHeader()
	var (
		descs []*kvpb.RangeDescriptor
		err   error
	)
	if h.GetReadConsistency() == kvpb.ReadConsistency_READ_CONSISTENCY_STALE {
		if h.GetForwarded() && s.Replica(MetaRangeID) == nil {
			return nil, bus.Errorf(bus.CodeUnavailable, "kv: no meta replica on this node")
		}
		descs, err = s.allDescriptors(ctx)
	} else {
		descs, err = s.linearizableDescriptors(ctx, h)
	}
	if err != nil {
		return nil, err
	}
	out := &kvpb.DescriptorsResponse{Leaders: map[uint64]string{}, Now: s.d.Clock.Now().Proto()}
	for _, d := range descs {
		if len(req.GetEnd()) > 0 && bytes.Compare(d.GetStartKey(), req.GetEnd()) >= 0 {
			continue
		}
		if len(d.GetEndKey()) > 0 && bytes.Compare(d.GetEndKey(), req.GetStart()) <= 0 {
			continue
		}
		out.Descriptors = append(out.Descriptors, d)
		if r := s.Replica(d.GetRangeId()); r != nil {
			if a := s.NodeAddr(r.LeaderNode()); a != "" {
				out.Leaders[d.GetRangeId()] = a
			}
		}
	}
	return out, nil
}

// Ranges lists the local replicas.
func (s *Store) Ranges(ctx context.Context, _ *kvpb.RangesRequest) (*kvpb.RangesResponse, error) {
	out := &kvpb.RangesResponse{NodeId: s.d.NodeID}
	for _, r := range s.Replicas() {
		st := r.Status()
		if r.IsLeader() {
			// The leader's estimate of the range's size; left 0 when
			// the engine cannot tell (the rest of the answer holds).
			start, end := clipSpan(nil, nil, st.GetDescriptor_())
			if n, err := s.d.Engine.ApproximateSize(ctx, storage.Data, start, end); err == nil {
				st.ApproximateBytes = n
			} else {
				s.log.Debug("approximate size of a range", slog.Uint64("range", r.rangeID), slog.Any("error", err))
			}
			st.RequestsPerSec = r.RequestsPerSec()
		}
		out.Replicas = append(out.Replicas, st)
	}
	return out, nil
}

// waitDescPast waits, briefly, until this replica publishes a descriptor
// newer than generation gen (a split this node applied is published once
// its round's write is durable, just after its proposals are answered).
func (r *Replica) waitDescPast(ctx context.Context, gen uint64) error {
	for i := 0; r.desc.Load().GetGeneration() <= gen && i < 100; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.s.stopc:
			return ErrStopped
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// stillHolds checks, after a read barrier, that the replica still holds
// key; when a split applied meanwhile moved it, it waits for the split to
// be published and returns RangeKeyMismatch.
func (r *Replica) stillHolds(ctx context.Context, key []byte, routed *kvpb.RangeDescriptor) error {
	r.mu.Lock()
	d := r.mu.desc
	r.mu.Unlock()
	if spanContains(d, key) {
		return nil
	}
	if err := r.waitDescPast(ctx, routed.GetGeneration()); err != nil {
		return err
	}
	return errRangeKeyMismatch([]*kvpb.RangeDescriptor{d}, nil, "kv: range %d no longer holds key %q", r.rangeID, key)
}

// goneErr is Unavailable when the replica was destroyed (removed from
// this node): a local read checks it after reading the engine, as the
// destroy may have deleted the replica's data under the read. Destroy
// marks the replica before it deletes anything, so a read that finds it
// still there afterwards read the replica's data.
func (r *Replica) goneErr() error {
	if r.destroyed.Load() {
		return bus.Errorf(bus.CodeUnavailable, "kv: range %d: the replica was removed from node %d during the read; retry", r.rangeID, r.s.d.NodeID)
	}
	return nil
}

// applyDesc returns the descriptor as of the last applied entry.
func (r *Replica) applyDesc() *kvpb.RangeDescriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.desc
}

// waitLeader waits up to max (and ctx) for the replica to know a leader;
// it reports whether one is known.
func (r *Replica) waitLeader(ctx context.Context, max time.Duration) bool {
	known := func() bool { return r.LeaderNode() != 0 || r.IsLeader() }
	if known() {
		return true
	}
	timer := time.NewTimer(max)
	defer timer.Stop()
	for {
		r.leaderSeenMu.Lock()
		if r.leaderSeen == nil {
			r.leaderSeen = make(chan struct{})
		}
		seen := r.leaderSeen
		r.leaderSeenMu.Unlock()
		// A leader learnt before the channel was registered closed none.
		if known() {
			return true
		}
		select {
		case <-seen:
			if known() {
				return true
			}
		case <-timer.C:
			return known()
		case <-ctx.Done():
			return false
		}
	}
}
