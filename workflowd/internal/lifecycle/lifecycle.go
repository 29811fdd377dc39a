package lifecycle

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/logkey"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// Definition ids of the built-in workflows. Ids under Reserved are the
// cluster's own: the host API's Start refuses them.
const (
	Reserved          = "pleiades."
	DefReReplicate    = "pleiades.rereplicate"
	DefDecommission   = "pleiades.decommission"
	DefRebalance      = "pleiades.rebalance"
	definitionVersion = 1
)

// Lifecycle states of a node, kept at NodeKey.
const (
	StateDecommissioning = "decommissioning"
	StateDecommissioned  = "decommissioned"
)

// Sentinel errors of Decommission; the server maps them to bus codes.
var (
	// ErrInvalid: a malformed request (node id 0).
	ErrInvalid = errors.New("lifecycle: invalid argument")
	// ErrNotFound: the node is not a member of the cluster.
	ErrNotFound = errors.New("lifecycle: not found")
	// ErrPrecondition: the cluster cannot do it now (too few nodes left).
	ErrPrecondition = errors.New("lifecycle: failed precondition")
)

// KV is what the lifecycle needs of the replicated KV (a system
// *kvclient.Client).
type KV interface {
	Descriptors(ctx context.Context, start, end []byte, opts ...kvclient.ReadOption) (*kvpb.DescriptorsResponse, error)
	ChangeReplicas(ctx context.Context, rangeID uint64, ch kvclient.ReplicaChange) (*kvpb.RangeDescriptor, error)
	Get(ctx context.Context, key []byte, opts ...kvclient.ReadOption) (kvclient.Value, bool, error)
	CompareAndSwap(ctx context.Context, x kvclient.CAS) (kvclient.CASResult, error)
	Scan(ctx context.Context, start, end []byte, opts kvclient.ScanOptions) *kvclient.Iterator
}

// Membership lists gossip members, dead and left ones included (a
// *gossipclient.Client).
type Membership interface {
	Members(ctx context.Context, includeDead bool) ([]*gossippb.Member, uint64, error)
}

// Engine starts and inspects workflow instances (workflowd's engine).
type Engine interface {
	// Start starts an instance of def with data, idempotent on idem.
	Start(ctx context.Context, def string, data []byte, idem string) (id string, existing bool, err error)
	// Status returns an instance's status (NotFound once purged).
	Status(ctx context.Context, id string) (workflowpb.Status, error)
	// Terminate terminates an instance.
	Terminate(ctx context.Context, id, reason string) error
}

// Config tunes the lifecycle workflows.
type Config struct {
	// DeadNodeTimeout: how long a node must stay dead (or left) in
	// gossip before its replicas are replaced elsewhere. Default 5m.
	DeadNodeTimeout time.Duration
	// CheckInterval: how often membership is looked at. Default
	// DeadNodeTimeout/10, between 100ms and 30s.
	CheckInterval time.Duration
	// RetryInterval: how long a workflow waits before trying again when
	// no node can take a replica or a change failed. Default 5s.
	RetryInterval time.Duration
	// ChangeTimeout bounds one replica change (a snapshot of a big
	// range takes long). Default 5m.
	ChangeTimeout time.Duration
	// RebalanceInterval: how often replica counts are compared; 0 (the
	// default): no rebalancing.
	RebalanceInterval time.Duration
	// RebalanceThreshold: the difference in replica counts between the
	// fullest and the emptiest live node above which one replica moves.
	// Default 2.
	RebalanceThreshold int
	// MoveConcurrency: how many ranges a re-replication or decommission
	// moves at once (each a replica change with its snapshot). Default 4.
	MoveConcurrency int
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.DeadNodeTimeout <= 0 {
		c.DeadNodeTimeout = 5 * time.Minute
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = min(max(c.DeadNodeTimeout/10, 100*time.Millisecond), 30*time.Second)
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 5 * time.Second
	}
	if c.ChangeTimeout <= 0 {
		c.ChangeTimeout = 5 * time.Minute
	}
	if c.RebalanceThreshold <= 0 {
		c.RebalanceThreshold = 2
	}
	if c.MoveConcurrency <= 0 {
		c.MoveConcurrency = 4
	}
	return c
}

// Manager runs the cluster's lifecycle: it defines the built-in
// workflows, starts re-replication of nodes dead past DeadNodeTimeout
// and rebalancing, and validates decommissions.
type Manager struct {
	cfg  Config
	kv   KV
	mem  Membership
	eng  Engine
	log  *slog.Logger
	now  func() time.Time
	defs []*workflow.Definition
	// unknownSince is when Run first saw descriptors name a node that
	// gossip does not list at all (a gossipd restarted after the node
	// died forgets it); Run's goroutine alone uses it.
	unknownSince map[uint64]time.Time
}

