// Package kvclienttest runs an in-memory stand-in for a raftd cluster on
// real bus endpoints, for tests of package kvclient and its callers (the
// pleiades kv, ranges, init and bench commands).
//
// A Cluster has Nodes bus endpoints serving raftd's KV protocol
// (wire.ProtoKV) over one shared in-memory map. Its ranges each have a
// leader node; a point request (Get, Put, Delete, CompareAndSwap, Batch)
// reaching another node with Header.no_forward set gets NotLeader with the
// leader's address as hint, and without it is served as if forwarded.
// Stale reads, Scan and DeleteRange are served by any node. Tests can move
// leaders (SetLeader), inject errors per node and method (Inject), make a
// node stop answering (Stall), lose the answers of writes it served
// (LoseAnswers) and count calls (Calls). A write with a session
// (Header.session) is served once: another attempt with the same session
// id and seq gets the first answer again, as from raftd (answers are kept
// until the cluster stops).
//
// It models routing and the protocol's answers, not replication: there is
// one copy of the data, and nothing is durable.
package kvclienttest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// errNotInitialized answers KV requests before Init.
var errNotInitialized = bus.WithReason(bus.CodeUnavailable, kvpb.ReasonNotInitialized, "kv: cluster not initialized")

// userStart is the first user key of the fake keyspace; keys below it
// (beginning with 0x00) belong to the meta range.
var userStart = []byte{0x01}

// VersionRetention is the fake's version retention window (raftd's
// default): a read at a timestamp older than this fails "compacted".
const VersionRetention = 4 * time.Hour

// Options configure a Cluster.
type Options struct {
	// Nodes is the number of raftd endpoints. Default 3.
	Nodes int
	// SplitPoints are the user range boundaries of an initialized
	// cluster.
	SplitPoints [][]byte
	// Uninitialized starts the cluster without ranges: KV requests fail
	// with Unavailable until Init, as raftd's do.
	Uninitialized bool
	// PageSize is the default Scan page. Default 100.
	PageSize int
	// NoDescriptors answers Descriptors with Unimplemented.
	NoDescriptors bool
	// NoHints sends NotLeader without a leader address.
	NoHints bool
	// CA issues the endpoints' TLS configurations. Default
	// daemontest.CA.
	CA daemontest.Issuer
}

// Cluster is the fake raftd cluster.
type Cluster struct {
	opts  Options
	clock *hlc.Clock
	addrs []string
	// done is closed at test cleanup, before the endpoints stop; it
	// releases stalled calls.
	done chan struct{}
	mu   struct {
		sync.Mutex
		initialized bool
		data        map[string]*kvpb.Value
		ranges      []*kvpb.RangeDescriptor // user ranges, ordered
		leaders     map[uint64]int          // range id to node index
		inject      map[callKey][]error
		lose        map[callKey]int
		answers     map[answerKey]proto.Message
		stalled     map[int]bool
		delays      map[string]time.Duration
		calls       map[callKey]int
		forwarded   int
		mismatches  int
		writes      uint64
		// served counts the point requests each range's leader served
		// (range id to count); Ranges reports it as the leader's
		// requests_per_sec, as if they all came in the last second.
		served map[uint64]uint64

		// history holds every version of each key, oldest first (a
		// tombstone is a Value without value or version), for reads at a
		// timestamp.
		history map[string][]*kvpb.Value
	}
}

type callKey struct {
	node   int
	method string
}

// answerKey names one write of a session.
type answerKey struct {
	session string
	seq     uint64
}

// Start starts a cluster whose endpoints stop at test cleanup.
func Start(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.PageSize == 0 {
		o.PageSize = 100
	}
	if o.CA == nil {
		o.CA = daemontest.CA(tb)
	}
	c := &Cluster{opts: o, clock: hlc.NewClock(hlc.Config{MaxOffset: 500 * time.Millisecond}), done: make(chan struct{})}
	c.mu.stalled = make(map[int]bool)
	c.mu.data = make(map[string]*kvpb.Value)
	c.mu.history = make(map[string][]*kvpb.Value)
	c.mu.leaders = make(map[uint64]int)
	c.mu.served = make(map[uint64]uint64)
	c.mu.inject = make(map[callKey][]error)
	c.mu.lose = make(map[callKey]int)
	c.mu.answers = make(map[answerKey]proto.Message)
	c.mu.calls = make(map[callKey]int)
	if !o.Uninitialized {
		if _, err := c.initLocked(&kvpb.InitRequest{SplitPoints: o.SplitPoints}); err != nil {
			tb.Fatalf("clienttest: %v", err)
		}
	}
	for i := range o.Nodes {
		rt := daemontest.NewUnstartedRuntime(tb, fmt.Sprintf("raftd-%d", i+1), o.CA, daemontest.Common(tb))
		c.register(rt.Bus, i)
		if err := rt.Start(tb.Context()); err != nil {
			tb.Fatalf("clienttest: start node %d: %v", i+1, err)
		}
		// Under the lock: the started nodes may already serve calls
		// (handlers read addrs), answering Unavailable until all are up.
		c.mu.Lock()
		c.addrs = append(c.addrs, rt.Bus.Addr().String())
		c.mu.Unlock()
	}
	// Registered after the endpoints' cleanups, so it runs before them.
	tb.Cleanup(func() { close(c.done) })
	return c
}

