package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// Socket connections carry calls streams over TLS 1.3 on a stream socket
// instead of QUIC: a Unix domain socket to a daemon of the same host (see
// local.go) or TCP to any peer for large requests (see tcp.go). Both run
// the same code here: dialing with single flight and the redial backoff,
// the handshake with the bus's TLS configuration and ALPN, the preamble,
// and serveCalls on the accepting side.

// callsConn is what a calls stream runs on: a QUIC stream (quicCalls) or
// a TLS connection on a socket (sockConn).
type callsConn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	// closeSend ends the send side after what was written.
	closeSend()
	// reset aborts both directions; code tells the peer why.
	reset(code quic.StreamErrorCode)
	// refuse answers a calls stream that cannot be served with a
	// Response carrying code and reason, then ends it.
	refuse(b *Bus, peer *Peer, scode quic.StreamErrorCode, code Code, reason string)
	// release frees what the stream holds once its reader has stopped.
	release()
}

// quicCalls is a calls stream on a QUIC stream.
type quicCalls struct{ *quic.Stream }

func (q quicCalls) closeSend() { _ = q.Close() }

func (q quicCalls) reset(code quic.StreamErrorCode) {
	q.CancelRead(code)
	q.CancelWrite(code)
}

func (q quicCalls) refuse(b *Bus, peer *Peer, scode quic.StreamErrorCode, code Code, reason string) {
	b.reject(q.Stream, peer, scode, code, reason)
}

func (q quicCalls) release() {}

// sockConn is a calls stream on a TLS connection over a Unix or TCP
// socket. A socket has no stream reset: reset closes the connection (after
// a Response with call id 0 saying why, when the cause is the peer's
// frame), and the peer's calls on it fail; its next call dials again.
type sockConn struct {
	b   *Bus
	tls *tls.Conn
	raw net.Conn
}

func (s sockConn) Read(p []byte) (int, error)  { return s.tls.Read(p) }
func (s sockConn) Write(p []byte) (int, error) { return s.tls.Write(p) }

// closeSend sends TLS close_notify and shuts the socket's write side.
func (s sockConn) closeSend() { _ = s.tls.CloseWrite() }

// reset closes the connection. For a frame over the size limit or a
// malformed one, the peer's calls get the error QUIC's stream reset would
// give them (CodeResourceExhausted, CodeInternal) instead of "connection
// closed".
func (s sockConn) reset(code quic.StreamErrorCode) {
	switch code {
	case streamCodeTooLarge:
		s.linger(CodeResourceExhausted, "refused by the peer: frame too large")
	case streamCodeProtocol:
		s.linger(CodeInternal, "refused by the peer: protocol error")
	}
	s.b.dropSock(s.raw)
}

// lingerTimeout bounds how long a refused connection's reader drains
// what the peer still sends before the connection closes.
const lingerTimeout = time.Second

// linger tells the peer why its connection ends (tell), sends
// close_notify, then reads and drops what the peer still sends until it
// closes or lingerTimeout passes. Closing a TCP socket with unread data
// resets the connection, and the reset can reach the peer before the
// reason does (the peer of an oversized frame is still writing it).
func (s sockConn) linger(code Code, reason string) {
	if !s.tell(code, reason) {
		return
	}
	_ = s.tls.CloseWrite()
	_ = s.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, s.raw)
}

func (s sockConn) refuse(b *Bus, peer *Peer, _ quic.StreamErrorCode, code Code, reason string) {
	b.log.Debug("bus: rejected socket calls stream", "peer", peer.Addr, "code", code.String(), "reason", reason)
	if s.tell(code, reason) {
		_ = s.tls.CloseWrite()
	}
}

// tell writes a Response with call id 0 (the stream itself fails) with
// code and reason, waiting at most preambleTimeout; it reports whether it
// was written. A Write of the calls stream's writer may be under way: a
// tls.Conn takes one Write at a time, so frames do not interleave.
func (s sockConn) tell(code Code, reason string) bool {
	buf := getBuf()
	defer putBuf(buf)
	body, off := beginFrame((*buf)[:0])
	body, err := appendResponse(body, Error{Code: code, Message: reason}, nil, true)
	*buf = body
	if err != nil || endFrame(body, off, s.b.maxSize) != nil {
		return false
	}
	_ = s.raw.SetWriteDeadline(time.Now().Add(preambleTimeout))
	_, err = s.tls.Write(body)
	return err == nil
}

func (s sockConn) release() { s.b.dropSock(s.raw) }

// sockPeer is a pool of socket connections to one peer, each one calls
// stream; peerConn.cc holds it, peerConn.conn stays nil.
type sockPeer struct {
	network string // "unix" or "tcp"
	address string // the socket path or the peer's host:port
	set     *peerSet
}

func newSockPeer(addr, network, address string) *sockPeer {
	return &sockPeer{network: network, address: address, set: newPeerSet(addr)}
}

// name is the peer's socket as "unix:<path>" or "tcp:<host:port>": the
// key of its TLS session tickets, and the caller's Peer.Addr as the
// accepting side sees it.
func (sp *sockPeer) name() string { return sp.network + ":" + sp.address }

// callsTo returns the calls stream to use for a call over the peer's
// socket, with its slot acquired (the caller releases it), or nil when
// the socket cannot be reached now. spread is the pick threshold (see
// peerSet.pickAt).
func (sp *sockPeer) callsTo(ctx context.Context, b *Bus, spread int32) (*callsClient, *peerConn) {
	slot := sp.set.pickAt(spread)
	slot.acquire()
	cc := slot.sockCalls(ctx, b, sp)
	if cc == nil {
		slot.release()
		return nil, nil
	}
	return cc, slot
}

