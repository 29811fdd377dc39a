// Package tlsutil makes and loads the TLS material of the Pleiades bus: a
// cluster CA, certificates signed by it that each name a role, and the
// mutual TLS 1.3 configuration every bus endpoint uses for both listening
// and dialing.
//
// # Roles
//
// Every certificate the cluster CA issues carries exactly one role, as a
// URI SAN (see Role, ParseRole, RoleOf):
//
//	pleiades://node/<id>                     a node: one per host, its daemons; <id> is the node id
//	pleiades://client[?prefix=P&prefix=Q...] an application (KV, workflows), optionally limited to
//	                                         keys starting with one of the (query-escaped) prefixes
//	pleiades://admin                         an operator: init, ranges, status, store maintenance
//
// A certificate without such a URI (issued before roles existed) has
// KindNone and may call nothing; one with two is unreadable and treated
// alike. What each role may call is decided per bus method by the daemons'
// tables (bus.Rules), not here. PeerRole reads the role of a connection's
// peer (the bus and msgd's NATS alike); RequirePeer makes a TLS
// configuration refuse, in the handshake, peers of other kinds (msgd's
// NATS routes: nodes only). Only node certificates are valid as TLS
// servers (they carry ServerName); client and admin certificates
// authenticate callers only.
//
// # Files
//
// A certificates directory holds ca.crt and, for each role it has,
// node.crt/node.key, client.crt/client.key, admin.crt/admin.key (Files).
// Keys are written mode 0600 and refused at load (LoadKind) when group or
// others may read them. CreateCA writes ca.crt and ca.key; CreateNode,
// CreateClient, CreateAdmin and CreateLeaf write a certificate, its key
// and a copy of ca.crt, never the CA key, valid for LeafValidity (a year)
// unless told otherwise. Every node certificate is valid for server and
// client authentication and carries ServerName as a DNS name; clients
// verify peers against that name and the cluster CA, so bus addresses may
// be bare IPs. A certificate from any other CA is refused on both sides.
//
// CreateCA, CreateNode, CreateClient, CreateAdmin and CreateLeaf are what
// `pleiades cert` runs. EnsureDev is the development shortcut (--dev,
// `pleiades up --dev`): it creates whatever is missing in one directory
// from a dev CA kept beside it (DevCADir: the CA key is never in a node's
// certificates directory; `pleiades dev` keeps its CA in a directory of its
// own too), issues the node certificate again when it does not carry the
// node's id, adds an admin certificate for the CLI, and is safe when
// several daemons of one node start at once. NewTestCA gives tests an
// in-memory CA.
//
// # Rotation
//
// Reloader keeps a directory's certificate current: its TLS configuration
// asks it for the certificate at each handshake, so a certificate rotated
// in place (`pleiades cert rotate`) serves new connections after Reload
// while live connections keep theirs. A reload keeps the current
// certificate when the new one names another role or is not valid now.
package tlsutil
