package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Application error codes on QUIC streams and connections.
const (
	streamCodeCanceled quic.StreamErrorCode = 1 // caller gave up
	streamCodeProtocol quic.StreamErrorCode = 2 // bad preamble or frame
	streamCodeStopping quic.StreamErrorCode = 3 // bus is stopping
	streamCodeTooLarge quic.StreamErrorCode = 4 // frame over the limit

	connCodeStopping quic.ApplicationErrorCode = 1
	connCodeIdle     quic.ApplicationErrorCode = 2 // no calls for IdleTimeout
)

// peerConn is the cached connection to one peer address.
type peerConn struct {
	addr     string
	set      *peerSet
	inflight atomic.Int32 // uses in progress (acquire to release)
	lastUsed atomic.Int64 // when a use last ended, in set.clock units
	mu       sync.Mutex
	conn     *quic.Conn
	dialing  chan struct{} // closed when the dial in flight ends
	cc       *callsClient  // the calls stream on conn, if open
	noCalls  *quic.Conn    // a connection whose peer refused calls streams
}

// connsPerPeer is the number of connections kept to one peer. One QUIC
// connection is processed by one goroutine on each side, which caps a single
// connection at about one core; calls are spread over the connections round
// to the least loaded one. Batch streams and datagrams use the first.
const connsPerPeer = 4

// spreadAt is how many uses in flight on a connection make the next call
// look for a less loaded one. Below it calls share one connection, whose
// packets then carry several calls' frames and acknowledgements: in the
// raftd put and get benchmarks (64 callers over 16 client buses, 4 each)
// spreading at the first concurrent call instead cost 20-40% of the
// throughput and doubled p99.
const spreadAt = 16

// peerSet holds the connection slots to one peer address.
type peerSet struct {
	slots [connsPerPeer]peerConn
	epoch time.Time // origin of the slots' lastUsed (monotonic)

	// Dial backoff, shared by the slots; mu is taken after a slot's mu.
	mu       sync.Mutex
	failures int
	nextDial time.Time
	lastErr  error
}

// now returns the time since ps.epoch in nanoseconds; it only moves forward.
func (ps *peerSet) now() int64 { return int64(time.Since(ps.epoch)) }

// acquire marks the start of a use of the slot's connection: a call, a
// batch send or a datagram send. Until the matching release the idle
// reaper leaves the slot's connection open. Acquire before get: the reaper
// checks inflight under p.mu, so a connection get returns after acquire is
// never closed as idle before release.
func (p *peerConn) acquire() { p.inflight.Add(1) }

// release ends a use begun by acquire and restarts the idle clock.
func (p *peerConn) release() {
	p.touch()
	p.inflight.Add(-1)
}

// touch records application traffic on the slot's connection.
func (p *peerConn) touch() { p.lastUsed.Store(p.set.now()) }

// backoff returns the error to fail fast with while a redial waits.
func (ps *peerSet) backoff(addr string) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if wait := time.Until(ps.nextDial); wait > 0 && ps.lastErr != nil {
		// The last dial's code and reason stand until the next dial.
		e := &Error{Code: CodeUnavailable, Message: ps.lastErr.Error()}
		errors.As(ps.lastErr, &e)
		return &Error{Code: e.Code, Reason: e.Reason, Message: fmt.Sprintf("%s (next attempt in %v)", e.Message, wait.Round(time.Millisecond))}
	}
	return nil
}

// dialed records the result of a dial.
func (ps *peerSet) dialed(err error, lo, hi time.Duration) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err == nil {
		ps.failures, ps.lastErr = 0, nil
		return
	}
	ps.failures++
	back := backoff.Policy{Min: lo, Max: hi}.Delay(ps.failures - 1)
	ps.nextDial, ps.lastErr = time.Now().Add(back), err
}

// peer returns the slot to use for addr; any picks round robin, otherwise
// slot 0.
func (b *Bus) peer(addr string, any bool) *peerConn {
	b.mu.Lock()
	ps := b.peers[addr]
	if ps == nil {
		ps = newPeerSet(addr)
		b.peers[addr] = ps
	}
	b.mu.Unlock()
	if !any {
		return &ps.slots[0]
	}
	return ps.pick()
}

func newPeerSet(addr string) *peerSet {
	ps := &peerSet{epoch: time.Now()}
	for i := range ps.slots {
		ps.slots[i].addr = addr
		ps.slots[i].set = ps
	}
	return ps
}

// pick returns the slot for a call: the first, or the least loaded once
// the first is busy.
func (ps *peerSet) pick() *peerConn { return ps.pickAt(spreadAt) }