// sockCalls returns the slot's live socket calls stream, dialing it if
// needed (concurrent callers share one dial), or nil while the socket
// cannot be reached (a failed dial starts the peer's redial backoff).
func (p *peerConn) sockCalls(ctx context.Context, b *Bus, sp *sockPeer) *callsClient {
	for {
		p.mu.Lock()
		if cc := p.cc; cc != nil {
			if cc.usable() {
				p.mu.Unlock()
				return cc
			}
			p.cc = nil
		}
		if ch := p.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		if p.set.backoff(p.addr) != nil {
			p.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		p.dialing = ch
		p.mu.Unlock()

		cc, err := b.dialSock(ctx, p.addr, sp)

		p.mu.Lock()
		p.dialing = nil
		close(ch)
		switch {
		case err == nil:
			p.cc = cc
			p.touch()
			p.set.dialed(nil, 0, 0)
		case ctx.Err() == nil:
			p.set.mu.Lock()
			first := p.set.failures == 0
			p.set.mu.Unlock()
			if first {
				b.log.Warn("bus: socket unreachable, calling over QUIC", slog.String("peer", p.addr), slog.String("socket", sp.name()), slog.Any("err", err))
			}
			p.set.dialed(err, b.cfg.RedialBackoffMin, b.cfg.RedialBackoffMax)
		}
		p.mu.Unlock()
		return cc
	}
}

// dialSock connects to the socket of the peer at addr and opens a calls
// stream on it.
func (b *Bus) dialSock(ctx context.Context, addr string, sp *sockPeer) (*callsClient, error) {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	var d net.Dialer
	raw, err := d.DialContext(dctx, sp.network, sp.address)
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	b.tuneTCP(raw)
	if !b.trackSock(raw, false) {
		_ = raw.Close()
		return nil, Errorf(CodeUnavailable, "bus stopping")
	}
	tc := tls.Client(raw, b.peerTLS(sp.name()))
	if err := tc.HandshakeContext(dctx); err != nil {
		b.dropSock(raw)
		b.m.dials.WithLabelValues("error").Inc()
		return nil, dialError(addr, err, false)
	}
	sc := sockConn{b: b, tls: tc, raw: raw}
	_ = raw.SetWriteDeadline(time.Now().Add(b.cfg.DialTimeout))
	_, err = tc.Write(wire.AppendPreamble(make([]byte, 0, wire.PreambleLen), wire.ProtoCalls))
	_ = raw.SetWriteDeadline(time.Time{})
	if err != nil {
		b.dropSock(raw)
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	cc := newCallsClient(b, nil, sc)
	if !b.track(cc.readLoop) {
		b.dropSock(raw)
		return nil, Errorf(CodeUnavailable, "bus stopping")
	}
	b.m.dials.WithLabelValues("ok").Inc()
	return cc, nil
}

// sockAcceptLoop serves each connection accepted on ln on a goroutine of
// its own until Stop closes the listener. peerAddr names an accepted
// connection's caller (its Peer.Addr).
func (b *Bus) sockAcceptLoop(ln net.Listener, peerAddr func(net.Conn) string) {
	defer b.wg.Done()
	for {
		raw, err := ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Warn("bus: accept on socket", "listener", ln.Addr().String(), "err", err)
			select { // out of file descriptors, say: do not spin
			case <-b.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		b.tuneTCP(raw)
		if !b.trackSock(raw, true) {
			_ = raw.Close()
			return
		}
		go b.serveSock(raw, peerAddr(raw))
	}
}

// serveSock runs the TLS handshake on an accepted socket connection,
// reads the calls stream preamble and serves the calls.
func (b *Bus) serveSock(raw net.Conn, peerAddr string) {
	defer b.wg.Done()
	defer b.dropSock(raw)
	_ = raw.SetDeadline(time.Now().Add(preambleTimeout))
	tc := tls.Server(raw, b.srvTLS)
	if err := tc.HandshakeContext(b.ctx); err != nil {
		b.log.Debug("bus: socket handshake failed", "peer", peerAddr, "err", err)
		return
	}
	peer := peerFromTLS(peerAddr, tc.ConnectionState())
	sc := sockConn{b: b, tls: tc, raw: raw}
	p, err := wire.ReadPreamble(tc)
	if err == nil && p != wire.ProtoCalls {
		err = fmt.Errorf("protocol %s on a socket: only calls streams are served there", p)
	}
	if err != nil {
		sc.refuse(b, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
		return
	}
	_ = raw.SetDeadline(time.Time{})
	b.serveCalls(peer, sc)
}

// trackSock records a socket connection for Stop; serve counts a
// goroutine that will serve it. It fails once Stop closes connections.
func (b *Bus) trackSock(raw net.Conn, serve bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.sockConns[raw] = struct{}{}
	if serve {
		b.wg.Add(1)
	}
	return true
}

// dropSock closes a socket connection and forgets it.
func (b *Bus) dropSock(raw net.Conn) {
	_ = raw.Close()
	b.mu.Lock()
	delete(b.sockConns, raw)
	b.mu.Unlock()
}

// closeSocks closes the socket listeners and every socket connection;
// Stop calls it once no new ones can be tracked.
func (b *Bus) closeSocks() {
	b.mu.Lock()
	lns := []net.Listener{}
	if b.localLn != nil {
		lns = append(lns, b.localLn)
	}
	if b.tcpLn != nil {
		lns = append(lns, b.tcpLn)
	}
	conns := make([]net.Conn, 0, len(b.sockConns))
	for c := range b.sockConns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close() // a Unix listener also removes its socket file
	}
	for _, c := range conns {
		_ = c.Close()
	}
}
