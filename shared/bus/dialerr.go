package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// refusedProbeWait bounds how long a dial's probe waits for a port
// unreachable answer. On loopback and a LAN it comes within a round trip;
// silence only means the probe learned nothing.
const refusedProbeWait = time.Second

// probeRefused reports whether nothing listens on addr's UDP port.
//
// QUIC runs over an unconnected UDP socket (one per bus, shared by every
// connection), and Linux reports ICMP errors only to connected sockets: a
// dial to a port nobody listens on hears nothing and waits out its
// timeout. So the dial also sends one empty datagram from a connected
// socket of its own; a host with nothing on the port answers with ICMP
// port unreachable, which makes the socket's next read fail with
// ECONNREFUSED. A QUIC endpoint drops empty datagrams, so a live peer sees
// nothing. The probe returns false when it learns nothing within
// refusedProbeWait or before ctx ends (no answer: a listener, a filter, or
// a lost ICMP).
func probeRefused(ctx context.Context, addr *net.UDPAddr) bool {
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	_ = c.SetReadDeadline(time.Now().Add(refusedProbeWait))
	if _, err := c.Write(nil); err != nil {
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	var b [1]byte
	_, err = c.Read(b[:])
	return errors.Is(err, syscall.ECONNREFUSED)
}

// authError returns a CodeUnauthenticated error when err is a failed TLS
// handshake (a QUIC crypto error), else nil. what says where it happened.
// With TLS 1.3 the client's handshake ends before the server has checked
// the client's certificate, so a server's refusal reaches the client on
// its first stream, not its dial: streamErr asks this too.
func authError(what string, err error) error {
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.ErrorCode.IsCryptoError() {
		return nil
	}
	who := "the peer refused our certificate"
	if !te.Remote {
		who = "we refused the peer's certificate"
	}
	return &Error{Code: CodeUnauthenticated,
		Message: fmt.Sprintf("%s: TLS handshake failed, %s (%v): both ends need certificates of the same cluster CA", what, who, err)}
}

// dialError classifies a failed dial to addr for callers: no listener
// (CodeUnavailable with ReasonNoListener), a failed TLS handshake
// (CodeUnauthenticated: the certificates are not of one cluster CA, which
// a retry will not change), or anything else (CodeUnavailable).
func dialError(addr string, err error, refused bool) error {
	if refused {
		return &Error{Code: CodeUnavailable, Reason: ReasonNoListener,
			Message: fmt.Sprintf("dial %s: nothing listens there (connection refused)", addr)}
	}
	if ae := authError("dial "+addr, err); ae != nil {
		return ae
	}
	var be *Error
	if errors.As(err, &be) {
		return err
	}
	return Errorf(CodeUnavailable, "dial %s: %v", addr, err)
}