// Addrs returns the nodes' bus addresses, node 0 first.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

// RangeIDs returns the user ranges' ids in key order.
func (c *Cluster) RangeIDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for _, r := range c.mu.ranges {
		ids = append(ids, r.GetRangeId())
	}
	return ids
}

// SetLeader makes node the leader of range id.
func (c *Cluster) SetLeader(id uint64, node int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.leaders[id] = node
}

// Inject makes the next len(errs) calls of method on node fail with errs,
// in order, before anything else happens.
func (c *Cluster) Inject(node int, method string, errs ...error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := callKey{node, method}
	c.mu.inject[k] = append(c.mu.inject[k], errs...)
}

// LoseAnswers makes the next n calls of the write method on node apply
// (or find their session's answer) and then fail with DeadlineExceeded,
// as an attempt whose answer was lost or came too late.
func (c *Cluster) LoseAnswers(node int, method string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.lose[callKey{node, method}] += n
}

// Stall makes node stop answering (stalled true), like a process that
// died without closing its connections: its calls are counted, then hang
// until the caller gives up; injected errors are not consumed. Stall(node,
// false) makes it answer again.
func (c *Cluster) Stall(node int, stalled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.stalled[node] = stalled
}

// Delay makes every node take d before serving method (a replica add
// streaming a big snapshot, say); 0 removes the delay. The caller's
// context still ends the call.
func (c *Cluster) Delay(method string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.delays == nil {
		c.mu.delays = map[string]time.Duration{}
	}
	c.mu.delays[method] = d
}

// Calls returns how many calls of method node received.
func (c *Cluster) Calls(node int, method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.calls[callKey{node, method}]
}

// Forwarded returns how many point requests were served by a node that
// was not their range's leader.
func (c *Cluster) Forwarded() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.forwarded
}

// Split splits the user range holding key at key, as raftd's AdminSplit
// does: the range keeps [start, key), a new range led by node leader
// takes [key, end), and both take the next generation. Requests naming
// the old range (Header.range_id) are refused with RangeKeyMismatch from
// then on.
func (c *Cluster) Split(key []byte, leader int) *kvpb.RangeDescriptor {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, right := c.splitLocked(key, leader)
	return right
}

// splitLocked splits the range holding key at key (nil, nil: key is a
// range's start or outside the user ranges).
func (c *Cluster) splitLocked(key []byte, leader int) (left, right *kvpb.RangeDescriptor) {
	var next uint64
	for _, r := range c.mu.ranges {
		next = max(next, r.GetRangeId())
	}
	for i, r := range c.mu.ranges {
		if !bytes.Equal(c.rangeLocked(key).GetStartKey(), r.GetStartKey()) || bytes.Equal(key, r.GetStartKey()) {
			continue
		}
		left = proto.Clone(r).(*kvpb.RangeDescriptor)
		left.EndKey, left.Generation = bytes.Clone(key), r.GetGeneration()+1
		right = proto.Clone(r).(*kvpb.RangeDescriptor)
		right.RangeId, right.StartKey, right.Generation = next+1, bytes.Clone(key), left.GetGeneration()
		c.mu.ranges = append(c.mu.ranges[:i], append([]*kvpb.RangeDescriptor{left, right}, c.mu.ranges[i+1:]...)...)
		c.mu.leaders[right.GetRangeId()] = leader
		return left, right
	}
	return nil, nil
}

// Mismatches counts the requests refused with RangeKeyMismatch.
func (c *Cluster) Mismatches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.mismatches
}

