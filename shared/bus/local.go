package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// Local sockets carry the unary calls between two daemons of one host on
// a calls stream over TLS on a Unix domain socket (see "Local sockets" in
// doc.go): one goroutine handoff per direction instead of quic-go's loops.

// MaxSocketPath is the longest local socket path, in bytes: Linux takes
// 108 with the terminating NUL.
const MaxSocketPath = 107

// callsConn is what a calls stream runs on: a QUIC stream (quicCalls) or
// a TLS connection on a local socket (localConn).
type callsConn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	// closeSend ends the send side after what was written.
	closeSend()
	// reset aborts both directions; code tells a QUIC peer why.
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

// localConn is a calls stream on a TLS connection over a Unix socket.
// A Unix socket has no reset: reset closes the socket, and the peer sees
// the connection end (its calls fail with CodeUnavailable; the next call
// dials again).
type localConn struct {
	b   *Bus
	tls *tls.Conn
	raw net.Conn
}

func (l localConn) Read(p []byte) (int, error)  { return l.tls.Read(p) }
func (l localConn) Write(p []byte) (int, error) { return l.tls.Write(p) }

// closeSend sends TLS close_notify and shuts the socket's write side.
func (l localConn) closeSend() { _ = l.tls.CloseWrite() }

func (l localConn) reset(quic.StreamErrorCode) { l.b.dropLocal(l.raw) }

func (l localConn) refuse(b *Bus, peer *Peer, _ quic.StreamErrorCode, code Code, reason string) {
	b.log.Debug("bus: rejected local calls stream", "peer", peer.Addr, "code", code.String(), "reason", reason)
	buf := getBuf()
	defer putBuf(buf)
	body, off := beginFrame((*buf)[:0])
	body, err := appendResponse(body, Error{Code: code, Message: reason}, nil, true)
	*buf = body
	if err == nil && endFrame(body, off, b.maxSize) == nil {
		_ = l.raw.SetWriteDeadline(time.Now().Add(preambleTimeout))
		if _, err := l.tls.Write(body); err == nil {
			_ = l.tls.CloseWrite()
		}
	}
}

func (l localConn) release() { l.b.dropLocal(l.raw) }

// ListenLocal makes Start listen on a Unix domain socket at path as well,
// for calls from daemons of the same host (see AddLocalPeer). A stale
// socket file at path is removed; a file that is not a socket, or a
// socket another process answers on, fails Start. The socket is made
// mode 0600 (put it in a directory the daemon owns); Stop removes it.
// Peers authenticate with the same TLS configuration and ALPN as on
// QUIC, so authorization is unchanged. Call it before Start.
func (b *Bus) ListenLocal(path string) error {
	if path == "" {
		return errors.New("bus: empty local socket path")
	}
	if len(path) > MaxSocketPath {
		return fmt.Errorf("bus: local socket path %q is %d bytes, over the limit of %d: give a shorter one", path, len(path), MaxSocketPath)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("bus: ListenLocal after Start")
	}
	b.localPath = path
	return nil
}

// LocalPath returns the path given to ListenLocal, "" for none.
func (b *Bus) LocalPath() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.localPath
}

