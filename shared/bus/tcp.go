package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Large calls over TCP (see "Large calls over TCP" in doc.go): a unary
// call whose request is over tcpCallMin goes on a calls stream over TLS
// 1.3 on TCP to the peer's bus address, on connections of their own,
// instead of QUIC; to a peer with a local socket, a request over
// maxCallsRequest takes that socket's connections for large requests.

// tcpCallMin is the request size above which a unary call goes over
// TCP. BenchmarkTCPThreshold on loopback: TCP ran 1.75-3.5x the calls
// of QUIC's calls stream (medians of 3 runs) at every size from 4 KiB to
// 60 KiB, at concurrency 1 and 64 (raftd/BENCHMARKS.md, "Eleventh stop"). 16 KiB is a step
// towards that, not the end: below it is most of the cluster's call
// traffic (reads, puts of small values, stored's small writes), whose
// behaviour on TCP under loss and partitions of a real network was not
// measured; lowering it is this constant.
const tcpCallMin = 16 << 10

// bindAttempts is how many UDP ports a bus with port 0 tries before it
// gives up finding one whose TCP port is free too.
const bindAttempts = 16

// bulkSpreadAt is the pick threshold of the connections for large
// requests: a call goes on the first connection with no call in flight,
// or the least loaded one. A 1 MiB frame takes a while to write, and a
// frame queued behind it waits for all of it: each concurrent large call
// gets a connection of its own while there are free ones (up to
// connsPerPeer).
const bulkSpreadAt = 1

// bind binds the UDP socket at ua and, unless Config.DisableTCP, a TCP
// listener at the same address and port. With port 0 it tries other
// ports until both are free. When the TCP port stays taken (by another
// process, or by a connection's local port) the bus runs without TCP,
// logging it: its peers' large calls take QUIC.
func (b *Bus) bind(ua *net.UDPAddr) (*net.UDPConn, *net.TCPListener, error) {
	for attempt := 1; ; attempt++ {
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, nil, fmt.Errorf("bus: bind %s: %w", b.cfg.ListenAddr, err)
		}
		if b.cfg.DisableTCP {
			return udp, nil, nil
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ua.IP, Port: port, Zone: ua.Zone})
		if err == nil {
			return udp, tln, nil
		}
		if ua.Port != 0 || attempt == bindAttempts {
			b.log.Warn("bus: no TCP listener on the bus port; peers' large calls to this bus take QUIC (Config.DisableTCP, --bus-tcp=false, turns TCP off)",
				"addr", udp.LocalAddr().String(), "err", err)
			return udp, nil, nil
		}
		_ = udp.Close()
	}
}

// startTCP serves calls streams on tln (nil: TCP is off); b.mu is held.
func (b *Bus) startTCP(tln *net.TCPListener) {
	if tln == nil {
		return
	}
	b.tcpLn = tln
	b.wg.Add(1)
	go b.sockAcceptLoop(tln, func(c net.Conn) string { return "tcp:" + c.RemoteAddr().String() })
}

// TCPAddr returns the address of the TCP listener beside the UDP socket,
// nil when Config.DisableTCP or before Start.
func (b *Bus) TCPAddr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tcpLn == nil {
		return nil
	}
	return b.tcpLn.Addr()
}

// bulkPeer returns the pool for large requests to addr: its local socket
// if AddLocalPeer named one, else TCP to addr; nil when TCP is off and
// addr has no local socket.
func (b *Bus) bulkPeer(addr string) *sockPeer {
	network, address := "tcp", addr
	if lp := b.localPeer(addr); lp != nil {
		network, address = lp.network, lp.address
	} else if b.cfg.DisableTCP {
		return nil
	}
	key := network + ":" + address
	b.mu.Lock()
	defer b.mu.Unlock()
	sp := b.bulk[key]
	if sp == nil {
		sp = newSockPeer(addr, network, address)
		b.bulk[key] = sp
	}
	return sp
}

// reapIdleBulk closes the connections for large requests that no call
// has used for IdleTimeout (a call's slot is acquired before it looks at
// the slot's stream, as for QUIC connections in reapIdle). Closing sends
// close_notify; the peer answers with its own and both sides close.
func (b *Bus) reapIdleBulk() {
	b.mu.Lock()
	sets := make([]*peerSet, 0, len(b.bulk))
	for _, sp := range b.bulk {
		sets = append(sets, sp.set)
	}
	b.mu.Unlock()
	idle := int64(b.cfg.IdleTimeout)
	type idleConn struct {
		addr string
		cc   *callsClient
	}
	var closing []idleConn
	for _, ps := range sets {
		for i := range ps.slots {
			p := &ps.slots[i]
			p.mu.Lock()
			if p.cc != nil && p.inflight.Load() == 0 && ps.now()-p.lastUsed.Load() >= idle {
				closing = append(closing, idleConn{p.addr, p.cc})
				p.cc = nil
			}
			p.mu.Unlock()
		}
	}
	for _, c := range closing {
		b.log.Debug("bus: closing idle socket connection", "peer", c.addr, "idle_timeout", b.cfg.IdleTimeout)
		b.m.idleCloses.Inc()
		c.cc.fail(Errorf(CodeUnavailable, "idle"))
	}
}

// callBulk makes a unary call with a large request (the frame out, its
// call id at idOff) on a socket connection to addr. ok is false if it
// was not sent: TCP is off, or the socket cannot be reached now, or the
// peer does not serve calls there; the call then takes QUIC.
func (b *Bus) callBulk(ctx context.Context, addr string, out []byte, idOff int) (res callResult, ok bool, err error) {
	sp := b.bulkPeer(addr)
	if sp == nil {
		return callResult{}, false, nil
	}
	cc, slot := sp.callsTo(ctx, b, bulkSpreadAt)
	if cc == nil {
		return callResult{}, false, nil
	}
	res, err = cc.do(ctx, out, idOff)
	slot.release()
	if errors.Is(err, errCallsRefused) {
		return callResult{}, false, nil
	}
	if sp.network == "unix" {
		b.m.localCalls.Inc()
	} else {
		b.m.tcpCalls.Inc()
	}
	return res, true, err
}

// tuneTCP gives a TCP connection of the bus the dead-peer detection of
// its QUIC connections, which close after IdleTimeout without a packet
// from the peer: keep-alive probes every KeepAlivePeriod once it is idle,
// the connection dropped after about IdleTimeout of probes unanswered,
// and TCP_USER_TIMEOUT at IdleTimeout for data sent but not acknowledged
// (keep-alives do not run then, and the kernel would otherwise retransmit
// for a quarter of an hour). A peer whose host went away or a network
// that silently drops its packets so fails the calls on the connection
// and the next call dials again, instead of every large call to it
// queueing on a connection that cannot deliver. Other connections (Unix
// sockets) are left as they are.
func (b *Bus) tuneTCP(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	probes := max(1, int(b.cfg.IdleTimeout/b.cfg.KeepAlivePeriod))
	if err := tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: b.cfg.KeepAlivePeriod, Interval: b.cfg.KeepAlivePeriod, Count: probes}); err != nil {
		b.log.Debug("bus: TCP keep-alive", "peer", c.RemoteAddr().String(), "err", err)
	}
	if err := setUserTimeout(tc, b.cfg.IdleTimeout); err != nil {
		b.log.Debug("bus: TCP user timeout", "peer", c.RemoteAddr().String(), "err", err)
	}
}