// Value returns the stored value of key.
func (c *Cluster) Value(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.mu.data[key]
	return string(v.GetValue()), ok
}

// Len returns the number of stored keys.
func (c *Cluster) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.data)
}

// beginLocked counts a call and returns an injected error, if any.
func (c *Cluster) beginLocked(node int, method string) error {
	if len(c.addrs) < c.opts.Nodes {
		return bus.Errorf(bus.CodeUnavailable, "clienttest: cluster starting")
	}
	k := callKey{node, method}
	c.mu.calls[k]++
	if errs := c.mu.inject[k]; len(errs) > 0 {
		c.mu.inject[k] = errs[1:]
		return errs[0]
	}
	return nil
}

// rangeLocked returns the user range holding key.
func (c *Cluster) rangeLocked(key []byte) *kvpb.RangeDescriptor {
	for _, r := range c.mu.ranges {
		if bytes.Compare(key, r.GetStartKey()) >= 0 && (len(r.GetEndKey()) == 0 || bytes.Compare(key, r.GetEndKey()) < 0) {
			return r
		}
	}
	return nil
}

// checkKey refuses what raftd refuses: an empty key, and a key beginning
// with 0x00 unless h.system is set and the key is under a daemon system
// prefix.
func checkKey(h *kvpb.Header, key []byte) error {
	if len(key) == 0 {
		return bus.Errorf(bus.CodeInvalidArgument, "empty key")
	}
	if key[0] == 0 && (!h.GetSystem() || kvpb.DaemonPrefix(key) == nil) {
		return bus.Errorf(bus.CodeInvalidArgument, "key %q is in the system keyspace", key)
	}
	return nil
}

// metaRange is the fake meta range: it holds the daemon system keys
// (Header.system), and node 0 leads it.
var metaRange = &kvpb.RangeDescriptor{RangeId: 1, StartKey: []byte{0}, EndKey: userStart, Generation: 1}

// routeLocked decides whether node serves a point request on keys: the
// range's leader does; another node answers NotLeader when asked not to
// forward, else serves it as forwarded.
func (c *Cluster) routeLocked(node int, h *kvpb.Header, keys ...[]byte) error {
	if !c.mu.initialized {
		return errNotInitialized
	}
	var rng *kvpb.RangeDescriptor
	for _, k := range keys {
		if err := checkKey(h, k); err != nil {
			return err
		}
		r := c.rangeLocked(k)
		if k[0] == 0 {
			r = metaRange
		}
		if rng != nil && r != rng {
			return bus.Errorf(bus.CodeInvalidArgument, "batch spans ranges %d and %d", rng.GetRangeId(), r.GetRangeId())
		}
		rng = r
	}
	if id := h.GetRangeId(); id != 0 && rng != metaRange && (rng.GetRangeId() != id || rng.GetGeneration() > h.GetGeneration()) {
		// As raftd: a request routed by a range that split since is
		// refused with the current descriptor of its key's range.
		c.mu.mismatches++
		dr := &kvpb.DescriptorsResponse{Descriptors: []*kvpb.RangeDescriptor{rng},
			Leaders: map[uint64]string{rng.GetRangeId(): c.addrs[c.mu.leaders[rng.GetRangeId()]]}}
		for _, r := range c.mu.ranges {
			if r.GetRangeId() == id && id != rng.GetRangeId() {
				// The named range too, as raftd adds it when it holds it.
				dr.Descriptors = append(dr.Descriptors, r)
				dr.Leaders[id] = c.addrs[c.mu.leaders[id]]
			}
		}
		detail, err := proto.Marshal(dr)
		if err != nil {
			return err
		}
		return bus.WithDetail(bus.CodeFailedPrecondition, kvpb.ReasonRangeKeyMismatch, detail,
			"clienttest: key in range %d generation %d, not range %d generation %d", rng.GetRangeId(), rng.GetGeneration(), id, h.GetGeneration())
	}
	if h.GetReadConsistency() == kvpb.ReadConsistency_READ_CONSISTENCY_STALE {
		return nil
	}
	leader := c.mu.leaders[rng.GetRangeId()]
	if leader == node {
		c.mu.served[rng.GetRangeId()]++
		return nil
	}
	if h.GetNoForward() {
		hint := c.addrs[leader]
		if c.opts.NoHints {
			hint = ""
		}
		return bus.NotLeader(hint)
	}
	c.mu.forwarded++
	c.mu.served[rng.GetRangeId()]++
	return nil
}