// AddLocalPeer says that the daemon at bus address addr also listens on
// the Unix socket at path (its ListenLocal). Unary calls to addr then go
// over that socket, except requests over 64 KiB; server streams, batches
// and datagrams stay on QUIC. When the socket cannot be reached, calls
// take QUIC and the socket is tried again after the redial backoff.
// path "" removes addr's socket. Safe to call at any time.
func (b *Bus) AddLocalPeer(addr, path string) error {
	if addr == "" {
		return errors.New("bus: AddLocalPeer: empty address")
	}
	if len(path) > MaxSocketPath {
		return fmt.Errorf("bus: local socket path %q of %s is %d bytes, over the limit of %d", path, addr, len(path), MaxSocketPath)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Copy on write: every call reads the map without a lock.
	next := make(map[string]*localPeer)
	if cur := b.local.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	if path == "" {
		delete(next, addr)
	} else {
		next[addr] = &localPeer{path: path, set: newPeerSet(addr)}
	}
	b.local.Store(&next)
	return nil
}

// localPeer is the pool of local socket connections to one peer, each
// one calls stream; peerConn.cc holds it, peerConn.conn stays nil.
type localPeer struct {
	path string
	set  *peerSet
}

// startLocal binds the local socket, if one is configured; b.mu is held.
func (b *Bus) startLocal() error {
	if b.localPath == "" {
		return nil
	}
	ln, err := listenUnix(b.localPath)
	if err != nil {
		return fmt.Errorf("bus: local socket: %w", err)
	}
	b.localLn = ln
	b.wg.Add(1)
	go b.localAcceptLoop(ln)
	return nil
}

// listenUnix listens on path with mode 0600, replacing a stale socket.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Until this chmod the socket has the umask's mode; the handshake
	// still needs a certificate of the cluster CA.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// localAcceptLoop serves each connection to the local socket on a
// goroutine of its own until Stop closes the listener.
func (b *Bus) localAcceptLoop(ln *net.UnixListener) {
	defer b.wg.Done()
	for {
		raw, err := ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Warn("bus: accept on local socket", "err", err)
			select { // out of file descriptors, say: do not spin
			case <-b.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !b.trackLocal(raw, true) {
			_ = raw.Close()
			return
		}
		go b.serveLocal(raw)
	}
}

// serveLocal runs the TLS handshake on an accepted local connection,
// reads the calls stream preamble and serves the calls.
func (b *Bus) serveLocal(raw net.Conn) {
	defer b.wg.Done()
	defer b.dropLocal(raw)
	_ = raw.SetDeadline(time.Now().Add(preambleTimeout))
	tc := tls.Server(raw, b.srvTLS)
	if err := tc.HandshakeContext(b.ctx); err != nil {
		b.log.Debug("bus: local socket handshake failed", "err", err)
		return
	}
	peer := peerFromTLS("unix:"+b.localPath, tc.ConnectionState())
	lc := localConn{b: b, tls: tc, raw: raw}
	p, err := wire.ReadPreamble(tc)
	if err == nil && p != wire.ProtoCalls {
		err = fmt.Errorf("protocol %s on a local socket: only calls streams are served there", p)
	}
	if err != nil {
		lc.refuse(b, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
		return
	}
	_ = raw.SetDeadline(time.Time{})
	b.serveCalls(peer, lc)
}

// trackLocal records a local socket connection for Stop; serve counts a
// goroutine that will serve it. It fails once Stop closes connections.
func (b *Bus) trackLocal(raw net.Conn, serve bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.localConns[raw] = struct{}{}
	if serve {
		b.wg.Add(1)
	}
	return true
}

// dropLocal closes a local socket connection and forgets it.
func (b *Bus) dropLocal(raw net.Conn) {
	_ = raw.Close()
	b.mu.Lock()
	delete(b.localConns, raw)
	b.mu.Unlock()
}

// closeLocal closes the local listener and every local connection; Stop
// calls it once no new ones can be tracked.
func (b *Bus) closeLocal() {
	b.mu.Lock()
	ln := b.localLn
	conns := make([]net.Conn, 0, len(b.localConns))
	for c := range b.localConns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	if ln != nil {
		_ = ln.Close() // also removes the socket file
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// localCallsTo returns the calls stream to use for a call to addr over
// its local socket, with its slot acquired (the caller releases it), or
// nil when addr has no local socket or it cannot be reached now.
func (b *Bus) localCallsTo(ctx context.Context, addr string) (*callsClient, *peerConn) {
	peers := b.local.Load()
	if peers == nil {
		return nil, nil
	}
	lp := (*peers)[addr]
	if lp == nil {
		return nil, nil
	}
	slot := lp.set.pick()
	slot.acquire()
	cc := slot.localCalls(ctx, b, lp.path)
	if cc == nil {
		slot.release()
		return nil, nil
	}
	return cc, slot
}

// localCalls returns the slot's live local calls stream, dialing it if
// needed (concurrent callers share one dial), or nil while the socket
// cannot be reached (a failed dial starts the peer's redial backoff).
func (p *peerConn) localCalls(ctx context.Context, b *Bus, path string) *callsClient {
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

		cc, err := b.dialLocal(ctx, p.addr, path)

		p.mu.Lock()
		p.dialing = nil
		close(ch)
		switch {
		case err == nil:
			p.cc = cc
			p.set.dialed(nil, 0, 0)
		case ctx.Err() == nil:
			p.set.mu.Lock()
			first := p.set.failures == 0
			p.set.mu.Unlock()
			if first {
				b.log.Warn("bus: local socket unreachable, calling over QUIC", slog.String("peer", p.addr), slog.String("socket", path), slog.Any("err", err))
			}
			p.set.dialed(err, b.cfg.RedialBackoffMin, b.cfg.RedialBackoffMax)
		}
		p.mu.Unlock()
		return cc
	}
}

// dialLocal connects to the local socket at path of the peer at addr and
// opens a calls stream on it.
func (b *Bus) dialLocal(ctx context.Context, addr, path string) (*callsClient, error) {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	if !b.trackLocal(raw, false) {
		_ = raw.Close()
		return nil, Errorf(CodeUnavailable, "bus stopping")
	}
	tc := tls.Client(raw, b.peerTLS("unix:"+path))
	if err := tc.HandshakeContext(dctx); err != nil {
		b.dropLocal(raw)
		b.m.dials.WithLabelValues("error").Inc()
		return nil, dialError(addr, err, false)
	}
	lc := localConn{b: b, tls: tc, raw: raw}
	_ = raw.SetWriteDeadline(time.Now().Add(b.cfg.DialTimeout))
	_, err = tc.Write(wire.AppendPreamble(make([]byte, 0, wire.PreambleLen), wire.ProtoCalls))
	_ = raw.SetWriteDeadline(time.Time{})
	if err != nil {
		b.dropLocal(raw)
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	cc := newCallsClient(b, nil, lc)
	if !b.track(cc.readLoop) {
		b.dropLocal(raw)
		return nil, Errorf(CodeUnavailable, "bus stopping")
	}
	b.m.dials.WithLabelValues("ok").Inc()
	return cc, nil
}