// New returns a manager; Definitions must be registered with the engine
// before Run.
func New(cfg Config, kv KV, mem Membership, eng Engine, log *slog.Logger) *Manager {
	m := &Manager{cfg: cfg.withDefaults(), kv: kv, mem: mem, eng: eng, log: log, now: time.Now, unknownSince: map[uint64]time.Time{}}
	m.defs = []*workflow.Definition{m.moveDefinition(DefReReplicate, reasonDead), m.moveDefinition(DefDecommission, reasonDecommission),
		m.rebalanceDefinition()}
	return m
}

// Definitions returns the built-in workflow definitions.
func (m *Manager) Definitions() []*workflow.Definition { return m.defs }

// ---------------------------------------------------------------------------
// Keys: under the workflow prefix 0x00 "wf/" (node certificates only).

// NodeKey holds a node's lifecycle state (nodeState JSON).
func NodeKey(id uint64) []byte { return lcKey("lc/node/" + strconv.FormatUint(id, 10)) }

// deadKey holds the id of the latest re-replication instance of a node.
func deadKey(id uint64) []byte { return lcKey("lc/dead/" + strconv.FormatUint(id, 10)) }

func lcKey(s string) []byte { return append(append([]byte(nil), kvpb.WorkflowPrefix...), s...) }

// nodeState is the record at NodeKey. A cancelled decommission leaves
// State empty and Instance naming it (the next one's idempotency key
// follows it).
type nodeState struct {
	State    string `json:"state"`
	Instance string `json:"instance,omitempty"`
	Since    int64  `json:"since_unix_nano,omitempty"`
}

// nodeStates reads every node's lifecycle state.
func (m *Manager) nodeStates(ctx context.Context) (map[uint64]nodeState, error) {
	start := lcKey("lc/node/")
	end := lcKey("lc/node0") // '0' follows '/'
	it := m.kv.Scan(ctx, start, end, kvclient.ScanOptions{})
	out := map[uint64]nodeState{}
	for it.Next() {
		kv := it.KV()
		id, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), string(start)), 10, 64)
		if err != nil {
			continue
		}
		var st nodeState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("node %d lifecycle state: %w", id, err)
		}
		out[id] = st
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read node lifecycle states: %w", err)
	}
	return out, nil
}

// nodeStateOf reads node id's state record: the state (zero when there
// is none), the raw record to compare-and-swap against, and whether one
// exists.
func (m *Manager) nodeStateOf(ctx context.Context, id uint64) (nodeState, kvclient.Value, bool, error) {
	var st nodeState
	cur, found, err := m.kv.Get(ctx, NodeKey(id))
	if err != nil {
		return st, cur, false, fmt.Errorf("read node %d state: %w", id, err)
	}
	if found {
		if err := json.Unmarshal(cur.Value, &st); err != nil {
			return st, cur, false, fmt.Errorf("node %d state: %w", id, err)
		}
	}
	return st, cur, found, nil
}

// setNodeState writes a node's state unless it already has it; a
// decommissioned node is never made decommissioning again.
func (m *Manager) setNodeState(ctx context.Context, id uint64, st nodeState) error {
	for {
		old, cur, found, err := m.nodeStateOf(ctx, id)
		if err != nil {
			return err
		}
		if found && (old.State == st.State || old.State == StateDecommissioned) {
			return nil
		}
		st.Since = m.now().UnixNano()
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		res, err := m.kv.CompareAndSwap(ctx, kvclient.CAS{Key: NodeKey(id), ExpectAbsent: !found, Expected: cur.Value, NewValue: raw})
		if err != nil {
			return fmt.Errorf("write node %d state: %w", id, err)
		}
		if res.Succeeded {
			return nil
		}
	}
}

// ---------------------------------------------------------------------------
// The cluster as the workflows see it.

// view is one consistent-enough look at the cluster: descriptors
// (linearizable), gossip members, lifecycle states.
type view struct {
	descs   []*kvpb.RangeDescriptor
	members map[uint64]*gossippb.Member
	states  map[uint64]nodeState
	// counts is the number of replicas the descriptors name per node.
	counts map[uint64]int
}