func (c *Cluster) writeLocked(key, value []byte) *kvpb.Value {
	v := c.setLocked(key, value, c.clock.Now())
	c.mu.writes++
	return v
}

// setLocked writes key at ts, keeping the version, its create timestamp
// and version count as raftd does.
func (c *Cluster) setLocked(key, value []byte, ts hlc.Timestamp) *kvpb.Value {
	v := &kvpb.Value{Value: bytes.Clone(value), Timestamp: ts.Proto(), CreateTimestamp: ts.Proto(), Version: 1}
	if prev, ok := c.mu.data[string(key)]; ok {
		v.CreateTimestamp, v.Version = prev.GetCreateTimestamp(), prev.GetVersion()+1
	}
	c.mu.data[string(key)] = v
	c.mu.history[string(key)] = append(c.mu.history[string(key)], v)
	return v
}

// deleteLocked deletes key at ts, leaving a tombstone version.
func (c *Cluster) deleteLocked(key string, ts hlc.Timestamp) {
	if _, ok := c.mu.data[key]; !ok {
		return
	}
	delete(c.mu.data, key)
	c.mu.history[key] = append(c.mu.history[key], &kvpb.Value{Timestamp: ts.Proto()})
}

// readAtLocked is key's newest version at or before ts.
func (c *Cluster) readAtLocked(key string, ts hlc.Timestamp) (*kvpb.Value, bool) {
	h := c.mu.history[key]
	for i := len(h) - 1; i >= 0; i-- {
		vts, _ := hlc.FromProto(h[i].GetTimestamp())
		if !ts.Less(vts) {
			return h[i], h[i].GetVersion() > 0
		}
	}
	return nil, false
}

// unary registers one method of node that runs f under the lock, after
// counting the call and returning an injected error if one is queued.
func unary[Req any, Resp proto.Message, PReq interface {
	*Req
	proto.Message
}](c *Cluster, b *bus.Bus, node int, method string, f func(PReq) (Resp, error)) {
	bus.HandleUnary(b, wire.ProtoKV, method, func(ctx context.Context, req PReq) (Resp, error) {
		c.mu.Lock()
		if d := c.mu.delays[method]; d > 0 {
			c.mu.Unlock()
			select {
			case <-time.After(d):
			case <-ctx.Done():
				var zero Resp
				return zero, ctx.Err()
			}
			c.mu.Lock()
		}
		if c.mu.stalled[node] {
			c.mu.calls[callKey{node, method}]++
			c.mu.Unlock()
			var zero Resp
			select {
			case <-ctx.Done():
				// The caller's deadline passed or it gave up; should this
				// answer beat the caller's own timer, it still says the
				// deadline passed, never that the node is unavailable.
				return zero, ctx.Err()
			case <-c.done:
				return zero, bus.Errorf(bus.CodeUnavailable, "clienttest: node %d stalled", node)
			}
		}
		defer c.mu.Unlock()
		if err := c.beginLocked(node, method); err != nil {
			var zero Resp
			return zero, err
		}
		return f(req)
	})
}

// write registers a write method: f serves it unless its session's
// answer is kept already; LoseAnswers applies.
func write[Req any, Resp proto.Message, PReq interface {
	*Req
	proto.Message
	GetHeader() *kvpb.Header
}](c *Cluster, b *bus.Bus, node int, method string, f func(PReq) (Resp, error)) {
	unary(c, b, node, method, func(r PReq) (Resp, error) {
		var zero Resp
		s := r.GetHeader().GetSession()
		k := answerKey{string(s.GetId()), s.GetSeq()}
		var resp Resp
		if prev, ok := c.mu.answers[k]; ok && s != nil {
			resp = proto.Clone(prev).(Resp)
		} else {
			var err error
			if resp, err = f(r); err != nil {
				return zero, err
			}
			if s != nil {
				c.mu.answers[k] = proto.Clone(resp)
			}
		}
		if ck := (callKey{node, method}); c.mu.lose[ck] > 0 {
			c.mu.lose[ck]--
			return zero, bus.Errorf(bus.CodeDeadlineExceeded, "clienttest: answer of node %d lost", node)
		}
		return resp, nil
	})
}