// pickAt returns the first slot while it has fewer than spread uses in
// flight, else the least loaded one, lowest first: a lightly used peer
// keeps all calls on one warm connection.
func (ps *peerSet) pickAt(spread int32) *peerConn {
	best := &ps.slots[0]
	bn := best.inflight.Load()
	for i := 1; i < connsPerPeer && bn >= spread; i++ {
		if n := ps.slots[i].inflight.Load(); n < bn {
			best, bn = &ps.slots[i], n
		}
	}
	return best
}

func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeDeadlineExceeded, Message: err.Error()}
	}
	return &Error{Code: CodeCanceled, Message: err.Error()}
}

func (b *Bus) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.started:
		return Errorf(CodeUnavailable, "bus not started")
	case b.stopping:
		return Errorf(CodeUnavailable, "bus stopping")
	}
	return nil
}

// get returns the slot's live connection, dialing it if needed.
// Concurrent callers share one dial; after a failed dial, callers fail fast
// until the backoff has passed.
func (p *peerConn) get(ctx context.Context, b *Bus) (*quic.Conn, error) {
	addr := p.addr
	for {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(err)
		}
		p.mu.Lock()
		if c := p.conn; c != nil {
			if c.Context().Err() == nil {
				p.mu.Unlock()
				return c, nil
			}
			p.conn = nil
		}
		if ch := p.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctxError(ctx.Err())
			}
		}
		if err := p.set.backoff(addr); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		ch := make(chan struct{})
		p.dialing = ch
		p.mu.Unlock()

		c, err := b.dial(ctx, p)

		p.mu.Lock()
		p.dialing = nil
		close(ch)
		switch {
		case err == nil:
			p.touch()
			p.conn = c
			p.set.dialed(nil, 0, 0)
			p.mu.Unlock()
			return c, nil
		case ctx.Err() != nil:
			// The caller gave up; this says nothing about the peer.
			p.mu.Unlock()
			return nil, ctxError(ctx.Err())
		default:
			err = dialError(addr, err, false)
			p.set.dialed(err, b.cfg.RedialBackoffMin, b.cfg.RedialBackoffMax)
			p.mu.Unlock()
			return nil, err
		}
	}
}

func (b *Bus) dial(ctx context.Context, p *peerConn) (*quic.Conn, error) {
	addr := p.addr
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("resolve: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	// The probe runs beside the handshake and ends with it: a port
	// unreachable answer cancels the handshake at once (see probeRefused).
	refused := make(chan bool, 1)
	pctx, pcancel := context.WithCancel(dctx)
	go func() {
		r := probeRefused(pctx, ua)
		if r {
			cancel()
		}
		refused <- r
	}()
	c, err := b.tr.Dial(dctx, ua, b.peerTLS(addr), b.qconf)
	pcancel()
	wasRefused := <-refused
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		if ctx.Err() != nil && !wasRefused {
			return nil, err
		}
		return nil, dialError(addr, err, wasRefused)
	}
	if err := b.addConn(c, p); err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	b.m.dials.WithLabelValues("ok").Inc()
	return c, nil
}

// peerTLS returns the client TLS configuration for dialing addr. Every
// node certificate carries the same server name, which is what crypto/tls
// keys its session cache by, so with one shared key each new ticket would
// replace the last peer's and a redial would resume only with the peer
// dialed most recently. Keying the cache by peer address keeps one ticket
// per peer.
func (b *Bus) peerTLS(addr string) *tls.Config {
	c := b.cliTLS.Clone()
	c.ClientSessionCache = peerSessionCache{addr: addr, c: b.cliTLS.ClientSessionCache}
	return c
}

// peerSessionCache prefixes session cache keys with a peer address.
type peerSessionCache struct {
	addr string
	c    tls.ClientSessionCache
}

func (p peerSessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	return p.c.Get(p.addr + "|" + key)
}

func (p peerSessionCache) Put(key string, cs *tls.ClientSessionState) {
	p.c.Put(p.addr+"|"+key, cs)
}

// addConn tracks c and starts its goroutines; slot is the slot that
// dialed c, nil for an accepted connection.
func (b *Bus) addConn(c *quic.Conn, slot *peerConn) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.stopping {
		_ = c.CloseWithError(connCodeStopping, "bus stopping")
		return Errorf(CodeUnavailable, "bus stopping")
	}
	b.conns[c] = struct{}{}
	b.m.conns.Inc()
	b.wg.Add(2)
	go b.serveConn(c)
	go b.serveDatagrams(c, slot)
	return nil
}

func (b *Bus) removeConn(c *quic.Conn) {
	b.mu.Lock()
	if _, ok := b.conns[c]; ok {
		delete(b.conns, c)
		b.m.conns.Dec()
	}
	if ra := c.RemoteAddr().String(); b.accepted[ra] == c {
		delete(b.accepted, ra)
	}
	b.mu.Unlock()
}

func (b *Bus) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept(b.ctx)
		if err != nil {
			return
		}
		if err := b.addConn(c, nil); err != nil {
			return
		}
		b.mu.Lock()
		b.accepted[c.RemoteAddr().String()] = c
		b.mu.Unlock()
	}
}

