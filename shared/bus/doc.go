// Package bus is the Pleiades inter-daemon transport: QUIC (quic-go) with
// mutual TLS 1.3 and protobuf messages framed by package wire.
//
// # Endpoint
//
// A Bus owns one UDP socket and one quic.Transport, used both to accept
// connections and to dial peers (and, unless Config.DisableTCP, a TCP
// listener on the same address and port for large calls: see "Large
// calls over TCP"), so a peer's source address is also the
// address to call it back on (Peer.Addr). TLS comes from Config.TLS (see
// package tlsutil): both sides present a certificate of the cluster CA and
// negotiate ALPN "pleiades/1". Client session tickets are cached per peer
// address (every node certificate has the same server name, the key
// crypto/tls would use, so one shared key would keep only the last peer's
// ticket), so a reconnect to any peer resumes the TLS session instead of
// running a full handshake.
//
// 0-RTT is deliberately off. 0-RTT data can be replayed by an attacker on
// the path, and the first stream of a connection may be any call, including
// non-idempotent ones; resumption without 0-RTT still saves the certificate
// exchange and signature work, which is the larger part of a handshake's cost
// on loopback and LAN links.
//
// The transport's stateless reset key is derived from the node's private
// key, so a node restarted on the same address answers packets of its old
// connections with a stateless reset and peers drop them at once instead of
// waiting for the idle timeout.
//
// # Connections
//
// The Bus keeps a small fixed set of dialed connections per peer address
// (connsPerPeer, 4); a call takes the first unless spreadAt (16) uses are
// in flight on it, then the least loaded; batch streams and datagrams use
// the first. One connection would be simpler, but quic-go processes a
// connection on one goroutine per side, which capped 64 concurrent callers
// at about half the TCP baseline for small calls and a third for 4 KiB ones
// (see shared/BENCHMARKS.md). Each connection slot is dialed on demand: the
// first caller dials; concurrent callers wait for that dial (single flight). A
// failed dial starts a backoff, from RedialBackoffMin doubling up to
// RedialBackoffMax (jittered, see shared/backoff), during which calls to
// that peer fail fast with the dial's error; a dead connection is dropped
// and the next call redials.
//
// # Failed dials
//
// A dial fails in one of three ways, which callers can tell apart:
//
//   - Nothing listens at the address (the daemon is down): over TCP that is
//     "connection refused"; over UDP it is an ICMP port unreachable, which
//     Linux reports only to connected sockets, while QUIC shares one
//     unconnected socket: quic-go never hears it and the handshake would
//     wait out DialTimeout. So each dial also sends one empty datagram from
//     a connected socket of its own (QUIC ignores empty datagrams); when the
//     host answers port unreachable, the dial ends at once with
//     CodeUnavailable and reason ReasonNoListener. Without an answer (a
//     firewall, a lost ICMP) the dial waits as before.
//   - The TLS handshake fails (a certificate of another cluster CA, say):
//     CodeUnauthenticated, which retrying will not change. With TLS 1.3 a
//     server's refusal of the client's certificate arrives after the
//     client's handshake completed, on its first stream, so a call's stream
//     error can carry CodeUnauthenticated too.
//   - Anything else (the timeout): CodeUnavailable.
//
// # Idle connections
//
// A dialed connection closes once no application traffic has used it for
// IdleTimeout: no unary or stream call in flight or started, no batch sent,
// no datagram sent or received on it. QUIC keep-alives (KeepAlivePeriod) do
// not count; they only keep a connection that is in use from being dropped
// by NATs or by the peer's QUIC idle timeout between calls. Without the
// reaper a node would keep a connection to every peer it ever called open
// for good, paying keep-alives on each. One goroutine, stopped by Stop,
// checks the connection slots every IdleTimeout/4, so a connection closes
// between IdleTimeout and 1.25*IdleTimeout after its last use. It closes
// with a CONNECTION_CLOSE (application code 2, reason "idle"), so the peer
// drops its end at once. The next use redials, resuming the TLS session.
// pleiades_bus_idle_closes_total counts these closes.
//
// Every call, batch send and datagram send marks its slot in use before
// taking the slot's connection and until it ends (a server stream until
// its last Recv or Close, however long it is silent). The reaper empties a
// slot only while nothing uses it, under the slot's lock, so a use racing
// with it either keeps the connection open or finds the slot empty and
// redials; no caller sees an error caused by an idle close.
//
// A long-lived batch stream with no batch for IdleTimeout counts as idle:
// its connection closes with the stream, and the next SendBatch redials
// and opens a new stream, as after any error. Accepted connections are not
// reaped by their acceptor: the dialer closes them, or the QUIC idle
// timeout does when the dialer is gone.
//
// # Shapes
//
// Streams start with the wire preamble (magic, version, protocol id)
// followed by frames (4-byte length, protobuf body) holding buspb envelope
// messages:
//
//   - Unary: the caller sends a Request (method, deadline, payload) and
//     reads one Response (code, message, leader hint, reason, payload), on
//     the calls stream of the connection (below). A request over 16 KiB
//     goes over TCP (see "Large calls over TCP"); one over 64 KiB that
//     cannot, or any
//     request to a peer that refused calls streams, opens a stream of its
//     own instead: Request, Response, then the caller closes its side,
//     which tells the handler the answer arrived.
//   - Server stream: a Request, then Responses; the last has end set and
//     carries the handler's error code, if any.
//   - One-way batches: SendBatch keeps one long-lived stream per (peer,
//     protocol, method); each call writes one Batch frame, the receiver calls
//     the handler once per frame, in order. Concurrent senders are
//     serialized. After an error the stream is dropped and the next call
//     opens a new one. Between two buses, batches both ways travel on the
//     connection dialed by the one whose address sorts lower (the other
//     sends on the connection it accepted, dialing only while there is
//     none), so each direction's packets carry the other's
//     acknowledgements: raftd's put at one client went from 16.5 to 14.7
//     UDP datagrams per put.
//   - Datagrams: a QUIC datagram holding the preamble then the payload
//     (at most MaxDatagramPayload bytes), dispatched by protocol.
//
// # Calls streams
//
// Each dialed connection carries its unary calls on one long-lived
// bidirectional stream, opened by the first call, whose preamble names
// wire.ProtoCalls. Every Request on it carries a call_id (unique on the
// stream while the call runs) and the method's protocol; the Response
// carries the call_id back. The handler side reads the stream on one
// goroutine and runs each call on a goroutine of its own, so answers come
// back in the order handlers finish. A caller that gives up sends a Request
// with cancel set and the call_id; the handler's context is cancelled and
// its answer, if any, dropped. An unknown method or protocol is answered
// with CodeUnimplemented for that call alone; a malformed frame or one
// over MaxFrameSize resets the stream (its calls fail; the next call opens
// a new one), the connection keeps serving.
//
// Why: a stream per call cost, on top of its request and response, the
// acknowledgement of each, a MAX_STREAMS frame in a packet of its own once
// the stream was retired, and that frame's acknowledgement, plus a stream
// with its flow controller and frame sorter allocated on both sides. On the
// raftd benchmark with 16 ranges this took datagrams per put from 5.8 to
// 4.1 (see raftd/BENCHMARKS.md). Concurrent writers to one stream go
// through a combining writer: the goroutine that finds no write in progress
// yields once, so that goroutines made ready together with it (the answers
// of one raft round, callers woken together) queue their frames, then
// writes everything queued in one Write, usually one packet. That took
// raftd's puts at 64 clients from 3.4 to 1.8 datagrams each and its
// linearizable gets from 2.5 to 0.8.
//
// A peer of an older build refuses the calls stream as an unknown
// protocol (CodeInvalidArgument); the caller remembers that for the
// connection and sends its calls on streams of their own.
//
// Draining: Stop waits for running handlers, then closes the send side of
// every calls stream after the answers queued on it, and waits (up to 2s
// or its ctx) for each caller to close its side, which a caller does when
// it reads the end; calls still waiting then fail with CodeUnavailable
// ("peer stopping"); their requests were not served.
//
// The caller's deadline travels in the Request as absolute Unix time (so
// the handler's view of it is off by the clock skew between the nodes); the
// handler's context expires then, and is cancelled when the caller gives up (the caller
// resets the stream) or when Stop gives up waiting. A request whose deadline
// has passed when the server reads it (it waited in a socket or a stream's
// buffer, or the server was paused) is answered DeadlineExceeded and its
// handler never runs: nobody waits for that work, and a write done then
// could surprise a caller that has retried it meanwhile.
//
// # Local sockets
//
// Two daemons of one host (raftd and its stored) can skip QUIC for their
// unary calls. The callee's ListenLocal names a Unix domain socket that
// Start listens on (mode 0600, in a directory the daemon owns; a stale
// socket file is replaced, a file that is not a socket or a socket
// another process answers on fails Start; Stop removes it). The caller's
// AddLocalPeer says that the bus address addr is also reachable at that
// path. A unary call to addr then goes over the socket: a calls stream
// (above; same frames, call ids, cancel frames, combining writer) on a
// TLS 1.3 connection with the bus's own TLS configuration and ALPN, so
// the handler's Peer (Name, Role) comes from the verified certificate as
// on QUIC and authorization is unchanged; Peer.Addr is "unix:" and the
// socket path (not an address to call back on). Requests over 64 KiB go
// over the socket too, on connections of their own (see "Large calls over
// TCP": the same pool, with the socket in place of TCP); server streams,
// batches and datagrams stay on QUIC.
//
// Why: a QUIC call crosses quic-go's send, transport read and connection
// loops on both sides, each a goroutine handoff; on raftd's synced
// 100-op log write to stored these handoffs cost about 0.37 ms of
// scheduler delay per call. On the socket a call crosses the caller's
// writer, the server's reader, the handler and back. Small calls ran
// 1.1-2x the rate of QUIC's, stored's synced batch at one caller went
// from 0.76 to 0.59 ms and raftd's put at one client from 349 to 408 per
// second (shared/BENCHMARKS.md, run of 2026-12-07, night; raftd/
// BENCHMARKS.md, "Local socket to stored").
//
// The caller keeps up to connsPerPeer connections per socket, picked as
// QUIC connections are (the first until spreadAt calls are in flight on
// it), each dialed on first use (single flight). When the socket cannot
// be reached (the peer is down, or runs a build without it) the call
// takes QUIC at once and the socket is tried again after the redial
// backoff (RedialBackoffMin doubling to RedialBackoffMax); the first
// failure is logged at warn. A socket connection stays open until it
// fails or a bus stops: it costs one goroutine on each side and no
// packets while unused, so the idle reaper leaves it alone.
//
// A Unix socket has no stream reset: where QUIC resets a calls stream (a
// malformed frame, one over MaxFrameSize) the server writes a Response
// with call id 0 and the code a QUIC caller would get (CodeInternal,
// CodeResourceExhausted), then closes the connection; every call waiting
// on it fails with that error, the next call dials again. Draining on Stop is as for QUIC calls streams: the server's
// close_notify after the queued answers, then the caller's.
//
// # Large calls over TCP
//
// TCP on the same port carries large calls. Start binds, beside the UDP
// socket, a TCP listener at the same address and port (with port 0 it
// looks for a port free for both; when the TCP port is taken, the bus
// runs without TCP and logs it at warn: its peers' large calls take
// QUIC). A unary call whose encoded
// request is over 16 KiB (tcpCallMin) goes on a calls stream (above;
// the same frames and code as a local socket's) over TLS 1.3 on TCP to
// the peer's bus address, with the bus's TLS configuration and ALPN: the
// handler's Peer (Name, Role) comes from the verified certificate and
// authorization is unchanged; Peer.Addr is "tcp:" and the caller's TCP
// address, not an address to call back on. To a peer with a local socket
// (AddLocalPeer) calls take the socket instead: those over 64 KiB on
// connections of their own. Smaller requests, server streams, batches
// and datagrams stay on QUIC: only the request's size is known before
// the call, so a small request with a large answer (a read) stays on
// QUIC too (storeclient's ScanRange reads a snapshot with such calls
// where a local socket carries them).
//
// Why: quic-go's packets are at most 1,452 bytes whatever the path's MTU,
// and each is packed, sealed, sent, acknowledged and received on its own;
// a 64 KiB call is ~46 packets each way. On loopback, 64 KiB calls at
// concurrency 64 ran at 0.16-0.23x of plain TCP over QUIC, and TLS 1.3 on
// TCP with the same certificates at ~0.57x (raftd/BENCHMARKS.md, "64 KiB
// bus calls" and "Eleventh stop: bulk calls over TCP", with the figures
// of this path). Snapshots are the bulk users: their 1 MiB chunks travel
// as unary calls, leader raftd to learner raftd over TCP and learner
// raftd to its stored over the local socket. The threshold: TCP ran
// 1.75-3.5x the calls of QUIC's calls stream from 4 KiB to 60 KiB, at
// concurrency 1 and 64 (BenchmarkTCPThreshold); 16 KiB is a first step,
// leaving on QUIC the bulk of the cluster's calls, whose behaviour over
// TCP on a real network (loss, partitions) was not measured.
//
// The caller keeps up to connsPerPeer TCP connections per peer, separate
// from the small calls', each dialed on first use (single flight); a call
// takes the first with no call in flight, else the least loaded
// (bulkSpreadAt), so concurrent large calls do not queue behind each
// other's frames. When the peer's TCP cannot be reached (a peer with TCP
// off or of an older build, a firewall, another process on the port) the
// call takes a QUIC stream of its own at once, and TCP is tried again
// after the redial backoff (RedialBackoffMin doubling to
// RedialBackoffMax); the first failure is logged at warn. HAZARD: a
// firewall that drops TCP (rather than refusing it) makes the call that
// dials wait up to DialTimeout before it takes QUIC, once per backoff
// period; set Config.DisableTCP on such networks. A TCP connection no
// call has used for IdleTimeout is closed as QUIC connections are
// (close_notify both ways, pleiades_bus_idle_closes_total), and the next
// large call redials, resuming the TLS session (tickets are kept per
// peer and transport). Config.DisableTCP turns off both the listener and
// sending over TCP.
//
// A peer that goes away without closing (its host down, a network that
// drops its packets) is found as on QUIC, where a connection closes after
// IdleTimeout without a packet: both ends of a TCP connection send
// keep-alive probes every KeepAlivePeriod once it is idle and drop it
// after about IdleTimeout of them unanswered, and TCP_USER_TIMEOUT
// (Linux) closes it when data sent stays unacknowledged for IdleTimeout,
// instead of the kernel's retransmissions for a quarter of an hour. The
// calls on it fail and the next large call dials again.
//
// Malformed frames and frames over MaxFrameSize end the TCP connection as
// on a local socket (a Response with call id 0 and the error, then the
// close), failing the calls waiting on that connection; other connections
// keep serving. A caller never sends a frame over its own MaxFrameSize;
// peers are expected to share the limit.
//
// # Authorization
//
// New refuses a TLS configuration that does not require and verify client
// certificates: every call's authorization rests on the caller's
// certificate, whose role (tlsutil.Role: node with its id, client with
// its key prefixes, admin, or none) is in Peer.Role. A daemon installs
// one table per protocol with Authorize (Rules: method → Rule, the role
// kinds allowed and an optional Check of the caller and the decoded
// request), declared next to the registration of that protocol's
// handlers. The bus applies it after decoding and before the handler, for
// unary calls, server streams, every message of a batch and datagrams
// (method "datagram"). A method of a protocol with a table but without a
// rule is refused to everyone; a protocol without a table (test doubles)
// is open to node and admin certificates. A refusal is a
// CodePermissionDenied error (PermissionDenied: the method and the role
// in its message, reason "permission_denied"; a refused batch drops its
// stream, a refused datagram is dropped), counted in
// pleiades_bus_denied_total{protocol,method,role} and logged at warn, at
// most once per 5s with the number of refusals not logged. Methods and
// Permitted let a test check a protocol's table against its registered
// methods (see package bustest).
//
// # Errors
//
// Handlers return *Error values (Errorf, WithReason, NotLeader, the
// sentinels) or any error; CodeOf maps them to wire codes (context errors
// become CodeDeadlineExceeded or CodeCanceled, anything else
// CodeInternal). The caller gets an *Error with the same code, message,
// leader hint and reason; test it with errors.Is against the sentinels,
// and ReasonOf for a protocol's finer cause (the message is for humans
// and may change).
//
// A stream that cannot be served — wrong magic, version or protocol, a
// truncated or oversized frame, an unknown method — gets a Response frame
// with the code (CodeInvalidArgument, CodeResourceExhausted,
// CodeUnimplemented) and the reason, and is closed; the connection and all
// other streams keep working. Frames over MaxFrameSize are refused before
// sending (CodeResourceExhausted) and on receipt.
//
// # Shutdown
//
// Stop refuses new calls and new incoming streams (CodeUnavailable), waits
// for running handlers until its ctx ends, drains the calls streams (see
// above), then cancels the handlers' contexts, closes every connection and
// the socket, and waits for every goroutine.
//
// # Metrics
//
// With a Registerer: pleiades_bus_calls_total{protocol,method,code} and
// pleiades_bus_call_duration_seconds{protocol,method} (caller side),
// pleiades_bus_handled_total{protocol,method,code} and
// pleiades_bus_handler_duration_seconds{protocol,method} (handler side),
// pleiades_bus_sent_bytes_total, pleiades_bus_received_bytes_total,
// pleiades_bus_connections, pleiades_bus_calls_streams (served),
// pleiades_bus_dials_total{result} (local socket and TCP dials included),
// pleiades_bus_denied_total{protocol,method,role},
// pleiades_bus_local_calls_total (unary calls made over a local socket)
// and pleiades_bus_tcp_calls_total (large unary calls made over TCP).
// One Bus per registry.
package bus
