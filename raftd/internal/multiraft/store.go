package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Deps are the Store's dependencies.
type Deps struct {
	// NodeID is this node's id (non-zero, never reused). Required.
	NodeID uint64
	// Addr is this node's raftd bus address, handed to peers as hints.
	Addr string
	// Engine is the node's storage. Required.
	Engine storage.Engine
	// Transport carries raft traffic. Required.
	Transport Transport
	// Forwarder sends KV requests to leaders on other nodes. Required for
	// the KV methods.
	Forwarder Forwarder
	// Clock stamps writes. Required.
	Clock *hlc.Clock
	// Logger receives lifecycle logs. Required.
	Logger *slog.Logger
}

// ErrStopped is returned for work refused because the store is stopping.
var ErrStopped = errors.New("multiraft: store stopped")

// Store hosts every replica of one node and drives them with one scheduler:
// a round processes every range with pending work (messages, ticks,
// proposals, reads) on a bounded worker pool, writes all their log appends
// in one synced engine write, then sends, applies and advances.
type Store struct {
	cfg         Config
	d           Deps
	log         *slog.Logger
	incarnation int64

	stopc chan struct{}
	// ctx is cancelled by Stop; background sends derive from it.
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	tasks  chan func()
	// carried holds a round's late messages for the next round's early
	// frames (round); only the scheduler goroutine touches it.
	carried *outbox
	wg      sync.WaitGroup
	// async owns the goroutines goAsync starts (snapshot sends, replica
	// destruction, ...): closed by Stop, which waits for them.
	async daemon.Tasks
	fatal chan error

	sched struct {
		sync.Mutex
		pending map[uint64]struct{}
	}
	mu struct {
		sync.RWMutex
		replicas map[uint64]*Replica
		// sorted by start key, for routing.
		sorted      []*Replica
		nodes       map[uint64]string
		initialized bool
		bootstrap   *raftmsgpb.BootstrapRequest
		stopped     bool
	}
	live struct {
		sync.Mutex
		heard map[uint64]time.Time
		// sent is when a batch last went to each node (liveness pings
		// skip nodes that had traffic).
		sent map[uint64]time.Time
	}
	snaps struct {
		sync.Mutex
		in map[snapKey]*inboundSnapshot
	}
	// unknown is when raft traffic of each range this node does not hold
	// was first seen (answerUnknown).
	unknown struct {
		sync.Mutex
		seen map[uint64]time.Time
	}
	snapSeq atomic.Uint64
	// hosting is set once the store holds its cluster's replicas (loaded
	// at start, or bootstrapped): only then does it answer for ranges it
	// does not hold (HandleBatch), which a bootstrap in progress would
	// otherwise race.
	hosting atomic.Bool
	vcache  *valueCache
	// leasesOff suspends lease reads (SuspendLeases).
	leasesOff atomic.Bool
	// testHook, set by tests, runs at each step of a snapshot install
	// (stage "marker", then "ingest") with the replica's lock held, and
	// before a local read of the engine (stage "read", no lock held).
	testHook atomic.Pointer[func(rangeID uint64, stage string)]
	ticks    atomic.Uint64
	metrics  storeMetrics
	// proxy is the client session of this run of raftd given to the
	// writes that come without one (writeHeader); a new one starts when
	// the current one's seqs run proxyWindow past its first write in
	// flight, as the Go client's do.
	proxy struct {
		sync.Mutex
		cur *proxySession
		n   uint32
	}
	// events fans range events out to WatchRanges streams (events.go).
	events rangeEvents
	// watches are the open Watch streams (watch.go).
	watches watchHub
	// disk is what the store knows of its node's disk (disk.go).
	disk diskState
}

type storeMetrics struct {
	rounds, writes, syncWrites, rangesProcessed atomic.Uint64
	carriedRounds                               atomic.Uint64
	prefetchReads, applyReads                   atomic.Uint64
	ticksSkipped, ticksDeferred                 atomic.Uint64
	heartbeatsSent, heartbeatsSkipped           atomic.Uint64
	writeNanos, inboxDrops                      atomic.Uint64
	leaseReads, readIndexReads                  atomic.Uint64
	closedReads                                 atomic.Uint64
	snapshotsSent, snapshotsApplied             atomic.Uint64
	snapshotChunksRecv, snapshotsRecov          atomic.Uint64
	proposals, proposalBatches                  atomic.Uint64
	proposalsDropped                            atomic.Uint64
	sessionRepeats, sessionRefusals             atomic.Uint64
	sessionsForgotten                           atomic.Uint64
	// versionsCollected counts the versions collection removed (mvcc.go);
	// versionGCRounds its completed rounds; versionGCRunning is 1 during
	// one.
	versionsCollected, versionGCRounds atomic.Uint64
	versionGCRunning                   atomic.Int64
	// diskRefusals counts round writes refused for want of space;
	// heldReplicas the replicas holding one (disk.go).
	diskRefusals atomic.Uint64
	heldReplicas atomic.Int64
	// splits counts splits applied by local replicas; replicaChanges the
	// conf changes that changed a local replica's descriptor; replicasGCd
	// the replicas this node destroyed.
	splits, replicaChanges, replicasGCd atomic.Uint64
	// autoSplits counts the splits this node's leaders started by size or
	// load; loadSplits those by load.
	autoSplits, loadSplits atomic.Uint64
}

