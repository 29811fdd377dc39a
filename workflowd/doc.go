// Package workflowd is the durable workflow daemon of Pleiades, as an
// importable server (Config, DefaultConfig, Deps, New, Server), with a
// workflow engine in the manner of Workflow Core whose instances live in
// the replicated KV, so that any host's workflowd resumes any instance.
//
// # Definitions
//
// In Go, with package workflow's fluent builder (typed step inputs and
// outputs mapped from and to the instance's data; Then, Task, If/Else,
// While, ForEach sequential or parallel, Parallel, Decide/Branch, Delay,
// WaitFor with event name, key and effective time, Schedule, Recur,
// SubWorkflow, Saga with per-step CompensateWith, End; per-step OnError:
// retry with interval, backoff and max attempts then suspend, terminate or
// compensate), passed in Deps.Definitions or Server.Register. As YAML or
// JSON documents (internal/document: the same control flow over built-in
// steps — set, kv.get/put/cas/delete, http, delay, wait, publish, fail,
// workflow — with expr-lang mapping expressions), registered at run time
// with Define (`pleiades workflows define FILE`) and stored in the KV; a
// malformed document is refused with its line and reason and nothing is
// stored. A definition is identified by id and version; a stored version
// is immutable, and an instance runs to its end on the version it started
// with (every workflowd must know the Go definitions still running).
//
// # Where the state lives, and its cost
//
// Everything is under the daemon system prefix 0x00 "wf/" (kvpb
// WorkflowPrefix; requests carry kvpb.Header.system), which lies in the
// meta range ["", 0x01), so any set of workflow keys changes in one atomic
// Batch:
//
//	wf/i/<id>                  InstanceRecord (workflowpb): data (JSON), execution
//	                           pointers, timers, subscriptions, owner, epoch, lease,
//	                           revision, recent step history
//	wf/f/<id>                  the record's revision: every record write is a Batch
//	                           {compare-and-swap of this key from the revision read,
//	                           put of the record}
//	wf/run/<id>                has work now (started, woken by an event, resumed)
//	wf/due/<time>/<id>         earliest timer of a parked instance
//	wf/sub/<name>\0<key>\0<id> a parked instance waits for this event
//	wf/ev/<name>\0<key>\0<time><eid>  published events
//	wf/ls/<status>/<id>        summaries for List
//	wf/idem/<key>              Start idempotency keys
//	wf/def/<id>\0<version>     definition documents
//	wf/snap                    written by every List (first page) and Counts call:
//	                           its timestamp is the snapshot the call reads at
//	wf/lc/node/<node>          a node's lifecycle state (decommissioning, decommissioned)
//	wf/lc/dead/<node>          the latest re-replication instance of a node
//	wf/lc/rebalance            the latest rebalancing instance
//
// Cost on the meta range: every step is one raft proposal on range 1 (a
// 10-step instance makes about 12 writes: its start, one per step with the
// last one folded into its end, and its end), next to the range
// descriptors; a meta snapshot carries the workflow keys. A List (its
// first page) or Counts (each workflowd's gauge, every CountsInterval)
// adds one small write, of wf/snap, whose timestamp it reads at. Finished
// instances (record, revision, list entry, idempotency key) are deleted
// Retention after their end and published events EventRetention after
// their effective time (both 7 days by default, --retention and
// --event-retention; negative keeps them for ever): every workflowd looks
// every PurgeInterval (10m) and deletes at most 1,000 instances and 10,000
// events a round, one small batch at a time (metric
// pleiades_workflowd_purged_total). A wait reached after its event was
// purged no longer finds it; a Start with a purged instance's idempotency
// key makes a new instance. Workflow
// state competes with descriptor lookups; giving it a range of its own
// (a split at 0x00 "wf/") is later work.
//
// # Execution
//
// An instance is a set of execution pointers (one per thread: a container
// step's body runs under its pointer; an implicit root saga holds the
// whole definition). The workflowd running an instance owns it through a
// lease in its record: the claim is a fenced write that raises the epoch
// and sets the owner and the lease's end; every later write of that owner
// is a compare-and-swap on the revision it last wrote, so once another
// workflowd has claimed the instance (after the lease ran out: another
// epoch), the old owner's writes fail and it stops — even if it wakes up
// late from a pause. A step runs only while the lease has a quarter left
// (else it is renewed first); renewals run every quarter lease while a
// step is in flight. Step results are written before any later step
// starts (one write per step; a finished instance's last result goes with
// its end). Steps run at least once: after a crash or a takeover the step
// in flight runs again, with the same Context.IdempotencyKey
// (<instance>/<pointer>), which built-in HTTP steps send as the
// Idempotency-Key header.
//
// Instances with nothing to do but wait are parked: lease given up, the
// earliest timer in wf/due and each awaited event in wf/sub. Every
// workflowd scans wf/run and the due part of wf/due every PollInterval
// (only what is runnable now is read) and claims what has no live owner:
// a dead owner's instances are taken over once its lease and the max
// clock offset have passed; a restarted workflowd (same node id) takes its
// own back at once. An instance whose next timer is within 2s is kept in
// memory instead of parked. PublishEvent stores the event, then marks the
// subscribers runnable; a wait looks for stored events at or after its
// effective time (default: the instance's creation time, so an event
// published before the wait is reached counts), and a wait in a loop
// never takes the same event twice.
//
// Control: Suspend, Resume and Terminate change a parked instance at once;
// for an owned one they record a request that its owner applies after the
// step in flight (Terminate cancels it). Sub-workflows are instances with
// a parent; a finished child wakes its parent with an internal event.
//
// # Host API, views, metrics
//
// The bus protocol wire.ProtoWorkflow (shared/proto/workflowpb; Go client
// shared/workflowclient): Define, Definitions, Start (optional
// idempotency key), Get, List (by status, definition, creation time,
// paged; each listing is one snapshot of the list index, its pages
// included: the page token carries the snapshot's timestamp and expires
// with the KV's version retention, a few hours), Suspend, Resume,
// Terminate, PublishEvent (optionally addressed to one instance: refused
// when it has finished), and Subscribe, a stream
// of LifecycleEvent (started, step_started, step_completed, step_failed,
// suspended, resumed, completed, terminated, failed, compensated) of the
// instances this workflowd runs. The admin endpoint serves /v1/workflows
// (counts by status, definitions, a page of instances; ?status=
// &definition= &limit= &page=) and /v1/workflows/<id>. Metrics
// (pleiades_workflowd_*): instances by status (from the list index, every
// CountsInterval), instances owned, instances started, steps completed,
// step duration, step retries and failures, lease takeovers, leases lost,
// events published, status transitions.
//
// Built-in HTTP steps connect only to addresses outside Config.HTTPDeny
// (--http-deny; by default loopback, unspecified and link-local, so a
// defined document cannot read the host's admin endpoints or a cloud
// metadata service), checked on the resolved address of every connection,
// redirects included; no proxy is used.
//
// # Cluster lifecycle
//
// Built-in Go definitions (internal/lifecycle) keep the cluster
// replicated without an operator: pleiades.rereplicate replaces, one
// range at a time, the replicas of a node gossip has seen dead for
// DeadNodeTimeout (--dead-node-timeout, 5m), one instance per dead node
// cluster-wide; pleiades.decommission (bus method Decommission, `pleiades
// node decommission`; Cancel true terminates it and clears the mark)
// moves every replica off a node and marks it decommissioned; pleiades.rebalance moves one replica from the fullest
// live node to the emptiest every RebalanceInterval (off by default) when
// their replica counts differ by more than RebalanceThreshold. Each is an
// ordinary instance (listed, shown, resumed by another workflowd after a
// crash); each step re-reads the range descriptors, so a step run again
// finds its work done. Nodes (bus method) lists the nodes with their
// gossip state, replicas and lifecycle state. Every workflowd runs the
// watcher (Deps.Membership, by default its node's gossipd).
//
// HAZARDS: kvpb.Header.system is for node certificates only (raftd
// refuses it to client and admin ones), so workflowd's state is out of
// applications' reach; any client certificate may call every workflow
// method, but one limited to key prefixes only for the definitions (and
// their instances, and event names) under them, and the documents it
// defines keep those prefixes: their kv, publish and workflow steps are
// refused outside them (see authz.go, flow.Def's KeyPrefixes). The
// lifecycle's methods are the exception: Decommission and Nodes take
// admin and node certificates, Start refuses the definitions under
// "pleiades." to everyone, and Suspend, Resume and Terminate of their
// instances refuse client certificates. A Subscribe sees only the instances of
// the workflowd it is sent to (msgd bridges every node's to NATS:
// pleiades.events.workflow.> is the cluster-wide view). A step body that ignores its context keeps
// its instance from stopping or being compensated until it returns.
package workflowd