// sharedConn returns the connection a peer at addr dialed to this bus,
// for sending batches to that peer on it, when the peer's address sorts
// below this bus's own: between two buses the one with the lower address
// dials and both send on its connection, so each direction's packets carry
// the other's acknowledgements (two connections, one dialed each way,
// cost a packet of acknowledgements per two received). A peer dials from
// its listening socket, so an accepted connection's remote address is the
// peer's own. Nil when there is no such connection, or this bus dials.
func (b *Bus) sharedConn(addr string) *quic.Conn {
	la := b.Addr()
	if la == nil || addr >= la.String() {
		return nil
	}
	b.mu.Lock()
	c := b.accepted[addr]
	b.mu.Unlock()
	if c == nil || c.Context().Err() != nil {
		return nil
	}
	return c
}

func peerOf(c *quic.Conn) *Peer {
	return peerFromTLS(c.RemoteAddr().String(), c.ConnectionState().TLS)
}

// peerFromTLS describes the peer at addr by the verified certificate of
// its TLS handshake: the same for QUIC connections and local sockets.
func peerFromTLS(addr string, cs tls.ConnectionState) *Peer {
	p := &Peer{Addr: addr}
	if len(cs.PeerCertificates) > 0 {
		p.Name = cs.PeerCertificates[0].Subject.CommonName
	}
	if r, err := tlsutil.PeerRole(cs); err == nil {
		p.Role = r
	}
	return p
}

// serveConn accepts the streams a peer opens on c.
func (b *Bus) serveConn(c *quic.Conn) {
	defer b.wg.Done()
	defer b.removeConn(c)
	peer := peerOf(c)
	for {
		str, err := c.AcceptStream(b.ctx)
		if err != nil {
			return
		}
		b.wg.Add(1)
		go b.serveStream(c, peer, str)
	}
}

// serveDatagrams dispatches c's datagrams by protocol. On a dialed
// connection (slot non-nil) each datagram counts as use.
func (b *Bus) serveDatagrams(c *quic.Conn, slot *peerConn) {
	defer b.wg.Done()
	peer := peerOf(c)
	for {
		d, err := c.ReceiveDatagram(b.ctx)
		if err != nil {
			return
		}
		b.m.received.Add(float64(len(d)))
		if slot != nil {
			slot.touch()
		}
		p, payload, err := wire.ParsePreamble(d)
		if err != nil {
			b.log.Debug("bus: dropped datagram", "peer", peer.Addr, "err", err)
			continue
		}
		if h := b.dgram[p]; h != nil {
			if b.permit(p, DatagramMethod, *peer, nil) != nil {
				continue
			}
			h(*peer, payload)
		} else {
			b.log.Debug("bus: dropped datagram for unhandled protocol", "peer", peer.Addr, "protocol", p.String())
		}
	}
}

// reapInterval is how often the reaper looks for idle connections: a
// connection closes between IdleTimeout and 1.25*IdleTimeout after its last
// use.
func reapInterval(idle time.Duration) time.Duration {
	return max(idle/4, time.Millisecond)
}

// reapLoop closes dialed connections that no call, batch or datagram has
// used for IdleTimeout. Keep-alives only stop NATs and peers from dropping
// a connection in use; without the reaper they would keep every dialed
// connection open forever. It runs until b.ctx is cancelled.
func (b *Bus) reapLoop() {
	defer b.wg.Done()
	t := time.NewTicker(reapInterval(b.cfg.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			b.reapIdle()
		}
	}
}

// reapIdle closes the dialed connections idle for IdleTimeout. A slot is
// emptied under its mu only while no use is in progress, so a caller that
// acquired the slot either keeps the connection open or finds the slot
// empty and redials; no caller holds a connection the reaper closes.
func (b *Bus) reapIdle() {
	b.mu.Lock()
	sets := make([]*peerSet, 0, len(b.peers))
	for _, ps := range b.peers {
		sets = append(sets, ps)
	}
	b.mu.Unlock()
	idle := int64(b.cfg.IdleTimeout)
	var closing []*quic.Conn
	for _, ps := range sets {
		for i := range ps.slots {
			p := &ps.slots[i]
			p.mu.Lock()
			if p.conn != nil && p.inflight.Load() == 0 && ps.now()-p.lastUsed.Load() >= idle {
				closing = append(closing, p.conn)
				p.conn = nil
			}
			p.mu.Unlock()
		}
	}
	for _, c := range closing {
		b.log.Debug("bus: closing idle connection", "peer", c.RemoteAddr().String(), "idle_timeout", b.cfg.IdleTimeout)
		b.m.idleCloses.Inc()
		_ = c.CloseWithError(connCodeIdle, "idle")
	}
	b.reapIdleBulk()
}