// NewStore validates its inputs and returns an unstarted store.
func NewStore(cfg Config, d Deps) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	if d.NodeID == 0 || d.Engine == nil || d.Transport == nil || d.Clock == nil || d.Logger == nil {
		return nil, errors.New("multiraft: Deps.NodeID, Engine, Transport, Clock and Logger are required")
	}
	if off := d.Clock.MaxOffset(); cfg.ClosedTimestampLag <= 2*off {
		return nil, fmt.Errorf("multiraft: ClosedTimestampLag %v must exceed twice the clock's MaxOffset %v", cfg.ClosedTimestampLag, off)
	}
	s := &Store{cfg: cfg, d: d, log: d.Logger,
		stopc: make(chan struct{}), wake: make(chan struct{}, 1), tasks: make(chan func()), fatal: make(chan error, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.vcache = newValueCache(cfg.ValueCacheBytes)
	s.sched.pending = map[uint64]struct{}{}
	s.mu.replicas = map[uint64]*Replica{}
	s.mu.nodes = map[uint64]string{}
	if d.Addr != "" {
		s.mu.nodes[d.NodeID] = d.Addr
	}
	s.live.heard = map[uint64]time.Time{}
	s.live.sent = map[uint64]time.Time{}
	s.snaps.in = map[snapKey]*inboundSnapshot{}
	// Snapshot ids differ across restarts, so a receiver never mistakes a
	// new snapshot for one it was receiving from this node's last run.
	s.snapSeq.Store(uint64(time.Now().UnixNano()))
	return s, nil
}

// NodeID returns this node's id.
func (s *Store) NodeID() uint64 { return s.d.NodeID }

// Err delivers a fatal storage failure; the store stops processing.
func (s *Store) Err() <-chan error { return s.fatal }

// Start loads the replicas persisted on this node and starts the
// scheduler and ticker.
func (s *Store) Start(ctx context.Context) error {
	if err := s.load(ctx); err != nil {
		return err
	}
	for range s.cfg.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				select {
				case f := <-s.tasks:
					f()
				case <-s.stopc:
					return
				}
			}
		}()
	}
	s.wg.Add(5)
	go s.closedLoop()
	go s.runLoop()
	go s.tickLoop()
	go s.gcLoop()
	go s.splitLoop()
	s.startVersionGC()
	return nil
}

// Stop stops the scheduler, ticker and snapshot senders and waits for
// them; waiting proposals and reads fail with ErrStopped.
func (s *Store) Stop() {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return
	}
	s.mu.stopped = true
	s.async.Close()
	reps := make([]*Replica, 0, len(s.mu.replicas))
	for _, r := range s.mu.replicas {
		reps = append(reps, r)
	}
	s.mu.Unlock()
	close(s.stopc)
	s.cancel()
	s.wg.Wait()
	_ = s.async.Wait(context.Background()) // they end with s.ctx and stopc
	for _, r := range reps {
		r.failAll(ErrStopped, ErrStopped)
	}
}

// storageCtx bounds one storage call made on behalf of raft (apply, the
// round's write, truncation, snapshots) by StorageTimeout and by Stop, so
// Stop does not wait on a slow or unreachable stored. (raft.Storage reads
// keep their own bound: raft cannot take their failure.)
func (s *Store) storageCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.StorageTimeout)
}

func (s *Store) stopping() bool {
	select {
	case <-s.stopc:
		return true
	default:
		return false
	}
}

// goAsync runs f on a goroutine owned by the store (Stop waits for it);
// false, running nothing, once the store is stopping.
func (s *Store) goAsync(f func()) bool { return s.async.Go(f) }