func (c *Cluster) register(b *bus.Bus, node int) {
	unary(c, b, node, kvclient.MethodAdminSplit, func(r *kvpb.AdminSplitRequest) (*kvpb.AdminSplitResponse, error) {
		if !c.mu.initialized {
			return nil, errNotInitialized
		}
		if err := checkKey(nil, r.GetKey()); err != nil {
			return nil, err
		}
		left, right := c.splitLocked(r.GetKey(), c.mu.leaders[c.rangeLocked(r.GetKey()).GetRangeId()])
		if right == nil {
			// As raftd: a split at a boundary between ranges (a retry
			// whose first answer was lost) changes nothing.
			for i, d := range c.mu.ranges {
				if i > 0 && bytes.Equal(d.GetStartKey(), r.GetKey()) {
					return &kvpb.AdminSplitResponse{Left: c.mu.ranges[i-1], Right: d}, nil
				}
			}
			return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: %q is not a boundary between ranges", r.GetKey())
		}
		return &kvpb.AdminSplitResponse{Left: left, Right: right}, nil
	})
	unary(c, b, node, kvclient.MethodChangeReplicas, func(r *kvpb.ChangeReplicasRequest) (*kvpb.ChangeReplicasResponse, error) {
		for i, cur := range c.mu.ranges {
			if cur.GetRangeId() != r.GetRangeId() {
				continue
			}
			// Copy on write: answers already handed out (being encoded
			// outside the lock) keep the descriptor they hold.
			d := proto.Clone(cur).(*kvpb.RangeDescriptor)
			for _, n := range r.GetAdd() {
				if n == 0 || int(n) > c.opts.Nodes {
					return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: node %d is not a known node", n)
				}
				typ := kvpb.ReplicaType_REPLICA_TYPE_VOTER
				if r.GetLearners() {
					typ = kvpb.ReplicaType_REPLICA_TYPE_LEARNER
				}
				d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: n, ReplicaId: d.GetNextReplicaId(), Type: typ})
				d.NextReplicaId++
			}
			for _, n := range r.GetRemove() {
				i := slices.IndexFunc(d.Replicas, func(x *kvpb.ReplicaDescriptor) bool { return x.GetNodeId() == n })
				if i < 0 {
					return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: range %d has no replica on node %d", d.GetRangeId(), n)
				}
				d.Replicas = slices.Delete(d.Replicas, i, i+1)
			}
			d.Generation++
			c.mu.ranges[i] = d
			return &kvpb.ChangeReplicasResponse{Descriptor_: d}, nil
		}
		return nil, bus.Errorf(bus.CodeNotFound, "clienttest: no range %d", r.GetRangeId())
	})
	unary(c, b, node, kvclient.MethodTransferLeader, func(r *kvpb.TransferLeaderRequest) (*kvpb.TransferLeaderResponse, error) {
		for _, d := range c.mu.ranges {
			if d.GetRangeId() != r.GetRangeId() {
				continue
			}
			for _, rep := range d.GetReplicas() {
				if rep.GetNodeId() == r.GetNodeId() {
					c.mu.leaders[d.GetRangeId()] = int(r.GetNodeId()) - 1
					return &kvpb.TransferLeaderResponse{}, nil
				}
			}
			return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: range %d has no replica on node %d", r.GetRangeId(), r.GetNodeId())
		}
		return nil, bus.Errorf(bus.CodeNotFound, "clienttest: no range %d", r.GetRangeId())
	})
	c.registerWatch(b)
	unary(c, b, node, kvclient.MethodGet, func(r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
		if err := c.routeLocked(node, r.GetHeader(), r.GetKey()); err != nil {
			return nil, err
		}
		v, ok := c.mu.data[string(r.GetKey())]
		if r.GetReadAt() != nil {
			ts, err := hlc.FromProto(r.GetReadAt())
			if err != nil {
				return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: read_at: %v", err)
			}
			if ts.WallTime < c.clock.Now().WallTime-int64(VersionRetention) {
				return nil, bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonCompacted, "clienttest: read at %v is older than the retention window", ts)
			}
			v, ok = c.readAtLocked(string(r.GetKey()), ts)
			if !ok {
				v = nil
			}
		}
		return &kvpb.GetResponse{Found: ok, Value: v}, nil
	})
	write(c, b, node, kvclient.MethodPut, func(r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
		if err := c.routeLocked(node, r.GetHeader(), r.GetKey()); err != nil {
			return nil, err
		}
		return &kvpb.PutResponse{Timestamp: c.writeLocked(r.GetKey(), r.GetValue()).GetTimestamp()}, nil
	})
	write(c, b, node, kvclient.MethodDelete, func(r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
		if err := c.routeLocked(node, r.GetHeader(), r.GetKey()); err != nil {
			return nil, err
		}
		_, ok := c.mu.data[string(r.GetKey())]
		c.deleteLocked(string(r.GetKey()), c.clock.Now())
		return &kvpb.DeleteResponse{Deleted: ok}, nil
	})
	write(c, b, node, kvclient.MethodCompareAndSwap, func(r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
		if err := c.routeLocked(node, r.GetHeader(), r.GetKey()); err != nil {
			return nil, err
		}
		if cur, ok := c.casFailsLocked(r); ok {
			return &kvpb.CompareAndSwapResponse{Current: cur}, nil
		}
		return &kvpb.CompareAndSwapResponse{Succeeded: true, Timestamp: c.casApplyLocked(r).GetTimestamp()}, nil
	})
	write(c, b, node, kvclient.MethodBatch, func(r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
		var keys [][]byte
		for _, op := range r.GetOps() {
			switch {
			case op.GetPut() != nil:
				keys = append(keys, op.GetPut().GetKey())
			case op.GetDelete() != nil:
				keys = append(keys, op.GetDelete().GetKey())
			case op.GetCas() != nil:
				keys = append(keys, op.GetCas().GetKey())
			default:
				return nil, bus.Errorf(bus.CodeInvalidArgument, "empty batch op")
			}
		}
		if len(keys) == 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "empty batch")
		}
		if err := c.routeLocked(node, r.GetHeader(), keys...); err != nil {
			return nil, err
		}
		for i, op := range r.GetOps() {
			if cas := op.GetCas(); cas != nil {
				if _, fails := c.casFailsLocked(cas); fails {
					return &kvpb.BatchResponse{FailedOp: uint32(i)}, nil
				}
			}
		}
		ts := c.clock.Now()
		for _, op := range r.GetOps() {
			switch {
			case op.GetPut() != nil:
				c.setLocked(op.GetPut().GetKey(), op.GetPut().GetValue(), ts)
			case op.GetDelete() != nil:
				c.deleteLocked(string(op.GetDelete().GetKey()), ts)
			default:
				c.casApplyLocked(op.GetCas())
			}
		}
		c.mu.writes++
		return &kvpb.BatchResponse{Succeeded: true, Timestamp: ts.Proto()}, nil
	})
	unary(c, b, node, kvclient.MethodScan, func(r *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
		if !c.mu.initialized {
			return nil, errNotInitialized
		}
		return c.scanLocked(r)
	})
	write(c, b, node, kvclient.MethodDeleteRange, func(r *kvpb.DeleteRangeRequest) (*kvpb.DeleteRangeResponse, error) {
		if !c.mu.initialized {
			return nil, errNotInitialized
		}
		var n uint64
		start, end := spanLocked(r.GetHeader(), r.GetStart(), r.GetEnd())
		ts := c.clock.Now()
		for _, k := range c.keysLocked(start, end) {
			c.deleteLocked(k, ts)
			n++
		}
		return &kvpb.DeleteRangeResponse{Deleted: n}, nil
	})
	unary(c, b, node, kvclient.MethodInit, func(r *kvpb.InitRequest) (*kvpb.InitResponse, error) {
		return c.initLocked(r)
	})
	unary(c, b, node, kvclient.MethodRanges, func(*kvpb.RangesRequest) (*kvpb.RangesResponse, error) {
		return c.rangesLocked(node), nil
	})
	unary(c, b, node, kvclient.MethodDescriptors, func(r *kvpb.DescriptorsRequest) (*kvpb.DescriptorsResponse, error) {
		if c.opts.NoDescriptors {
			return nil, bus.Errorf(bus.CodeUnimplemented, "unknown method Descriptors")
		}
		resp := &kvpb.DescriptorsResponse{Leaders: map[uint64]string{}, Now: c.clock.Now().Proto()}
		for _, d := range c.mu.ranges {
			end := d.GetEndKey()
			if (len(r.GetEnd()) == 0 || bytes.Compare(d.GetStartKey(), r.GetEnd()) < 0) && (len(end) == 0 || bytes.Compare(r.GetStart(), end) < 0) {
				resp.Descriptors = append(resp.Descriptors, d)
				resp.Leaders[d.GetRangeId()] = c.addrs[c.mu.leaders[d.GetRangeId()]]
			}
		}
		return resp, nil
	})
}