func (m *Manager) look(ctx context.Context) (*view, error) {
	resp, err := m.kv.Descriptors(ctx, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("read range descriptors: %w", err)
	}
	ms, _, err := m.mem.Members(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("read gossip members: %w", err)
	}
	states, err := m.nodeStates(ctx)
	if err != nil {
		return nil, err
	}
	v := &view{descs: resp.GetDescriptors(), members: map[uint64]*gossippb.Member{}, states: states, counts: map[uint64]int{}}
	for _, mb := range ms {
		v.members[mb.GetNodeId()] = mb
	}
	for _, d := range v.descs {
		for _, r := range d.GetReplicas() {
			v.counts[r.GetNodeId()]++
		}
	}
	return v, nil
}

// alive reports whether gossip sees the node alive.
func (v *view) alive(id uint64) bool {
	mb := v.members[id]
	return mb != nil && mb.GetState() == gossippb.MemberState_MEMBER_STATE_ALIVE
}

// usable reports whether a node may take replicas: alive, with a raftd,
// not being decommissioned.
func (v *view) usable(id uint64) bool {
	if !v.alive(id) || v.states[id].State != "" {
		return false
	}
	return v.members[id].GetMetadata().GetAddresses()["raftd"] != ""
}

// usableNodes lists the usable nodes, ascending.
func (v *view) usableNodes() []uint64 {
	var out []uint64
	for id := range v.members {
		if v.usable(id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// replicationFactor is the most replicas any range has.
func (v *view) replicationFactor() int {
	rf := 0
	for _, d := range v.descs {
		rf = max(rf, len(d.GetReplicas()))
	}
	return rf
}

func replicaOn(d *kvpb.RangeDescriptor, node uint64) *kvpb.ReplicaDescriptor {
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() == node {
			return r
		}
	}
	return nil
}

// target picks the node to take d's replica on node: a learner left on
// a usable node by an interrupted change, else the usable node without a
// replica of d that has the fewest replicas (lowest id on a tie); 0 when
// none.
func (v *view) target(d *kvpb.RangeDescriptor, node uint64) uint64 {
	for _, r := range d.GetReplicas() {
		if r.GetNodeId() != node && r.GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER && v.usable(r.GetNodeId()) {
			return r.GetNodeId()
		}
	}
	var best uint64
	for _, id := range v.usableNodes() {
		if id == node || replicaOn(d, id) != nil {
			continue
		}
		if best == 0 || v.counts[id] < v.counts[best] {
			best = id
		}
	}
	return best
}

func nodeList(ids []uint64) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ", ")
}

// MembershipName names a gossip state as NodeLifecycle.membership does.
func MembershipName(mb *gossippb.Member) string {
	if mb == nil {
		return "absent"
	}
	return strings.ToLower(strings.TrimPrefix(mb.GetState().String(), "MEMBER_STATE_"))
}