func (s *Store) load(ctx context.Context) error {
	eng := s.d.Engine
	// Each run proposes under a new incarnation, persisted before use, so
	// the per-proposer sequences applied by ranges never go backwards
	// across restarts, whatever the wall clock does.
	var inc int64
	if v, ok, err := eng.Get(ctx, storage.Local, storage.IncarnationKey); err != nil {
		return fmt.Errorf("multiraft: load incarnation: %w", err)
	} else if ok && len(v) == 8 {
		inc = int64(binary.BigEndian.Uint64(v))
	}
	inc++
	// A reserve write: raftd starts, and serves reads, on a full disk.
	if err := eng.WriteReserve(ctx, []storage.Op{storage.Put(storage.Local, storage.IncarnationKey, binary.BigEndian.AppendUint64(nil, uint64(inc)))}, true); err != nil {
		return fmt.Errorf("multiraft: persist incarnation: %w", err)
	}
	s.incarnation = inc
	if v, ok, err := eng.Get(ctx, storage.Local, storage.BootstrapKey); err != nil {
		return fmt.Errorf("multiraft: load bootstrap record: %w", err)
	} else if ok {
		req := &raftmsgpb.BootstrapRequest{}
		if err := proto.Unmarshal(v, req); err != nil {
			return fmt.Errorf("multiraft: decode bootstrap record: %w", err)
		}
		s.mu.Lock()
		s.mu.initialized = true
		s.mu.bootstrap = req
		for id, a := range req.GetNodes() {
			if _, ok := s.mu.nodes[id]; !ok {
				s.mu.nodes[id] = a
			}
		}
		s.mu.Unlock()
	}
	start, end := storage.ReplicaSpan()
	kvs, err := eng.Scan(ctx, storage.Local, start, end, storage.ScanOptions{})
	if err != nil {
		return fmt.Errorf("multiraft: load replicas: %w", err)
	}
	var rs []*Replica
	for _, kv := range kvs {
		desc := &kvpb.RangeDescriptor{}
		if err := proto.Unmarshal(kv.Value, desc); err != nil {
			return fmt.Errorf("multiraft: decode descriptor: %w", err)
		}
		if replicaOf(desc, s.d.NodeID) == nil {
			// Removed by a conf change applied before a crash that came
			// before its destruction: finish it.
			if err := s.destroyState(ctx, desc, 0, true, true); err != nil {
				return fmt.Errorf("multiraft: destroy removed replica of range %d: %w", desc.GetRangeId(), err)
			}
			continue
		}
		r, err := newReplica(s, desc, false, 0)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	s.addReplicas(rs)
	if s.Initialized() {
		s.hosting.Store(true)
	}
	s.log.Info("replicas loaded", slog.Int("replicas", len(kvs)))
	return nil
}

// addReplicas registers replicas (sorting the routing table once) and
// schedules them.
func (s *Store) addReplicas(rs []*Replica) {
	s.mu.Lock()
	for _, r := range rs {
		s.mu.replicas[r.rangeID] = r
		s.mu.sorted = append(s.mu.sorted, r)
	}
	s.sortLocked()
	s.mu.Unlock()
	for _, r := range rs {
		s.enqueue(r.rangeID)
	}
}

// sortLocked orders the routing table by start key.
func (s *Store) sortLocked() {
	sort.Slice(s.mu.sorted, func(i, j int) bool {
		return bytes.Compare(s.mu.sorted[i].startKey(), s.mu.sorted[j].startKey()) < 0
	})
}

// Replica returns the local replica of a range, or nil.
func (s *Store) Replica(rangeID uint64) *Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.replicas[rangeID]
}

// Replicas returns every local replica ordered by start key.
func (s *Store) Replicas() []*Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Replica(nil), s.mu.sorted...)
}

// ReplicaForKey returns the local replica whose span holds key, or nil.
func (s *Store) ReplicaForKey(key []byte) *Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.mu.sorted), func(i int) bool {
		return bytes.Compare(s.mu.sorted[i].startKey(), key) > 0
	})
	if i == 0 {
		return nil
	}
	r := s.mu.sorted[i-1]
	if r.containsKey(key) {
		return r
	}
	return nil
}

// Initialized reports whether this node holds a bootstrapped cluster.
func (s *Store) Initialized() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.initialized
}

// BootstrapRecord returns the cluster layout this node was bootstrapped
// with, or nil.
func (s *Store) BootstrapRecord() *raftmsgpb.BootstrapRequest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.bootstrap
}

// SetNodeAddr records a peer's raftd bus address.
func (s *Store) SetNodeAddr(node uint64, addr string) {
	if node == 0 || addr == "" {
		return
	}
	s.mu.Lock()
	s.mu.nodes[node] = addr
	s.mu.Unlock()
}

// NodeAddr returns the raftd bus address of a node, if known.
func (s *Store) NodeAddr(node uint64) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.nodes[node]
}