// casFailsLocked reports whether the comparison of r fails, with the
// current value (nil when absent).
func (c *Cluster) casFailsLocked(r *kvpb.CompareAndSwapRequest) (*kvpb.Value, bool) {
	cur, ok := c.mu.data[string(r.GetKey())]
	if r.GetExpectAbsent() {
		return cur, ok
	}
	if !ok || !bytes.Equal(cur.GetValue(), r.GetExpectedValue()) {
		return cur, true
	}
	return nil, false
}

func (c *Cluster) casApplyLocked(r *kvpb.CompareAndSwapRequest) *kvpb.Value {
	if r.GetDelete() {
		ts := c.clock.Now()
		c.deleteLocked(string(r.GetKey()), ts)
		c.mu.writes++
		return &kvpb.Value{Timestamp: ts.Proto()}
	}
	return c.writeLocked(r.GetKey(), r.GetNewValue())
}

// keysLocked returns the stored keys in [start, end), sorted.
func (c *Cluster) keysLocked(start, end []byte) []string {
	return keysIn(c.mu.data, start, end)
}

// keysIn lists the keys of data in [start, end), sorted.
func keysIn(data map[string]*kvpb.Value, start, end []byte) []string {
	var ks []string
	for k := range data {
		if k >= string(start) && (len(end) == 0 || k < string(end)) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// scanLocked serves one page; a page never crosses a range boundary, as
// a real raftd's may not.
// A scan at a timestamp reads the keys' values then.
func (c *Cluster) scanLocked(r *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	limit := int(r.GetLimit())
	if limit == 0 {
		limit = c.opts.PageSize
	}
	start, end := spanLocked(r.GetHeader(), r.GetStart(), r.GetEnd())
	data := c.mu.data
	if r.GetReadAt() != nil {
		ts, err := hlc.FromProto(r.GetReadAt())
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "clienttest: read_at: %v", err)
		}
		if ts.WallTime < c.clock.Now().WallTime-int64(VersionRetention) {
			return nil, bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonCompacted, "clienttest: scan at %v is older than the retention window", ts)
		}
		data = map[string]*kvpb.Value{}
		for k := range c.mu.history {
			if v, ok := c.readAtLocked(k, ts); ok {
				data[k] = v
			}
		}
	}
	return c.scanPageLocked(r, data, start, end, limit), nil
}

