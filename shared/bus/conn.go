package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// Application error codes on QUIC streams and connections.
const (
	streamCodeCanceled quic.StreamErrorCode = 1 // caller gave up
	streamCodeProtocol quic.StreamErrorCode = 2 // bad preamble or frame
	streamCodeStopping quic.StreamErrorCode = 3 // bus is stopping
	streamCodeTooLarge quic.StreamErrorCode = 4 // frame over the limit

	connCodeStopping quic.ApplicationErrorCode = 1
)

// peerConn is the cached connection to one peer address.
type peerConn struct {
	addr     string
	mu       sync.Mutex
	conn     *quic.Conn
	dialing  chan struct{} // closed when the dial in flight ends
	failures int
	nextDial time.Time
	lastErr  error
}

func (b *Bus) peer(addr string) *peerConn {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[addr]
	if p == nil {
		p = &peerConn{addr: addr}
		b.peers[addr] = p
	}
	return p
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

// getConn returns the live connection to addr, dialing it if needed.
// Concurrent callers share one dial; after a failed dial, callers fail fast
// until the backoff has passed.
func (b *Bus) getConn(ctx context.Context, addr string) (*quic.Conn, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	p := b.peer(addr)
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
		if wait := time.Until(p.nextDial); wait > 0 && p.lastErr != nil {
			err := p.lastErr
			p.mu.Unlock()
			return nil, Errorf(CodeUnavailable, "dial %s: %v (next attempt in %v)", addr, err, wait.Round(time.Millisecond))
		}
		ch := make(chan struct{})
		p.dialing = ch
		p.mu.Unlock()

		c, err := b.dial(ctx, addr)

		p.mu.Lock()
		p.dialing = nil
		close(ch)
		switch {
		case err == nil:
			p.conn, p.failures, p.lastErr = c, 0, nil
			p.mu.Unlock()
			return c, nil
		case ctx.Err() != nil:
			// The caller gave up; this says nothing about the peer.
			p.mu.Unlock()
			return nil, ctxError(ctx.Err())
		default:
			p.failures++
			back := b.cfg.RedialBackoffMin << min(p.failures-1, 20)
			if back > b.cfg.RedialBackoffMax || back <= 0 {
				back = b.cfg.RedialBackoffMax
			}
			p.nextDial, p.lastErr = time.Now().Add(back), err
			p.mu.Unlock()
			var be *Error
			if errors.As(err, &be) {
				return nil, err
			}
			return nil, Errorf(CodeUnavailable, "dial %s: %v", addr, err)
		}
	}
}

func (b *Bus) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("resolve: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, b.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	c, err := b.tr.Dial(dctx, ua, b.cliTLS, b.qconf)
	if err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	if err := b.addConn(c); err != nil {
		b.m.dials.WithLabelValues("error").Inc()
		return nil, err
	}
	b.m.dials.WithLabelValues("ok").Inc()
	return c, nil
}

// addConn tracks c and starts its goroutines.
func (b *Bus) addConn(c *quic.Conn) error {
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
	go b.serveDatagrams(c)
	return nil
}

func (b *Bus) removeConn(c *quic.Conn) {
	b.mu.Lock()
	if _, ok := b.conns[c]; ok {
		delete(b.conns, c)
		b.m.conns.Dec()
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
		if err := b.addConn(c); err != nil {
			return
		}
	}
}

func peerOf(c *quic.Conn) *Peer {
	p := &Peer{Addr: c.RemoteAddr().String()}
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		p.Name = certs[0].Subject.CommonName
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

// serveDatagrams dispatches c's datagrams by protocol.
func (b *Bus) serveDatagrams(c *quic.Conn) {
	defer b.wg.Done()
	peer := peerOf(c)
	for {
		d, err := c.ReceiveDatagram(b.ctx)
		if err != nil {
			return
		}
		b.m.received.Add(float64(len(d)))
		p, payload, err := wire.ParsePreamble(d)
		if err != nil {
			b.log.Debug("bus: dropped datagram", "peer", peer.Addr, "err", err)
			continue
		}
		if h := b.dgram[p]; h != nil {
			h(*peer, payload)
		} else {
			b.log.Debug("bus: dropped datagram for unhandled protocol", "peer", peer.Addr, "protocol", p.String())
		}
	}
}