// Nodes returns every known node and its address.
func (s *Store) Nodes() map[uint64]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[uint64]string, len(s.mu.nodes))
	for k, v := range s.mu.nodes {
		out[k] = v
	}
	return out
}

// send hands b to the transport and notes the traffic to its node.
func (s *Store) send(b *raftmsgpb.MessageBatch) {
	now := time.Now()
	s.live.Lock()
	s.live.sent[b.GetToNode()] = now
	s.live.Unlock()
	s.d.Transport.Send(b)
}

// sentWithin reports whether anything was sent to node within d.
func (s *Store) sentWithin(node uint64, d time.Duration) bool {
	s.live.Lock()
	defer s.live.Unlock()
	t, ok := s.live.sent[node]
	return ok && time.Since(t) < d
}

func (s *Store) heard(node uint64) {
	s.live.Lock()
	s.live.heard[node] = time.Now()
	s.live.Unlock()
}

// nodeLive reports whether node was heard from within an election timeout.
func (s *Store) nodeLive(node uint64) bool {
	if node == s.d.NodeID {
		return true
	}
	s.live.Lock()
	defer s.live.Unlock()
	t, ok := s.live.heard[node]
	return ok && time.Since(t) < time.Duration(s.cfg.ElectionTicks)*s.cfg.TickInterval
}

// liveNodes returns the nodes nodeLive reports live, this one included.
func (s *Store) liveNodes() map[uint64]bool {
	cut := time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval
	s.live.Lock()
	defer s.live.Unlock()
	out := make(map[uint64]bool, len(s.live.heard)+1)
	out[s.d.NodeID] = true
	for n, t := range s.live.heard {
		if time.Since(t) < cut {
			out[n] = true
		}
	}
	return out
}

// Bootstrap creates this node's replicas of a new cluster. It is
// idempotent: a node that is already initialized changes nothing and
// reports it.
func (s *Store) Bootstrap(ctx context.Context, req *raftmsgpb.BootstrapRequest) (already bool, err error) {
	s.mu.Lock()
	if s.mu.initialized {
		s.mu.Unlock()
		return true, nil
	}
	s.mu.initialized = true
	s.mu.Unlock()
	var ops []storage.Op
	var mine []*kvpb.RangeDescriptor
	// The i-th range of the layout starts its raft timers (and its first
	// replica campaigns) after i/BootstrapCampaignsPerTick ticks, the same
	// on every node: elections of a large layout are spread out instead of
	// all landing on the first tick.
	var hold []int
	for i, d := range req.GetDescriptors() {
		if replicaOf(d, s.d.NodeID) == nil {
			continue
		}
		mine = append(mine, d)
		hold = append(hold, i/s.cfg.BootstrapCampaignsPerTick)
		dops, err := bootstrapOps(d)
		if err != nil {
			return false, err
		}
		ops = append(ops, dops...)
		if d.GetRangeId() == MetaRangeID {
			ts := s.d.Clock.Now()
			for _, od := range req.GetDescriptors() {
				b, err := proto.Marshal(od)
				if err != nil {
					return false, err
				}
				ops = append(ops, storage.Put(storage.Data, storage.MetaKey(od.GetEndKey()), storage.EncodeValue(ts, b)))
			}
		}
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return false, err
	}
	ops = append(ops, storage.Put(storage.Local, storage.BootstrapKey, b))
	if err := s.d.Engine.Write(ctx, ops, true); err != nil {
		s.mu.Lock()
		s.mu.initialized = false
		s.mu.Unlock()
		return false, fmt.Errorf("multiraft: bootstrap write: %w", err)
	}
	s.mu.Lock()
	s.mu.bootstrap = proto.Clone(req).(*raftmsgpb.BootstrapRequest)
	s.mu.Unlock()
	for id, a := range req.GetNodes() {
		s.SetNodeAddr(id, a)
	}
	var rs []*Replica
	for i, d := range mine {
		r, err := newReplica(s, d, true, hold[i])
		if err != nil {
			return false, err
		}
		rs = append(rs, r)
	}
	s.addReplicas(rs)
	s.hosting.Store(true)
	s.noteReplicasAdded(rs)
	s.log.Info("bootstrapped", slog.Int("replicas", len(mine)))
	return false, nil
}