// scanPageLocked serves one page of [start, end) of data.
func (c *Cluster) scanPageLocked(r *kvpb.ScanRequest, data map[string]*kvpb.Value, start, end []byte, limit int) *kvpb.ScanResponse {
	ks := keysIn(data, start, end)
	resp := &kvpb.ScanResponse{}
	if len(ks) == 0 {
		return resp
	}
	add := func(k string) {
		kv := &kvpb.KeyValue{Key: []byte(k), Value: data[k]}
		if r.GetKeysOnly() {
			kv.Value = &kvpb.Value{Timestamp: data[k].GetTimestamp()}
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	if start[0] == 0 {
		// A system span stays inside one daemon prefix (see spanLocked).
		if r.GetReverse() {
			slices.Reverse(ks)
		}
		for i, k := range ks {
			if len(resp.Kvs) == limit {
				if r.GetReverse() {
					resp.ResumeKey = []byte(ks[i-1])
				} else {
					resp.ResumeKey = []byte(k)
				}
				return resp
			}
			add(k)
		}
		return resp
	}
	if !r.GetReverse() {
		rng := c.rangeLocked(start)
		for i, k := range ks {
			if end := rng.GetEndKey(); len(end) > 0 && k >= string(end) {
				resp.ResumeKey = end
				return resp
			}
			if len(resp.Kvs) == limit {
				resp.ResumeKey = []byte(ks[i])
				return resp
			}
			add(k)
		}
		return resp
	}
	rng := c.rangeLocked([]byte(ks[len(ks)-1]))
	for i := len(ks) - 1; i >= 0; i-- {
		k := ks[i]
		if k < string(rng.GetStartKey()) {
			resp.ResumeKey = rng.GetStartKey()
			return resp
		}
		if len(resp.Kvs) == limit {
			resp.ResumeKey = []byte(ks[i+1])
			return resp
		}
		add(k)
	}
	return resp
}

// spanLocked returns the span a Scan or DeleteRange covers: from the first
// user key at the earliest, or, for a request with Header.system starting
// under a daemon system prefix, no further than that prefix's end.
func spanLocked(h *kvpb.Header, start, end []byte) ([]byte, []byte) {
	if h.GetSystem() && len(start) > 0 && start[0] == 0 {
		if p := kvpb.DaemonPrefix(start); p != nil {
			if pe := kvpb.PrefixEnd(p); len(end) == 0 || bytes.Compare(end, pe) > 0 {
				end = pe
			}
			return start, end
		}
	}
	if bytes.Compare(start, userStart) < 0 {
		start = userStart
	}
	return start, end
}

// initLocked bootstraps the ranges unless they exist.
func (c *Cluster) initLocked(r *kvpb.InitRequest) (*kvpb.InitResponse, error) {
	if c.mu.initialized {
		return &kvpb.InitResponse{AlreadyInitialized: true, Descriptors: c.descriptorsLocked()}, nil
	}
	splits := r.GetSplitPoints()
	if len(splits) == 0 && r.GetInitialRanges() > 1 {
		n := int(r.GetInitialRanges())
		if n > 255 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "initial_ranges %d above 255", n)
		}
		for i := 1; i < n; i++ {
			splits = append(splits, []byte{byte(1 + i*255/n)})
		}
	}
	splits = append([][]byte(nil), splits...)
	sort.Slice(splits, func(i, j int) bool { return bytes.Compare(splits[i], splits[j]) < 0 })
	for i, s := range splits {
		if err := checkKey(nil, s); err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "split point: %v", err)
		}
		if i > 0 && bytes.Equal(s, splits[i-1]) {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "duplicate split point %q", s)
		}
	}
	rf := int(r.GetReplicationFactor())
	if rf == 0 {
		rf = 3
	}
	rf = min(rf, c.opts.Nodes)
	bounds := append(append([][]byte{userStart}, splits...), nil)
	for i := range len(bounds) - 1 {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 2), StartKey: bounds[i], EndKey: bounds[i+1], Generation: 1, NextReplicaId: uint64(rf + 1)}
		for n := range rf {
			d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: uint64(n + 1), ReplicaId: uint64(n + 1)})
		}
		c.mu.ranges = append(c.mu.ranges, d)
		c.mu.leaders[d.GetRangeId()] = i % c.opts.Nodes
	}
	c.mu.initialized = true
	return &kvpb.InitResponse{Descriptors: c.descriptorsLocked()}, nil
}

