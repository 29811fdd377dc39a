package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// streamErr converts a failure on a call stream to an *Error, preferring
// the caller's ctx error when it caused the failure.
func streamErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return ctxError(cerr)
	}
	var be *Error
	if errors.As(err, &be) {
		return err
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		switch se.ErrorCode {
		case streamCodeTooLarge:
			return Errorf(CodeResourceExhausted, "%s: refused by the peer: frame too large", what)
		case streamCodeStopping:
			return Errorf(CodeUnavailable, "%s: peer stopping", what)
		case streamCodeProtocol:
			return Errorf(CodeInternal, "%s: refused by the peer: protocol error", what)
		}
	}
	if ae := authError(what, err); ae != nil {
		return ae
	}
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		return Errorf(CodeResourceExhausted, "%s: %v", what, err)
	case errors.Is(err, wire.ErrTruncated), errors.Is(err, errMalformed):
		return Errorf(CodeInternal, "%s: %v", what, err)
	}
	return Errorf(CodeUnavailable, "%s: %v", what, err)
}

// openCall opens a stream to addr and sends the preamble and Request. The
// returned stop func detaches ctx from the stream.
func (b *Bus) openCall(ctx context.Context, addr string, p wire.Protocol, method string, req proto.Message) (*quic.Stream, func() bool, error) {
	if !p.Valid() {
		return nil, nil, Errorf(CodeInvalidArgument, "unknown protocol %d", byte(p))
	}
	buf := getBuf()
	defer putBuf(buf)
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	out := wire.AppendPreamble((*buf)[:0], p)
	out, off := beginFrame(out)
	out, err := appendRequest(out, method, deadline, req)
	*buf = out
	if err != nil {
		return nil, nil, Errorf(CodeInvalidArgument, "%s/%s: %v", p, method, err)
	}
	if err := endFrame(out, off, b.maxSize); err != nil {
		return nil, nil, Errorf(CodeResourceExhausted, "%s/%s request: %v", p, method, err)
	}
	if err := b.checkOpen(); err != nil {
		return nil, nil, err
	}
	slot := b.peer(addr, true)
	slot.acquire()
	conn, err := slot.get(ctx, b)
	if err != nil {
		slot.release()
		return nil, nil, err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		slot.release()
		return nil, nil, streamErr(ctx, "open stream to "+addr, err)
	}
	detach := context.AfterFunc(ctx, func() {
		str.CancelWrite(streamCodeCanceled)
		str.CancelRead(streamCodeCanceled)
	})
	stop := func() bool {
		slot.release()
		return detach()
	}
	if _, err := str.Write(out); err != nil {
		stopped := stop()
		str.CancelWrite(streamCodeCanceled)
		if rerr := b.refusal(str, err); stopped && rerr != nil {
			return nil, nil, rerr
		}
		str.CancelRead(streamCodeCanceled)
		return nil, nil, streamErr(ctx, "send request to "+addr, err)
	}
	b.m.sent.Add(float64(len(out)))
	return str, stop, nil
}

// refusal reads the reason a peer sent when it refused a stream while the
// request was still being written (werr is the write error). It returns
// nil if there is none.
func (b *Bus) refusal(str *quic.Stream, werr error) error {
	var se *quic.StreamError
	if !errors.As(werr, &se) || !se.Remote {
		return nil
	}
	_ = str.SetReadDeadline(time.Now().Add(time.Second))
	fr := frameReader{r: str, max: b.maxSize}
	defer fr.release()
	body, err := fr.read()
	if err != nil {
		return nil
	}
	r, err := decodeResponse(body)
	if err != nil || r.code == CodeOK {
		return nil
	}
	return fromWire(r)
}

// streamCall makes a unary call on a stream of its own.
func (b *Bus) streamCall(ctx context.Context, addr string, p wire.Protocol, method string, req, resp proto.Message) error {
	str, stop, err := b.openCall(ctx, addr, p, method, req)
	if err != nil {
		return err
	}
	fr := frameReader{r: str, max: b.maxSize}
	defer fr.release()
	body, err := fr.read()
	stopped := stop()
	if err != nil {
		str.CancelRead(streamCodeCanceled)
		str.CancelWrite(streamCodeCanceled)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if !stopped {
			return ctxError(ctx.Err())
		}
		return streamErr(ctx, fmt.Sprintf("%s/%s on %s", p, method, addr), err)
	}
	b.m.received.Add(float64(wire.FrameHeaderLen + len(body)))
	r, err := decodeResponse(body)
	// Closing our side tells the handler the answer arrived; nothing more
	// is expected on the read side.
	_ = str.Close()
	str.CancelRead(0)
	if err != nil {
		return Errorf(CodeInternal, "%s/%s on %s: response: %v", p, method, addr, err)
	}
	if r.code != CodeOK {
		return fromWire(r)
	}
	if err := proto.Unmarshal(r.payload, resp); err != nil {
		return Errorf(CodeInternal, "%s/%s on %s: decode %T: %v", p, method, addr, resp, err)
	}
	return nil
}