// enqueue marks a range as having work for the next round.
func (s *Store) enqueue(rangeID uint64) {
	s.sched.Lock()
	s.sched.pending[rangeID] = struct{}{}
	s.sched.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// runLoop runs scheduler rounds until Stop.
func (s *Store) runLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.wake:
		case <-s.stopc:
			return
		}
		s.sched.Lock()
		ids := make([]uint64, 0, len(s.sched.pending))
		for id := range s.sched.pending {
			ids = append(ids, id)
		}
		clear(s.sched.pending)
		s.sched.Unlock()
		if len(ids) == 0 {
			continue
		}
		if err := s.round(ids); err != nil {
			if s.stopping() {
				// Stop cancelled the round's storage calls.
				return
			}
			s.log.Error("scheduler round failed; raft processing stopped", slog.Any("error", err))
			select {
			case s.fatal <- err:
			default:
			}
			return
		}
	}
}

// parallel runs f(0..n-1) and waits: in at most Workers contiguous
// chunks, the first on the calling goroutine and the others on the worker
// pool. Handing each range to a worker of its own would cost a goroutine
// wake-up per range and phase, for no more parallelism than the cores.
func (s *Store) parallel(n int, f func(i int)) {
	chunks := min(n, s.cfg.Workers)
	if chunks <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	run := func(c int) {
		for i := c * n / chunks; i < (c+1)*n/chunks; i++ {
			f(i)
		}
	}
	var wg sync.WaitGroup
	wg.Add(chunks - 1)
	for c := 1; c < chunks; c++ {
		task := func() {
			defer wg.Done()
			run(c)
		}
		select {
		case s.tasks <- task:
		case <-s.stopc:
			task()
		}
	}
	run(0)
	wg.Wait()
}

// round processes the given ranges once. See Store.
func (s *Store) round(ids []uint64) error {
	s.metrics.rounds.Add(1)
	reps := make([]*Replica, 0, len(ids))
	s.mu.RLock()
	for _, id := range ids {
		if r := s.mu.replicas[id]; r != nil {
			reps = append(reps, r)
		}
	}
	s.mu.RUnlock()
	s.metrics.rangesProcessed.Add(uint64(len(reps)))
	works := make([]*readyWork, len(reps))
	early, late := newOutbox(s), newOutbox(s)
	if s.carried != nil {
		// The previous round's late messages go first, in this round's
		// early frames (see below).
		early, s.carried = s.carried, nil
	}
	errs := make([]error, len(reps))
	carried := early.peerMessages()
	s.prefetchInboxes(reps)
	s.parallel(len(reps), func(i int) { works[i], errs[i] = reps[i].phase1(early) })
	if err := errors.Join(errs...); err != nil {
		return err
	}
	leading := early.peerMessages() > carried
	early.flush()
	// The records the appended entries build on are read while the
	// round's write is in flight, not after it: at one client the
	// leader's apply otherwise waited for a read started only once its
	// own append was durable (mvccapply.go).
	s.prefetch(reps, works)
	// A write refused for want of space holds its replicas' works (they
	// sit the next rounds out) instead of failing the round (disk.go).
	if err := s.writeWorks(reps, works); err != nil {
		return err
	}
	s.parallel(len(reps), func(i int) {
		if works[i] != nil {
			errs[i] = reps[i].phase2(works[i], late)
		}
	})
	if leading && s.hasPending() {
		// This node leads ranges that sent before the write, and the
		// next round starts at once: its late messages (acknowledgements
		// of appends, mostly) ride in that round's early frames, sent
		// after its phase1, rather than in frames of their own. With the
		// leaders of many ranges on every node, each round would
		// otherwise send every peer two frames, and each frame its own
		// packets and acknowledgements. The messages wait for the next
		// round's phase1 (no write in between); their order holds.
		s.carried = late
		s.metrics.carriedRounds.Add(1)
		return errors.Join(errs...)
	}
	late.flush()
	return errors.Join(errs...)
}

// hasPending reports whether ranges wait for the next round.
func (s *Store) hasPending() bool {
	s.sched.Lock()
	defer s.sched.Unlock()
	return len(s.sched.pending) > 0
}

// writeRound writes ops of a round (of ranges ranges) to the engine, as
// a reserve write if asked.
func (s *Store) writeRound(ops, ahead []storage.Op, sync bool, ranges int, reserve bool) error {
	ctx, cancel := s.storageCtx()
	defer cancel()
	start := time.Now()
	write := s.d.Engine.Write
	if reserve {
		write = s.d.Engine.WriteReserve
	}
	err := write(ctx, ops, sync)
	s.metrics.writeNanos.Add(uint64(time.Since(start)))
	if err != nil {
		return fmt.Errorf("multiraft: log write of %d ranges: %w", ranges, err)
	}
	s.metrics.writes.Add(1)
	if sync {
		s.metrics.syncWrites.Add(1)
	}
	// The value cache follows the engine before phase2 publishes any
	// applied index.
	s.vcache.applyWrite(ops)
	if len(ahead) > 0 {
		// Written earlier, published now (see writeAhead).
		s.publishWatches(append(ahead[:len(ahead):len(ahead)], ops...), false)
	} else {
		s.publishWatches(ops, true)
	}
	return nil
}