// descriptorsLocked returns the meta range's descriptor and the user
// ranges'.
func (c *Cluster) descriptorsLocked() []*kvpb.RangeDescriptor {
	meta := &kvpb.RangeDescriptor{RangeId: 1, StartKey: []byte{0}, EndKey: userStart, Generation: 1}
	return append([]*kvpb.RangeDescriptor{meta}, c.mu.ranges...)
}

func (c *Cluster) rangesLocked(node int) *kvpb.RangesResponse {
	resp := &kvpb.RangesResponse{NodeId: uint64(node + 1)}
	for _, d := range c.mu.ranges {
		leader := c.mu.leaders[d.GetRangeId()]
		state := "follower"
		if leader == node {
			state = "leader"
		}
		last := 10 + c.mu.writes
		rs := &kvpb.ReplicaStatus{
			Descriptor_: d, ReplicaId: uint64(node + 1), RaftState: state, Term: 2,
			LeaderReplicaId: uint64(leader + 1), LeaderNodeId: uint64(leader + 1),
			CommitIndex: last, AppliedIndex: last, FirstIndex: 1, LastIndex: last,
			LogBytes: 100 * last, Quiesced: c.mu.writes == 0, LeaseValid: leader == node,
		}
		if leader == node {
			// The leader's size estimate: the keys and values it holds.
			for k, v := range c.mu.data {
				if c.rangeLocked([]byte(k)) == d {
					rs.ApproximateBytes += uint64(len(k) + proto.Size(v))
				}
			}
			rs.RequestsPerSec = float64(c.mu.served[d.GetRangeId()])
			// The leader's view of its followers: the last listed replica
			// trails by 3 entries, the others are caught up.
			reps := d.GetReplicas()
			for i, rd := range reps {
				if rd.GetNodeId() == uint64(node+1) {
					continue
				}
				match := last
				if i == len(reps)-1 {
					match = last - 3
				}
				rs.Followers = append(rs.Followers, &kvpb.FollowerProgress{ReplicaId: rd.GetReplicaId(), Match: match, Next: match + 1,
					State: "replicate", RecentActive: true})
			}
		}
		resp.Replicas = append(resp.Replicas, rs)
	}
	return resp
}
