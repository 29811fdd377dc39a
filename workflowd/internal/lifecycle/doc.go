// Package lifecycle holds workflowd's built-in cluster lifecycle
// workflows, which keep ranges replicated and balanced without an
// operator, and the watcher that starts them.
//
// Re-replication (pleiades.rereplicate): every workflowd looks at gossip
// membership every CheckInterval; a node dead (or left) in its view for
// DeadNodeTimeout that range descriptors still name gets one instance,
// cluster-wide: the latest instance's id is kept at 0x00 "wf/lc/dead/<node>"
// and the next one starts with the idempotency key
// "pleiades.rereplicate/<node>/after/<previous id>", the same on every
// workflowd, so the engine starts it once. The instance loops over one
// step, "move one": it re-reads the descriptors (linearizable), takes the
// first MoveConcurrency ranges naming the node and replaces each one's
// replica with one on a live node that holds none of the range — a
// learner left there by an interrupted change first, else the node with
// the fewest replicas, counting the step's other moves — by one
// ChangeReplicas call each, run at once (raftd adds a learner, waits for
// its snapshot, then promotes it and removes the dead replica in one
// joint configuration). A step that runs again after a crash or a
// takeover finds its ranges moved and goes on. When no live node can take a
// replica (three nodes, one dead) or a change fails, the data's "waiting"
// field says why and the instance retries RetryInterval later. A node
// that comes back alive ends the instance; one that comes back before the
// timeout never starts one.
//
// Decommission (pleiades.decommission, started by Manager.Decommission,
// the admin bus method Decommission and `pleiades node decommission`):
// refused for an unknown node or when fewer live nodes than a range's
// replicas would be left; marks the node decommissioning at 0x00
// "wf/lc/node/<node>" (placement leaves it out, re-replication leaves it
// to the decommission), moves every replica off it with the same step
// (raftd hands the leadership of a range the node leads to another voter
// before removing it), then marks it decommissioned. CancelDecommission
// terminates a decommission under way and clears the mark (the record
// keeps the instance id, which the next decommission's idempotency key
// follows); the replicas already moved stay where they are. On a node
// already decommissioned it clears the mark, so the node is back in
// service.
//
// Rebalancing (pleiades.rebalance, when RebalanceInterval is set): every
// RebalanceInterval, when no node is being replaced or decommissioned and
// the previous move has finished, one replica moves from the live node
// with the most replicas to the one with the fewest if they differ by
// more than RebalanceThreshold; one instance at a time, keyed as above.
//
// HAZARDS: liveness is each workflowd's own gossip view; a gossipd that
// restarted forgets members that died before, so a node the descriptors
// name that the view does not list at all also counts as dead once it has
// been missing for DeadNodeTimeout (timed from when this workflowd first
// saw it missing: a workflowd restart starts the wait again). Replica
// counts are the only balance criterion (no sizes, no load, no locality).
package lifecycle