// opsBytes is about the size of ops in a write.
func opsBytes(ops []storage.Op) uint64 {
	var n uint64
	for _, op := range ops {
		n += uint64(len(op.Key)+len(op.Value)+len(op.End)) + 8
	}
	return n
}

// tickLoop ticks every unquiesced replica once per TickInterval and pings
// every peer node (node liveness for quiesced ranges).
func (s *Store) tickLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
		s.ticks.Add(1)
		if s.metrics.heldReplicas.Load() > 0 && s.ticks.Load()%uint64(max(1, heldRetry/s.cfg.TickInterval)) == 0 {
			// A replica holding a refused write sits the rounds out and
			// takes no tick, so nothing else would schedule it while
			// stored's last status still says full: try it every
			// heldRetry (takeHeld decides whether it is due).
			s.enqueueHeld()
		}
		live := s.liveNodes()
		for _, r := range s.Replicas() {
			if r.tick(live) {
				s.enqueue(r.rangeID)
			}
		}
		if s.ticks.Load()%uint64(s.cfg.LivenessPingTicks) != 0 {
			continue
		}
		quiet := time.Duration(s.cfg.LivenessPingTicks-1) * s.cfg.TickInterval
		for node := range s.Nodes() {
			if node != s.d.NodeID && !s.sentWithin(node, quiet) {
				s.send(&raftmsgpb.MessageBatch{FromNode: s.d.NodeID, ToNode: node, FromAddr: s.d.Addr})
			}
		}
	}
}

// HandleBatch delivers one inbound batch. It never blocks on raft work.
func (s *Store) HandleBatch(b *raftmsgpb.MessageBatch) {
	if b.GetToNode() != s.d.NodeID && b.GetToNode() != 0 {
		return
	}
	s.heard(b.GetFromNode())
	if b.GetFromAddr() != "" && s.NodeAddr(b.GetFromNode()) != b.GetFromAddr() {
		s.SetNodeAddr(b.GetFromNode(), b.GetFromAddr())
	}
	var unknown *raftmsgpb.MessageBatch
	answer := func() *raftmsgpb.MessageBatch {
		if unknown == nil {
			unknown = &raftmsgpb.MessageBatch{FromNode: s.d.NodeID, ToNode: b.GetFromNode(), FromAddr: s.d.Addr}
		}
		return unknown
	}
	for _, m := range b.GetMessages() {
		msg, err := decodeMessage(m.GetMessage())
		if err != nil {
			continue
		}
		if r := s.Replica(m.GetRangeId()); r != nil {
			r.deliver(inMsg{msg: msg})
		} else if msg.GetType() == raftpb.MsgApp && s.answerUnknown(m.GetRangeId()) {
			// A range this node does not hold (yet): reject the append
			// as an empty log would, so the leader sends a snapshot,
			// whose first chunk creates the replica (HandleSnapshot).
			resp := &raftpb.Message{Type: raftpb.MsgAppResp.Enum(), From: proto.Uint64(msg.GetTo()), To: proto.Uint64(msg.GetFrom()),
				Term: proto.Uint64(msg.GetTerm()), Index: proto.Uint64(msg.GetIndex()), Reject: proto.Bool(true), RejectHint: proto.Uint64(0), LogTerm: proto.Uint64(0)}
			if rb, err := proto.Marshal(resp); err == nil {
				a := answer()
				a.Messages = append(a.Messages, &raftmsgpb.RaftMessage{RangeId: m.GetRangeId(), Message: rb})
			}
		}
	}
	for _, h := range b.GetHeartbeats() {
		if r := s.Replica(h.GetRangeId()); r != nil {
			r.deliver(inMsg{msg: heartbeatToMsg(h, false), quiesce: h.GetQuiesce()})
		} else if !h.GetQuiesce() && s.answerUnknown(h.GetRangeId()) {
			// Answered, so that the leader probes with an append (above).
			a := answer()
			a.HeartbeatResponses = append(a.HeartbeatResponses, &raftmsgpb.Heartbeat{RangeId: h.GetRangeId(), FromReplica: h.GetToReplica(),
				ToReplica: h.GetFromReplica(), Term: h.GetTerm()})
		}
	}
	if unknown != nil {
		s.send(unknown)
	}
	for _, h := range b.GetHeartbeatResponses() {
		if r := s.Replica(h.GetRangeId()); r != nil {
			r.deliver(inMsg{msg: heartbeatToMsg(h, true)})
		}
	}
	s.noteClosed(b.GetClosed(), b.GetClosedWanted())
}