func (b *Bus) openStream(ctx context.Context, addr string, p wire.Protocol, method string, req proto.Message) (*ClientStream, error) {
	str, stop, err := b.openCall(ctx, addr, p, method, req)
	if err != nil {
		return nil, err
	}
	return &ClientStream{b: b, str: str, ctx: ctx, stop: stop, rd: frameReader{r: str, max: b.maxSize}, p: p, method: method}, nil
}

func (s *ClientStream) recv(m proto.Message) error {
	body, err := s.rd.read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return streamErr(s.ctx, fmt.Sprintf("%s/%s", s.p, s.method), err)
	}
	s.b.m.received.Add(float64(wire.FrameHeaderLen + len(body)))
	r, err := decodeResponse(body)
	if err != nil {
		return Errorf(CodeInternal, "%s/%s: response: %v", s.p, s.method, err)
	}
	if r.end {
		if r.code != CodeOK {
			return fromWire(r)
		}
		return io.EOF
	}
	if r.code != CodeOK {
		return fromWire(r)
	}
	if err := proto.Unmarshal(r.payload, m); err != nil {
		return Errorf(CodeInternal, "%s/%s: decode %T: %v", s.p, s.method, m, err)
	}
	return nil
}

// finish records the stream's result and releases it; s.mu is held.
func (s *ClientStream) finish(err error) {
	s.err = err
	s.stop()
	if errors.Is(err, io.EOF) {
		err = nil
		_ = s.str.Close()
		s.str.CancelRead(0)
	} else {
		s.str.CancelRead(streamCodeCanceled)
		s.str.CancelWrite(streamCodeCanceled)
	}
	s.rd.release()
	s.b.m.observeCall(s.p, s.method, err, s.start)
}

type batchKey struct {
	addr   string
	p      wire.Protocol
	method string
}

// batchStream is the long-lived one-way stream for one batchKey.
type batchStream struct {
	mu   sync.Mutex
	conn *quic.Conn
	str  *quic.Stream
}

// SendBatch sends msgs as one frame on the long-lived one-way stream to
// addr for (p, method), opening it if needed. An error means the batch may
// not have been delivered; the next call reopens the stream.
func (b *Bus) SendBatch(ctx context.Context, addr string, p wire.Protocol, method string, msgs ...proto.Message) error {
	if !p.Valid() {
		return Errorf(CodeInvalidArgument, "unknown protocol %d", byte(p))
	}
	if err := b.checkOpen(); err != nil {
		return err
	}
	k := batchKey{addr, p, method}
	b.mu.Lock()
	bs := b.batches[k]
	if bs == nil {
		bs = &batchStream{}
		b.batches[k] = bs
	}
	b.mu.Unlock()

	buf := getBuf()
	defer putBuf(buf)
	out, off := beginFrame((*buf)[:0])
	out, err := appendBatch(out, method, msgs)
	*buf = out
	if err != nil {
		return Errorf(CodeInvalidArgument, "%s/%s batch: %v", p, method, err)
	}
	if err := endFrame(out, off, b.maxSize); err != nil {
		return Errorf(CodeResourceExhausted, "%s/%s batch: %v", p, method, err)
	}

	bs.mu.Lock()
	defer bs.mu.Unlock()
	// The peer's own connection to this bus when it is the one both send
	// on (sharedConn); else a use of slot 0's connection: acquired, the
	// reaper cannot close it between the check below and the write. A
	// stream left on another connection (closed as idle or dead, or
	// replaced by the shared one) is dropped.
	conn := b.sharedConn(addr)
	if conn == nil {
		slot := b.peer(addr, false)
		slot.acquire()
		defer slot.release()
		var err error
		if conn, err = slot.get(ctx, b); err != nil {
			return err
		}
	}
	if bs.str != nil && (bs.conn != conn || bs.str.Context().Err() != nil) {
		if bs.str.Context().Err() == nil {
			// Moved to another live connection: what was written still
			// gets delivered.
			_ = bs.str.Close()
		} else {
			bs.str.CancelWrite(streamCodeCanceled)
		}
		bs.str = nil
	}
	var pre []byte
	if bs.str == nil {
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return streamErr(ctx, "open batch stream to "+addr, err)
		}
		str.CancelRead(0) // nothing comes back
		bs.conn, bs.str = conn, str
		pre = wire.AppendPreamble(make([]byte, 0, wire.PreambleLen), p)
	}
	str := bs.str
	stop := context.AfterFunc(ctx, func() { str.CancelWrite(streamCodeCanceled) })
	if pre != nil {
		_, err = str.Write(pre)
	}
	if err == nil {
		_, err = str.Write(out)
	}
	if !stop() || err != nil {
		str.CancelWrite(streamCodeCanceled)
		bs.str = nil
		if err == nil {
			err = ctx.Err()
		}
		return streamErr(ctx, fmt.Sprintf("send batch %s/%s to %s", p, method, addr), err)
	}
	b.m.sent.Add(float64(len(pre) + len(out)))
	return nil
}

// ClientListenAddr is the UDP address for an endpoint that only calls the
// given addresses: "127.0.0.1:0" when every one is a loopback IP, else
// ":0" (a socket bound to loopback cannot reach other hosts).
func ClientListenAddr(addrs ...string) string {
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return ":0"
		}
	}
	return "127.0.0.1:0"
}
