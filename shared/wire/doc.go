// Package wire defines the byte-level framing of the Pleiades bus.
//
// Every QUIC stream opens with a six-byte preamble:
//
//	+------+------+------+------+---------+----------+
//	| 'P'  | 'L'  | 'D'  | 'S'  | version | protocol |
//	+------+------+------+------+---------+----------+
//
// The magic bytes tell a Pleiades peer from anything else that reached the
// port, the version byte announces incompatible framing changes, and the
// protocol byte routes the stream to the handlers of one daemon protocol
// (store, raft, kv, gossip, clock, workflow, admin, msg), or marks a calls
// stream (ProtoCalls) whose frames each name their own protocol. Datagrams
// carry the same preamble followed by their payload.
//
// After the preamble a stream carries frames: a four-byte big-endian length
// followed by that many bytes of protobuf. A frame longer than the reader's
// limit is refused before any of its body is read, so a hostile or broken
// peer cannot make the receiver allocate more than the limit.
//
// Every decoding failure is one of the sentinel errors of this package
// (ErrBadMagic, ErrUnsupportedVersion, ErrUnknownProtocol, ErrFrameTooLarge,
// ErrTruncated), wrapped with detail; callers branch with errors.Is.
//
// Readers and Writers are not safe for concurrent use; a stream has one
// reading and one writing goroutine.
package wire