// answerUnknown reports whether to answer the raft traffic of a range this
// node does not hold, so that its leader sends a snapshot that creates
// it: once the store hosts its replicas, and only after an election
// timeout of such traffic. A split this node has yet to apply creates the
// range from local state meanwhile, without a snapshot.
func (s *Store) answerUnknown(rangeID uint64) bool {
	if !s.hosting.Load() {
		return false
	}
	now := time.Now()
	wait := time.Duration(s.cfg.ElectionTicks) * s.cfg.TickInterval
	s.unknown.Lock()
	defer s.unknown.Unlock()
	if s.unknown.seen == nil || len(s.unknown.seen) > 100000 {
		s.unknown.seen = map[uint64]time.Time{}
	}
	first, ok := s.unknown.seen[rangeID]
	if !ok || now.Sub(first) > 10*wait+time.Minute {
		// New, or an entry from long ago (the range came and went).
		s.unknown.seen[rangeID] = now
		return false
	}
	return now.Sub(first) >= wait
}

// SuspendLeases turns lease reads off (linearizable reads then take a
// ReadIndex round) or back on, and returns the previous setting. raftd
// suspends them while clockd reports the node's clock unhealthy. Votes
// keep their lease-based restrictions either way.
func (s *Store) SuspendLeases(off bool) (was bool) { return s.leasesOff.Swap(off) }

// leaseDuration is how long a confirmed leadership stays valid for reads:
// the shortest time a follower that acknowledged refuses votes, which is
// ElectionTicks-1 whole ticks (its first tick may come at once), less the
// maximum clock offset (0: no leases).
func (s *Store) leaseDuration() time.Duration {
	d := time.Duration(s.cfg.ElectionTicks-1)*s.cfg.TickInterval - s.d.Clock.MaxOffset()
	if s.cfg.DisableLeaseReads || d < 0 {
		return 0
	}
	return d
}

// heartbeatQuietTicks is how long after an append with entries a leader
// sends its follower no heartbeat (Replica.sendLocked): a third of the
// election timeout, and at least one heartbeat interval more than the
// interval itself, so that an append skips at least the next heartbeat.
func (s *Store) heartbeatQuietTicks() uint64 {
	return uint64(max(s.cfg.HeartbeatTicks+1, s.cfg.ElectionTicks/3))
}

// Stats are scheduler counters.
type Stats struct {
	// Writes counts the rounds' engine writes, SyncWrites those synced;
	// WriteSeconds is the time rounds spent waiting on them.
	Rounds, Writes, SyncWrites, RangesProcessed uint64
	WriteSeconds                                float64
	// CarriedRounds counts rounds whose late messages went out with the
	// next round's early ones (Store.round).
	CarriedRounds uint64
	// PrefetchReads counts the engine reads a round started for the
	// records its appended entries' writes will build on (one MultiGet a
	// round, off the apply path; or before its phase1, for the entries
	// that arrived with their commit); ApplyReads the engine reads an apply
	// pass still made itself (a Get or MultiGet on its path).
	PrefetchReads, ApplyReads uint64
	// TicksSkipped counts the ticks of followers that had heard from
	// their leader since the tick before (Replica.tick).
	TicksSkipped uint64
	// TicksDeferred counts the ticks of leaders with traffic that were
	// left for their next pass to take (Replica.tick).
	TicksDeferred uint64
	// HeartbeatsSent counts the heartbeats leaders sent to followers;
	// HeartbeatsSkipped those left out because the follower was sent
	// entries lately (Replica.sendLocked).
	HeartbeatsSent, HeartbeatsSkipped uint64
	// ValueCacheHits and ValueCacheMisses count reads of the value cache.
	ValueCacheHits, ValueCacheMisses uint64
	// InboxDrops counts raft messages dropped on a full replica inbox.
	InboxDrops uint64
	// LeaseReads and ReadIndexReads count linearizable reads by path;
	// ClosedReads the bounded-staleness reads a replica served at its
	// closed timestamp.
	LeaseReads, ReadIndexReads, ClosedReads uint64
	// SnapshotsSent and SnapshotsApplied count range snapshots.
	SnapshotsSent, SnapshotsApplied uint64
	// SnapshotChunksReceived counts snapshot chunks taken in;
	// SnapshotsRecovered counts snapshot installs that a crash interrupted
	// after the data was replaced, completed at start.
	SnapshotChunksReceived, SnapshotsRecovered uint64
	// Proposals counts commands proposed (first proposals, not
	// re-proposals); ProposalBatches the raft proposals that carried
	// them: the proposals of one range in one round go together.
	Proposals, ProposalBatches uint64
	// ProposalsDropped counts writes not proposed because their caller
	// had gone (its deadline passed or it cancelled) while they waited.
	ProposalsDropped uint64
	// Sessions and SessionBytes are the client sessions the local
	// replicas remember and the size of their records. SessionRepeats
	// counts writes answered from a session (another copy or attempt of
	// an applied write); SessionRefusals writes refused by their session
	// (too old, stale, tables full); SessionsForgotten sessions forgotten
	// after their idle time or to make room. The counters count every
	// replica's apply, followers' included.
	Sessions, SessionBytes                             int64
	SessionRepeats, SessionRefusals, SessionsForgotten uint64
	// DiskRefusals counts round writes stored refused for want of space;
	// HeldReplicas is how many replicas hold a write until it has room.
	DiskRefusals uint64
	HeldReplicas int64
	// Splits counts splits applied by local replicas (every replica of
	// a range counts its own).
	Splits uint64
	// ReplicaChanges counts applied conf changes that changed a local
	// replica's descriptor; ReplicasRemoved the local replicas destroyed
	// (removed from their range, found gone from meta).
	ReplicaChanges, ReplicasRemoved uint64
	// AutoSplits counts the splits this node started because a range it
	// leads outgrew SplitBytes or SplitQPS; LoadSplits those by load.
	AutoSplits, LoadSplits uint64
	// VersionsCollected counts the versions version collection removed;
	// VersionGCRounds its rounds completed over every local replica;
	// VersionGCRunning is 1 while a round runs.
	VersionsCollected, VersionGCRounds uint64
	VersionGCRunning                   int64
}

