// Package events defines the cluster events msgd publishes on NATS: their
// subjects and their JSON schema (version 2). It holds no NATS code, so
// the daemons that produce the underlying bus streams, msgd that bridges
// them and the CLI that tails them (`pleiades events`) share one
// definition.
//
// # Subjects
//
// Every event is published on
//
//	pleiades.events.<source>.<kind>.<id>
//
// where <source>.<kind> is the event's Type and <id> the node id (member,
// clock and disk events) or the range id (range events) it is about, in
// decimal:
//
//	subject                                  type             from
//	pleiades.events.member.join.<node>      member.join      gossipd: a member became alive
//	pleiades.events.member.update.<node>    member.update    gossipd: its metadata or address changed
//	pleiades.events.member.suspect.<node>   member.suspect   gossipd: a probe failed; it may refute
//	pleiades.events.member.dead.<node>      member.dead      gossipd: declared dead
//	pleiades.events.member.leave.<node>     member.leave     gossipd: left gracefully
//	pleiades.events.clock.health.<node>     clock.health     clockd: the node's clock verdict changed
//	pleiades.events.range.leader.<range>    range.leader     raftd: a replica won the range's leadership
//	pleiades.events.range.replica.<range>   range.replica    raftd: a replica of the range was created on a node
//	pleiades.events.range.conf.<range>      range.conf       raftd: the range's voters/learners changed
//	pleiades.events.disk.space.<node>       disk.space       stored: writes refused for want of space, or accepted again
//	pleiades.events.workflow.<kind>.<def>   workflow.<kind>  workflowd: an instance of definition <def> started, a step
//	                                                         started, completed or failed, the instance was suspended,
//	                                                         resumed, completed, terminated, failed or compensated
//
// (<def> is the definition id with '.', '*', '>' and white space as '_'.)
//
// Subscribe to pleiades.events.> for everything, pleiades.events.member.>
// for membership, pleiades.events.*.*.7 for what concerns node (or range) 7.
//
// # Schema
//
// The payload is one JSON object (Event): the envelope fields v, id, type,
// time, reporter and node_id, plus exactly one of member, clock, range,
// disk or workflow carrying the details. schema.json in this directory is the JSON Schema
// (draft 2020-12) of the same object. Fields are only ever added within a
// version; consumers must ignore fields they do not know. Every id (node,
// range, replica, in voters and learners too) is a decimal string, as
// protobuf's JSON mapping writes 64-bit integers: node ids are random
// 64-bit numbers, which JavaScript and jq would round as JSON numbers.
// Version 1 wrote them as numbers.
//
// # Delivery
//
// Events are core NATS messages: at most once, to the subscribers present
// when they are published. The same occurrence may be published twice
// (for instance a membership change while two msgd disagree on which of
// them reports membership); both copies carry the same id, so a consumer
// that cares deduplicates on it. With JetStream, msgd also keeps them in
// the stream Stream (PLEIADES_EVENTS, 24h by default), one copy per id
// (Nats-Msg-Id), for consumers that read a past window (`pleiades events
// --since 1h`) or must not miss one while away. Each msgd bridges the
// events of its own node's daemons (clockd, raftd, stored, workflowd);
// membership, which every gossipd sees,
// is published by one msgd: the live member with the lowest node id whose
// msgd advertises a route, other than the member the event is about.
package events
