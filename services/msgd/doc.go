// Package msgd is the application messaging daemon of Pleiades, as an
// importable server (Config, DefaultConfig, Deps, New, Server): an
// embedded NATS server (github.com/nats-io/nats-server/v2 v2.15.3) on each
// host, clustered with the other hosts' msgd through gossip, with
// JetStream, and the bridge that publishes the cluster's own events on
// NATS. Applications use the standard NATS clients (nats.go v1.56.0 for
// Go); nothing here changes NATS's protocol or semantics.
//
// # Listeners and security
//
// Clients connect to NATSHost:NATSPort (default 127.0.0.1:4222), other
// msgd to NATSHost:NATSClusterPort (6222). Routes always use mutual TLS
// with the node's certificate from the cluster CA (Deps.TLS, the bus's),
// and take node certificates only: a client, admin or role-less
// certificate of the same CA fails the route's TLS handshake, whichever
// side dials (tlsutil.RequirePeer, reading the role as the bus does), so
// only the cluster's nodes can route and see or inject its traffic.
// Clients use plain TCP, TLS with the node certificate (ClientTLS on:
// verify the server with the cluster CA, server name node.pleiades or the
// host's address) or TLS with client certificates from the cluster CA
// (verify): node, admin and client certificates, not one without a role.
//
// Under verify without an AuthFile, the certificate's role is the
// client's identity and sets its NATS permissions (the user NATS reports
// is the certificate's common name):
//
//   - node and admin certificates may do everything;
//   - a client certificate without key prefixes may do everything but
//     publish the cluster's events (pleiades.events.>, msgd's alone);
//   - a client certificate limited to key prefixes may publish and
//     subscribe on the subjects of its prefixes, subscribe to its reply
//     inboxes _INBOX.<subject>.> (nats.go: CustomInboxPrefix
//     "_INBOX.<subject>"; the default inbox _INBOX.<random> is refused,
//     as it would see every client's replies), and answer the requests it
//     receives (one reply each, within two minutes: NATS's
//     allow_responses). Nothing else: no JetStream API, no cluster events,
//     no other application's subjects.
//
// A key prefix is mapped to subjects by reading '/' as the subjects'
// token separator '.': a prefix ending in '/' allows every subject below
// it ("app1/" → "app1.>", "app1/orders/" → "app1.orders.>"); one without
// allows that subject and those below it ("app1" → "app1" and "app1.>";
// not "app1x", which the key prefix covers but a NATS permission cannot
// name). A prefix with an empty segment, a '.', '*', '>', a space or
// control character, or invalid UTF-8, or whose first segment starts
// with '$' (JetStream, system) or '_' (inboxes) or is "pleiades" (the
// cluster's events), maps to no subjects; a client whose prefixes all map
// to none connects and can only answer requests. So the same certificate
// limits an application alike in the KV, in workflowd and on NATS.
//
// AuthFile is a NATS configuration file whose authorization block lists
// users (plain or bcrypt passwords) and nkeys with NATS permissions; a
// token or accounts are refused. With an AuthFile, its users and their
// permissions decide what a connection may do, certificates or not (under
// verify a client still needs a certificate with a role). SIGHUP
// (Server.Reload) re-reads the file and gives NATS the new users through
// a configuration reload: removed users' live connections are closed; a
// file that fails to load keeps the current users. The server is named
// ServerName(node id), "node-<id>", stable across restarts as JetStream
// requires; the cluster is named ClusterName ("pleiades").
//
// # Routes from gossip
//
// msgd publishes in its node's gossip metadata its bus address (key
// "msgd"), its route address ("msgd-route") and its client address
// ("msgd-client"), then follows gossipd's membership: on each event (and
// every RefreshInterval) its routes become the route addresses of the
// alive and suspect members, plus the static Routes, plus its own
// address (NATS skips a route to itself; the same list on every server is
// NATS's usual configuration). The route list changes through NATS's
// configuration reload (Server.ReloadOptions): new routes are dialled,
// removed ones closed and not redialled, without restarting the server or
// dropping clients. So a host that joins is routed to, one declared dead
// or gone is dropped, one that returns is routed again. On Stop msgd
// withdraws its metadata, so the others drop it at once; after a crash
// the others keep dialling it until gossip declares the node dead or it
// returns. A wildcard NATSHost publishes no route address unless
// AdvertiseHost is set.
//
// # Readiness, status, monitoring
//
// The "msgd" ready check passes when NATS accepts clients and has a route
// to every msgd gossip lists as alive or suspect (routes from static
// Routes alone are not waited for). /v1/status lists the nats and
// nats-cluster addresses. NATS's monitoring views are served on msgd's
// admin endpoint, with NATS's query parameters and JSON, at
// /v1/nats/{varz,connz,routez,subsz,accountz,jsz,healthz,raftz}; no NATS
// monitoring port is opened. Metrics: pleiades_msgd_routes,
// pleiades_msgd_reloads_total, pleiades_msgd_reload_errors_total,
// pleiades_msgd_events_published_total{source},
// pleiades_msgd_event_source_errors_total{source}.
//
// # JetStream
//
// JetStream (on by default) stores under DataDir/jetstream (the node's
// <data-dir>/msgd/jetstream) on files, within JetStreamMaxStore (8 GiB)
// of file-backed and JetStreamMaxMemory (256 MiB) of memory-backed stream
// data per server; MaxPayload (1 MiB) bounds a message. With clustering
// (the default) JetStream runs clustered from the start: its meta group
// (which places streams and consumers) elects a leader once a quorum of
// its expected size is routed (2 for a new cluster whose msgd start one
// by one, as NATS sizes it from the routes it starts with) and grows as
// msgd join. A stream with 3 replicas needs 3 routed msgd and survives
// the loss of one. Membership changes: a msgd that dies or is stopped
// stays a member of the meta group and of its streams' groups, offline,
// so that it can return with its data and catch up; a host retired for
// good must be removed from JetStream by the operator (NATS's
// $JS.API.SERVER.REMOVE, e.g. `nats server raft peer-remove`), after which
// its stream replicas are placed elsewhere. msgd does not remove peers by
// itself: gossip cannot tell a long outage from a retirement. A lone
// msgd with clustering on therefore has no JetStream yet (its meta group
// waits for a second msgd); for a single host for good, NoCluster
// (--nats-no-cluster) runs one server alone, JetStream standalone.
//
// # Cluster events
//
// msgd publishes the cluster's events on pleiades.events.> as JSON (see
// package shared/events for the subjects and schema), bridged from its
// node's daemons' bus streams, so no other daemon depends on NATS:
// gossipd's Subscribe (membership: join, update, suspect, dead, leave;
// published only by the lowest-id alive msgd other than the member
// concerned), clockd's WatchHealth (the node's clock health verdicts),
// raftd's WatchRanges (a replica of this node won its range's
// leadership; a replica was created here; a conf change, from the
// leader), stored's WatchDisk (disk.space: writes refused for want of
// disk space, or accepted again; --store-addr), workflowd's Subscribe
// (workflow.*: lifecycle events of the instances the node's workflowd
// runs, subject pleiades.events.workflow.<kind>.<definition>;
// --workflow-addr). Each source is one entry of Server.sources; a broken
// stream is reopened with backoff (100ms doubling to 5s). Events
// are core NATS messages (at most once, to the subscribers present;
// duplicates carry the same id) and, with JetStream, are also kept in the
// stream PLEIADES_EVENTS (shared/events.Stream; file storage, replicas up
// to 3 as msgd join and never lowered, EventsMaxAge 24h, EventsMaxBytes
// 256 MiB): each is published with its id as Nats-Msg-Id, so the stream
// keeps one copy of an occurrence published twice; `pleiades events
// --since` replays it. Events published before JetStream answers (a
// clustered msgd waits for a quorum of its meta group) or while the
// stream's group changes (its replicas raised) may not be kept. When
// clients authenticate (an AuthFile, or certificates under verify), the
// bridge connects in process with an nkey made at start, allowed to
// publish pleiades.events.> and keep the events stream only.
//
// # Concurrency
//
// Start runs the NATS server, then one goroutine following gossip and one
// per event source; Stop cancels and waits for them, withdraws the gossip
// metadata, then shuts NATS down (closing client connections). NATS
// reloads are serialized by reloadMu; Server.mu guards the route state.
package msgd
