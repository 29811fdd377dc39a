package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/logkey"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// Why a node's replicas move.
const (
	reasonDead         = "dead"
	reasonDecommission = "decommission"
)

// recentMoves is how many moves an instance's data lists.
const recentMoves = 10

// moveData is the data of the re-replication and decommission
// instances: what they did and, while they cannot go on, why.
type moveData struct {
	Node   uint64 `json:"node"`
	Reason string `json:"reason"`
	// Moved counts the replicas moved off the node; Recent lists the
	// last ones ("range 7: node 4 -> node 2").
	Moved  int      `json:"moved"`
	Recent []string `json:"recent,omitempty"`
	// Waiting says why the last attempt moved nothing (empty once a move
	// succeeds); the instance tries again RetryInterval later.
	Waiting  string `json:"waiting,omitempty"`
	Attempts int    `json:"failed_attempts,omitempty"`
	Done     bool   `json:"done"`
	Outcome  string `json:"outcome,omitempty"`
}

func (d *moveData) record(move string) {
	d.Moved++
	d.Recent = append(d.Recent, move)
	if len(d.Recent) > recentMoves {
		d.Recent = slices.Delete(d.Recent, 0, len(d.Recent)-recentMoves)
	}
	d.Waiting, d.Attempts = "", 0
}

func (d *moveData) wait(format string, args ...any) {
	d.Waiting = fmt.Sprintf(format, args...)
	d.Attempts++
}

// moveDefinition is the workflow that moves every replica off a node,
// one range at a time: re-replication (reason dead) or decommission.
// Each "move one" step re-reads the descriptors, so a step that runs
// again (after a crash or a takeover) finds its work done and goes on.
func (m *Manager) moveDefinition(id, reason string) *workflow.Definition {
	desc := "replaces every replica of a node dead past the dead-node timeout"
	if reason == reasonDecommission {
		desc = "moves every replica off a node, then marks it decommissioned"
	}
	b := workflow.New[moveData](id, definitionVersion).Description(desc)
	if reason == reasonDecommission {
		b.Then("mark decommissioning", func(ctx context.Context, c *workflow.Context, d *moveData) error {
			return m.setNodeState(ctx, d.Node, nodeState{State: StateDecommissioning, Instance: c.InstanceID})
		})
	}
	b.While("move replicas", func(d *moveData) bool { return !d.Done }, func(s *workflow.Seq[moveData]) {
		s.Then("move one", m.moveOne).
			If("cannot move", func(d *moveData) bool { return !d.Done && d.Waiting != "" }, func(s *workflow.Seq[moveData]) {
				s.Delay("wait and retry", func(*moveData) time.Duration { return m.cfg.RetryInterval })
			})
	})
	if reason == reasonDecommission {
		b.Then("mark decommissioned", func(ctx context.Context, c *workflow.Context, d *moveData) error {
			return m.setNodeState(ctx, d.Node, nodeState{State: StateDecommissioned, Instance: c.InstanceID})
		})
	}
	// A step error is a failure to reach the KV (its own failures go to
	// Waiting): retry for ever, at most a minute apart.
	b.DefaultErrorPolicy(workflow.ErrorPolicy{Behavior: workflow.Retry, Interval: m.cfg.RetryInterval, Backoff: 2, MaxInterval: time.Minute})
	return b.MustBuild()
}