// Nodes lists every node gossip or a descriptor knows, with its
// replicas and lifecycle state.
func (m *Manager) Nodes(ctx context.Context) ([]*workflowpb.NodeLifecycle, error) {
	v, err := m.look(ctx)
	if err != nil {
		return nil, err
	}
	ids := map[uint64]bool{}
	for id := range v.members {
		ids[id] = true
	}
	for id := range v.counts {
		ids[id] = true
	}
	for id := range v.states {
		ids[id] = true
	}
	var out []*workflowpb.NodeLifecycle
	for id := range ids {
		st := v.states[id]
		out = append(out, &workflowpb.NodeLifecycle{NodeId: id, Membership: MembershipName(v.members[id]), Replicas: uint32(v.counts[id]),
			Lifecycle: st.State, InstanceId: st.Instance})
	}
	slices.SortFunc(out, func(a, b *workflowpb.NodeLifecycle) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return out, nil
}

// ---------------------------------------------------------------------------
// Decommission.

// Decommission validates and starts the decommission of node: an
// unknown node, or one whose departure would leave fewer usable nodes
// than a range has replicas, is refused with nothing changed. A node
// already decommissioning or decommissioned gets its instance back
// (existing true).
func (m *Manager) Decommission(ctx context.Context, node uint64) (string, bool, error) {
	if node == 0 {
		return "", false, fmt.Errorf("%w: node id 0", ErrInvalid)
	}
	v, err := m.look(ctx)
	if err != nil {
		return "", false, err
	}
	prev := v.states[node]
	if prev.State != "" {
		return prev.Instance, true, nil
	}
	if v.members[node] == nil && v.counts[node] == 0 {
		known := make([]uint64, 0, len(v.members))
		for id := range v.members {
			known = append(known, id)
		}
		slices.Sort(known)
		return "", false, fmt.Errorf("%w: node %d is not a member of the cluster (members: %s)", ErrNotFound, node, nodeList(known))
	}
	var left []uint64
	for _, id := range v.usableNodes() {
		if id != node {
			left = append(left, id)
		}
	}
	if rf := v.replicationFactor(); len(left) < rf {
		return "", false, fmt.Errorf("%w: decommissioning node %d would leave %d live nodes (%s) for ranges of %d replicas: add a node first",
			ErrPrecondition, node, len(left), nodeList(left), rf)
	}
	data, err := json.Marshal(moveData{Node: node, Reason: reasonDecommission})
	if err != nil {
		return "", false, err
	}
	id, existing, err := m.eng.Start(ctx, DefDecommission, data, fmt.Sprintf("%s/%d/after/%s", DefDecommission, node, prev.Instance))
	if err != nil {
		return "", false, fmt.Errorf("start decommission of node %d: %w", node, err)
	}
	// Marked now, so that placement leaves the node out from here on
	// (the workflow's first step marks it too, should this write fail).
	if err := m.setNodeState(ctx, node, nodeState{State: StateDecommissioning, Instance: id}); err != nil {
		return id, existing, err
	}
	m.log.Info("decommission started", slog.Uint64("target_node", node), slog.String("instance", id))
	return id, existing, nil
}

// CancelDecommission stops the decommission of node under way: its
// instance is terminated and the node may take replicas again; the
// replicas already moved stay where they are. For a node already
// decommissioned it clears the mark: the node is back in service (it
// takes replicas again once alive). A node with no decommission is
// refused.
func (m *Manager) CancelDecommission(ctx context.Context, node uint64) (string, error) {
	if node == 0 {
		return "", fmt.Errorf("%w: node id 0", ErrInvalid)
	}
	st, cur, _, err := m.nodeStateOf(ctx, node)
	if err != nil {
		return "", err
	}
	switch st.State {
	case "":
		return "", fmt.Errorf("%w: node %d is not being decommissioned", ErrPrecondition, node)
	}
	if err := m.eng.Terminate(ctx, st.Instance, "decommission cancelled"); err != nil && !errors.Is(err, ErrNotFound) {
		if s, serr := m.eng.Status(ctx, st.Instance); serr != nil || !finished(s) {
			return "", fmt.Errorf("terminate decommission %s of node %d: %w", st.Instance, node, err)
		}
	}
	raw, err := json.Marshal(nodeState{Instance: st.Instance, Since: m.now().UnixNano()})
	if err != nil {
		return "", err
	}
	res, err := m.kv.CompareAndSwap(ctx, kvclient.CAS{Key: NodeKey(node), Expected: cur.Value, NewValue: raw})
	if err != nil {
		return "", fmt.Errorf("write node %d state: %w", node, err)
	}
	if !res.Succeeded {
		return "", fmt.Errorf("%w: node %d's state changed meanwhile; look again (pleiades node list)", ErrPrecondition, node)
	}
	if st.State == StateDecommissioned {
		m.log.Info("decommissioned node back in service", slog.Uint64("target_node", node), slog.String("instance", st.Instance))
	} else {
		m.log.Info("decommission cancelled", slog.Uint64("target_node", node), slog.String("instance", st.Instance))
	}
	return st.Instance, nil
}

// ---------------------------------------------------------------------------
// Re-replication: the watcher.

// Run watches membership until ctx ends: every CheckInterval it starts
// the re-replication of each node dead or left for DeadNodeTimeout that
// descriptors still name, and (every RebalanceInterval) a rebalancing
// round. Errors (no cluster yet, gossipd restarting) are retried at the
// next tick; they are logged at debug level until they have lasted
// failingWarnAfter, then at warn level (again every failingWarnEvery),
// and the recovery of a check that warned is logged.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.CheckInterval)
	defer t.Stop()
	var lastRebalance time.Time
	var dead, rebalance failing
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.checkDead(ctx); ctx.Err() == nil {
			dead.report(m.log, "lifecycle: dead node check", err, m.now())
		}
		if m.cfg.RebalanceInterval > 0 && m.now().Sub(lastRebalance) >= m.cfg.RebalanceInterval {
			lastRebalance = m.now()
			if err := m.startRebalance(ctx); ctx.Err() == nil {
				rebalance.report(m.log, "lifecycle: rebalance", err, m.now())
			}
		}
	}
}

// How long a periodic check may keep failing before it is logged at warn
// level, and how often it is logged again while it still fails.
const (
	failingWarnAfter = time.Minute
	failingWarnEvery = 10 * time.Minute
)

// failing tracks the errors of one periodic check for its log lines.
type failing struct {
	since, warned time.Time // first failure of the current run; last warning
}