// Stats returns scheduler counters.
func (s *Store) Stats() Stats {
	var hits, misses uint64
	if s.vcache != nil {
		hits, misses = s.vcache.hits.Load(), s.vcache.misses.Load()
	}
	st := Stats{ValueCacheHits: hits, ValueCacheMisses: misses, InboxDrops: s.metrics.inboxDrops.Load(),
		Rounds: s.metrics.rounds.Load(), CarriedRounds: s.metrics.carriedRounds.Load(), PrefetchReads: s.metrics.prefetchReads.Load(), ApplyReads: s.metrics.applyReads.Load(), TicksSkipped: s.metrics.ticksSkipped.Load(), TicksDeferred: s.metrics.ticksDeferred.Load(), HeartbeatsSent: s.metrics.heartbeatsSent.Load(), HeartbeatsSkipped: s.metrics.heartbeatsSkipped.Load(), Writes: s.metrics.writes.Load(), WriteSeconds: float64(s.metrics.writeNanos.Load()) / 1e9, SyncWrites: s.metrics.syncWrites.Load(), RangesProcessed: s.metrics.rangesProcessed.Load(),
		LeaseReads: s.metrics.leaseReads.Load(), ClosedReads: s.metrics.closedReads.Load(), ReadIndexReads: s.metrics.readIndexReads.Load(),
		SnapshotsSent: s.metrics.snapshotsSent.Load(), SnapshotsApplied: s.metrics.snapshotsApplied.Load(),
		SnapshotChunksReceived: s.metrics.snapshotChunksRecv.Load(), SnapshotsRecovered: s.metrics.snapshotsRecov.Load(),
		Proposals: s.metrics.proposals.Load(), ProposalBatches: s.metrics.proposalBatches.Load(), ProposalsDropped: s.metrics.proposalsDropped.Load(),
		SessionRepeats: s.metrics.sessionRepeats.Load(), SessionRefusals: s.metrics.sessionRefusals.Load(), SessionsForgotten: s.metrics.sessionsForgotten.Load(),
		DiskRefusals: s.metrics.diskRefusals.Load(), HeldReplicas: s.metrics.heldReplicas.Load(),
		Splits: s.metrics.splits.Load(), ReplicaChanges: s.metrics.replicaChanges.Load(), ReplicasRemoved: s.metrics.replicasGCd.Load(),
		AutoSplits: s.metrics.autoSplits.Load(), LoadSplits: s.metrics.loadSplits.Load(),
		VersionsCollected: s.metrics.versionsCollected.Load(), VersionGCRounds: s.metrics.versionGCRounds.Load(), VersionGCRunning: s.metrics.versionGCRunning.Load()}
	for _, r := range s.Replicas() {
		st.Sessions += r.sessionCount.Load()
		st.SessionBytes += r.sessionBytes.Load()
	}
	return st
}