// moveOne moves replicas off d.Node, up to MoveConcurrency ranges at
// once (for each: add a replica on another node, which is promoted to
// voter once caught up, and remove the node's, in one joint
// configuration), or finds nothing left to move (Done), or says why it
// cannot now (Waiting). Failures of the cluster are recorded in Waiting
// rather than returned: the loop tries again, at once while some move
// succeeded, after RetryInterval when none did.
func (m *Manager) moveOne(ctx context.Context, _ *workflow.Context, d *moveData) error {
	v, err := m.look(ctx)
	if err != nil {
		d.wait("%v", err)
		return nil
	}
	if d.Reason == reasonDead && v.alive(d.Node) {
		d.Done, d.Outcome, d.Waiting = true, fmt.Sprintf("node %d is alive again: its remaining replicas stay", d.Node), ""
		return nil
	}
	if d.Reason == reasonDead && v.states[d.Node].State != "" {
		d.Done, d.Outcome, d.Waiting = true, fmt.Sprintf("node %d is %s: its decommission moves its replicas", d.Node, v.states[d.Node].State), ""
		return nil
	}
	type plan struct {
		rangeID uint64
		ch      kvclient.ReplicaChange
		move    string
		err     error
	}
	var plans []*plan
	var stuck string
	held := 0
	for _, rd := range v.descs {
		r := replicaOn(rd, d.Node)
		if r == nil {
			continue
		}
		held++
		if len(plans) == m.cfg.MoveConcurrency {
			continue
		}
		p := &plan{rangeID: rd.GetRangeId(), ch: kvclient.ReplicaChange{Remove: []uint64{d.Node}},
			move: fmt.Sprintf("range %d: node %d removed (a learner)", rd.GetRangeId(), d.Node)}
		if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_LEARNER {
			to := v.target(rd, d.Node)
			if to == 0 {
				if stuck == "" {
					stuck = fmt.Sprintf("range %d: no live node can take node %d's replica (live nodes that may take replicas: %s; the range has %d replicas)",
						rd.GetRangeId(), d.Node, nodeList(v.usableNodes()), len(rd.GetReplicas()))
				}
				continue
			}
			v.counts[to]++ // the next range's target sees this one's
			p.ch.Add = []uint64{to}
			p.move = fmt.Sprintf("range %d: node %d -> node %d", rd.GetRangeId(), d.Node, to)
		}
		plans = append(plans, p)
	}
	if held == 0 {
		d.Done, d.Waiting = true, ""
		d.Outcome = fmt.Sprintf("node %d holds no replica: %d moved", d.Node, d.Moved)
		return nil
	}
	var wg sync.WaitGroup
	for _, p := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, m.cfg.ChangeTimeout)
			defer cancel()
			_, p.err = m.kv.ChangeReplicas(cctx, p.rangeID, p.ch)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	moved := false
	for _, p := range plans {
		if p.err == nil {
			d.record(p.move)
			moved = true
		} else if stuck == "" {
			stuck = fmt.Sprintf("%s: %v", p.move, p.err)
		}
	}
	if !moved {
		d.wait("%s", stuck)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Rebalancing by replica count.

// rebalanceData is the data of a rebalancing instance: one move.
type rebalanceData struct {
	Range   uint64 `json:"range"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Outcome string `json:"outcome,omitempty"`
}

// rebalanceDefinition moves one replica from the fullest node to the
// emptiest; the watcher starts one such instance at a time.
func (m *Manager) rebalanceDefinition() *workflow.Definition {
	b := workflow.New[rebalanceData](DefRebalance, definitionVersion).
		Description("moves one replica from the node with the most replicas to the one with the fewest")
	b.Then("move", func(ctx context.Context, _ *workflow.Context, d *rebalanceData) error {
		v, err := m.look(ctx)
		if err != nil {
			return err
		}
		rd := v.descriptor(d.Range)
		switch {
		case rd == nil:
			d.Outcome = fmt.Sprintf("range %d is gone", d.Range)
			return nil
		case replicaOn(rd, d.To) != nil && replicaOn(rd, d.To).GetType() == kvpb.ReplicaType_REPLICA_TYPE_VOTER && replicaOn(rd, d.From) == nil:
			d.Outcome = "moved"
			return nil
		case replicaOn(rd, d.From) == nil || !v.usable(d.To):
			d.Outcome = "the cluster changed: nothing to do"
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.ChangeTimeout)
		defer cancel()
		if _, err := m.kv.ChangeReplicas(cctx, d.Range, kvclient.ReplicaChange{Add: []uint64{d.To}, Remove: []uint64{d.From}}); err != nil {
			return err
		}
		d.Outcome = "moved"
		return nil
	}).OnError(workflow.RetryPolicy(m.cfg.RetryInterval, 2, 3, workflow.Terminate))
	return b.MustBuild()
}

func (v *view) descriptor(id uint64) *kvpb.RangeDescriptor {
	for _, d := range v.descs {
		if d.GetRangeId() == id {
			return d
		}
	}
	return nil
}

// rebalanceMove plans one move by replica count: from the usable node
// with the most replicas to the one with the fewest, when they differ by
// more than threshold, of a range the emptiest does not hold; ok false
// when the cluster is balanced or no range can move. Nodes that are not
// usable (dead, suspect, decommissioning) take no part.
func (v *view) rebalanceMove(threshold int) (rangeID, from, to uint64, ok bool) {
	nodes := v.usableNodes()
	if len(nodes) < 2 {
		return 0, 0, 0, false
	}
	slices.SortStableFunc(nodes, func(a, b uint64) int { return v.counts[a] - v.counts[b] })
	to, from = nodes[0], nodes[len(nodes)-1]
	if v.counts[from]-v.counts[to] <= threshold {
		return 0, 0, 0, false
	}
	for _, d := range v.descs {
		r := replicaOn(d, from)
		if r == nil || replicaOn(d, to) != nil || r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER || !allVoters(d) {
			continue
		}
		return d.GetRangeId(), from, to, true
	}
	return 0, 0, 0, false
}

// allVoters reports whether a range is in a plain configuration.
func allVoters(d *kvpb.RangeDescriptor) bool {
	for _, r := range d.GetReplicas() {
		if r.GetType() != kvpb.ReplicaType_REPLICA_TYPE_VOTER {
			return false
		}
	}
	return true
}

// rebalanceKey holds the id of the latest rebalancing instance.
func rebalanceKey() []byte { return lcKey("lc/rebalance") }

// startRebalance starts one rebalancing move when the previous one has
// finished, no node is being replaced or decommissioned, and the counts
// differ by more than the threshold. Every workflowd may call it at
// once: the idempotency key follows the previous instance's id.
func (m *Manager) startRebalance(ctx context.Context) error {
	cur, found, err := m.kv.Get(ctx, rebalanceKey())
	if err != nil {
		return fmt.Errorf("read rebalancing: %w", err)
	}
	prev := ""
	if found {
		prev = string(cur.Value)
		if st, err := m.eng.Status(ctx, prev); err == nil && !finished(st) {
			return nil
		}
	}
	v, err := m.look(ctx)
	if err != nil {
		return err
	}
	for id, mb := range v.members {
		if deadFor(mb, m.now()) > 0 && v.counts[id] > 0 {
			return nil // re-replication first
		}
	}
	for _, st := range v.states {
		if st.State == StateDecommissioning {
			return nil
		}
	}
	rangeID, from, to, ok := v.rebalanceMove(m.cfg.RebalanceThreshold)
	if !ok {
		return nil
	}
	data, err := json.Marshal(rebalanceData{Range: rangeID, From: from, To: to})
	if err != nil {
		return err
	}
	id, existing, err := m.eng.Start(ctx, DefRebalance, data, DefRebalance+"/after/"+prev)
	if err != nil {
		return fmt.Errorf("start rebalancing: %w", err)
	}
	if _, err := m.kv.CompareAndSwap(ctx, kvclient.CAS{Key: rebalanceKey(), ExpectAbsent: !found, Expected: cur.Value, NewValue: []byte(id)}); err != nil {
		return fmt.Errorf("record rebalancing: %w", err)
	}
	if !existing {
		m.log.Info("rebalancing: moving one replica", slog.Uint64(logkey.Range, rangeID), slog.Uint64("from_node", from), slog.Uint64("to_node", to),
			slog.String("instance", id))
	}
	return nil
}