// report logs the outcome of one run of the check named what.
func (f *failing) report(log *slog.Logger, what string, err error, now time.Time) {
	if err == nil {
		if !f.warned.IsZero() {
			log.Info(what+" succeeds again", slog.Duration("failed_for", now.Sub(f.since)))
		}
		*f = failing{}
		return
	}
	if f.since.IsZero() {
		f.since = now
	}
	if now.Sub(f.since) < failingWarnAfter || (!f.warned.IsZero() && now.Sub(f.warned) < failingWarnEvery) {
		log.Debug(what, slog.Any(logkey.Err, err))
		return
	}
	f.warned = now
	log.Warn(what+" keeps failing", slog.Duration("failing_for", now.Sub(f.since)), slog.Any(logkey.Err, err))
}

// deadFor returns how long gossip has seen the member dead or left (0
// when it is alive or suspect).
func deadFor(mb *gossippb.Member, now time.Time) time.Duration {
	switch mb.GetState() {
	case gossippb.MemberState_MEMBER_STATE_DEAD, gossippb.MemberState_MEMBER_STATE_LEFT:
		return now.Sub(time.Unix(0, mb.GetStateChangeUnixNano()))
	}
	return 0
}

// checkDead starts the re-replication of the nodes dead for long enough:
// those gossip has seen dead or left for DeadNodeTimeout, and those the
// descriptors name that gossip has not listed at all for as long (its
// gossipd restarted after they died, or never met them).
func (m *Manager) checkDead(ctx context.Context) error {
	v, err := m.look(ctx)
	if err != nil {
		return err
	}
	now := m.now()
	var dead []uint64
	for _, mb := range v.members {
		if deadFor(mb, now) >= m.cfg.DeadNodeTimeout {
			dead = append(dead, mb.GetNodeId())
		}
	}
	for id := range m.unknownSince {
		if v.members[id] != nil || v.counts[id] == 0 {
			delete(m.unknownSince, id)
		}
	}
	for id := range v.counts {
		if v.members[id] != nil {
			continue
		}
		since, ok := m.unknownSince[id]
		if !ok {
			m.unknownSince[id] = now
			continue
		}
		if now.Sub(since) >= m.cfg.DeadNodeTimeout {
			dead = append(dead, id)
		}
	}
	slices.Sort(dead)
	var errs []error
	for _, id := range dead {
		if v.counts[id] == 0 || v.states[id].State != "" || v.alive(id) {
			continue // nothing to replace, or decommission owns it
		}
		if err := m.startReReplicate(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startReReplicate makes sure one re-replication instance of node runs.
// Every workflowd may call it at once: the latest instance's id is kept
// at deadKey; while it runs nothing starts, once it has finished the next
// one starts with the idempotency key "<node>/after/<previous id>", the
// same for every caller, so the engine starts one instance only.
func (m *Manager) startReReplicate(ctx context.Context, node uint64) error {
	cur, found, err := m.kv.Get(ctx, deadKey(node))
	if err != nil {
		return fmt.Errorf("read re-replication of node %d: %w", node, err)
	}
	prev := ""
	if found {
		prev = string(cur.Value)
		st, err := m.eng.Status(ctx, prev)
		if err == nil && !finished(st) {
			return nil
		}
		// The caller's view may predate the previous instance's last
		// move: look again, after seeing it finished, before starting
		// another.
		v, err := m.look(ctx)
		if err != nil {
			return err
		}
		if v.counts[node] == 0 || v.states[node].State != "" || v.alive(node) {
			return nil
		}
	}
	data, err := json.Marshal(moveData{Node: node, Reason: reasonDead})
	if err != nil {
		return err
	}
	id, existing, err := m.eng.Start(ctx, DefReReplicate, data, fmt.Sprintf("%s/%d/after/%s", DefReReplicate, node, prev))
	if err != nil {
		return fmt.Errorf("start re-replication of node %d: %w", node, err)
	}
	res, err := m.kv.CompareAndSwap(ctx, kvclient.CAS{Key: deadKey(node), ExpectAbsent: !found, Expected: cur.Value, NewValue: []byte(id)})
	if err != nil {
		return fmt.Errorf("record re-replication of node %d: %w", node, err)
	}
	if !existing && res.Succeeded {
		m.log.Info("node dead past the timeout: re-replication started", slog.Uint64("dead_node", node), slog.String("instance", id),
			slog.Duration("timeout", m.cfg.DeadNodeTimeout))
	}
	return nil
}

func finished(st workflowpb.Status) bool {
	switch st {
	case workflowpb.Status_STATUS_COMPLETED, workflowpb.Status_STATUS_FAILED, workflowpb.Status_STATUS_TERMINATED, workflowpb.Status_STATUS_COMPENSATED:
		return true
	}
	return false
}
