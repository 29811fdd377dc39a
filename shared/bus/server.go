package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/wire"
)

type handlerKind int

const (
	kindUnary handlerKind = iota + 1
	kindStream
	kindBatch
)

type hkey struct {
	p      wire.Protocol
	method string
}

type handler struct {
	kind handlerKind
	// newReq returns an empty request (batch: message) of the method.
	newReq func() proto.Message
	unary  func(ctx context.Context, payload []byte) (proto.Message, error)
	stream func(ctx context.Context, payload []byte, send func(proto.Message) error) error
	batch  func(ctx context.Context, from Peer, msgs [][]byte) error
}

func (b *Bus) register(p wire.Protocol, method string, h *handler) {
	if !p.Valid() {
		panic(fmt.Sprintf("bus: register %q on unknown protocol %d", method, byte(p)))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		panic(fmt.Sprintf("bus: register %s/%s after Start", p, method))
	}
	k := hkey{p, method}
	if _, dup := b.handlers[k]; dup {
		panic(fmt.Sprintf("bus: %s/%s registered twice", p, method))
	}
	b.handlers[k] = h
}

// reject answers a stream that cannot be served with a Response carrying
// code and reason, then closes it; the stream's read side is reset with
// scode. The connection keeps serving.
func (b *Bus) reject(str *quic.Stream, peer *Peer, scode quic.StreamErrorCode, code Code, reason string) {
	b.log.Debug("bus: rejected stream", "peer", peer.Addr, "code", code.String(), "reason", reason)
	str.CancelRead(scode)
	buf := getBuf()
	body, off := beginFrame(*buf)
	body, err := appendResponse(body, Error{Code: code, Message: reason}, nil, true)
	if err == nil && endFrame(body, off, b.maxSize) == nil {
		_ = str.SetWriteDeadline(time.Now().Add(preambleTimeout))
		_, _ = str.Write(body)
	}
	*buf = body
	putBuf(buf)
	_ = str.Close()
}

func (b *Bus) serveStream(c *quic.Conn, peer *Peer, str *quic.Stream) {
	defer b.wg.Done()
	_ = str.SetReadDeadline(time.Now().Add(preambleTimeout))
	p, err := wire.ReadPreamble(str)
	if err != nil {
		b.reject(str, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
		return
	}
	if p == wire.ProtoCalls {
		_ = str.SetReadDeadline(time.Time{})
		b.serveCalls(peer, quicCalls{str})
		return
	}
	fr := frameReader{r: str, max: b.maxSize}
	defer fr.release()
	body, err := fr.read()
	if err != nil {
		switch {
		case errors.Is(err, wire.ErrFrameTooLarge):
			b.reject(str, peer, streamCodeTooLarge, CodeResourceExhausted, err.Error())
		case errors.Is(err, io.EOF):
			b.reject(str, peer, streamCodeProtocol, CodeInvalidArgument, "stream ended before the first frame")
		default:
			b.reject(str, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
		}
		return
	}
	_ = str.SetReadDeadline(time.Time{})
	method, err := frameMethod(body)
	if err != nil {
		b.reject(str, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
		return
	}
	b.m.received.Add(float64(wire.PreambleLen + wire.FrameHeaderLen + len(body)))
	h := b.handlers[hkey{p, method}]
	if h == nil {
		b.reject(str, peer, streamCodeProtocol, CodeUnimplemented, fmt.Sprintf("no handler for %s/%s", p, method))
		return
	}
	if h.kind == kindBatch {
		// A one-way stream lives long; only the handler calls count
		// towards draining.
		b.serveBatch(b.ctx, str, peer, &fr, body, p, method, h)
		return
	}
	if !b.enterHandler(p, method) {
		b.reject(str, peer, streamCodeStopping, CodeUnavailable, "bus stopping")
		return
	}
	defer b.exitHandler(p, method)
	start := time.Now()
	parent := b.ctx
	if h.kind == kindStream {
		parent = b.stopBegun
	}
	ctx := context.WithValue(parent, peerKey{}, peer)
	var code Code
	switch h.kind {
	case kindUnary, kindStream:
		req, err := decodeRequest(body)
		if err != nil {
			b.reject(str, peer, streamCodeProtocol, CodeInvalidArgument, err.Error())
			return
		}
		if expired(req.deadline) {
			// The caller gave up already: see serveCalls.
			if err := b.writeResponse(str, errExpired, nil, h.kind == kindStream); err != nil {
				str.CancelWrite(streamCodeProtocol)
				str.CancelRead(streamCodeProtocol)
			} else {
				_ = str.Close()
			}
			b.m.observeHandled(p, method, CodeDeadlineExceeded, start)
			b.awaitCallerDone(str)
			return
		}
		var cancel context.CancelFunc
		if req.deadline != 0 {
			ctx, cancel = context.WithDeadline(ctx, time.Unix(0, req.deadline))
		} else {
			ctx, cancel = context.WithCancel(ctx)
		}
		stop := context.AfterFunc(str.Context(), cancel)
		if h.kind == kindUnary {
			code = b.serveUnary(ctx, str, h, req.payload)
		} else {
			code = b.serveServerStream(ctx, str, h, req.payload)
		}
		stop()
		cancel()
		b.m.observeHandled(p, method, code, start)
		b.awaitCallerDone(str)
	}
}

// errExpired answers a request whose deadline passed before it was
// served; its handler never runs.
var errExpired = Error{Code: CodeDeadlineExceeded, Message: "deadline passed before the call was served"}

// expired reports whether a request's deadline (Unix ns, 0: none) has
// passed.
func expired(deadline int64) bool { return deadline != 0 && time.Now().UnixNano() >= deadline }

// callerDoneTimeout bounds awaitCallerDone; stoppingCallerDoneTimeout
// bounds it, and the wait for callers to close their calls streams, once
// the bus stops: a caller that is gone (killed, its connection not yet
// known dead) would otherwise hold the stop for the full timeout, while a
// live caller answers within a round trip.
const (
	callerDoneTimeout         = 2 * time.Second
	stoppingCallerDoneTimeout = 250 * time.Millisecond
)

// awaitCallerDone waits until the caller has closed or reset its side of
// the stream, which it does once it has read the last response. Holding the
// handler slot until then lets Stop drain: closing the connection right
// after writing could discard a response not yet delivered.
func (b *Bus) awaitCallerDone(str *quic.Stream) {
	_ = str.SetReadDeadline(time.Now().Add(callerDoneTimeout))
	shorten := context.AfterFunc(b.stopBegun, func() { _ = str.SetReadDeadline(time.Now().Add(stoppingCallerDoneTimeout)) })
	defer shorten()
	var one [64]byte
	for {
		if _, err := str.Read(one[:]); err != nil {
			return
		}
	}
}

// writeResponse writes one Response frame. It returns the send error.
func (b *Bus) writeResponse(str *quic.Stream, status Error, m proto.Message, end bool) error {
	buf := getBuf()
	defer putBuf(buf)
	body, off := beginFrame(*buf)
	body, err := appendResponse(body, status, m, end)
	if err == nil {
		err = endFrame(body, off, b.maxSize)
	}
	*buf = body
	if err != nil {
		// The answer cannot be sent; tell the caller why instead.
		body, off = beginFrame(body[:0])
		c := CodeInternal
		if errors.Is(err, wire.ErrFrameTooLarge) {
			c = CodeResourceExhausted
		}
		body, _ = appendResponse(body, Error{Code: c, Message: "response: " + err.Error()}, nil, end)
		_ = endFrame(body, off, b.maxSize)
		*buf = body
	}
	_, werr := str.Write(body)
	if werr == nil {
		b.m.sent.Add(float64(len(body)))
	}
	if err != nil {
		return err
	}
	return werr
}

func (b *Bus) serveUnary(ctx context.Context, str *quic.Stream, h *handler, payload []byte) Code {
	resp, err := h.unary(ctx, payload)
	// A caller that is gone must not hold the stop (see awaitCallerDone).
	unblock := context.AfterFunc(b.stopBegun, func() { _ = str.SetWriteDeadline(time.Now().Add(stoppingCallerDoneTimeout)) })
	defer unblock()
	status := toWire(err)
	code := status.Code
	if err != nil {
		resp = nil
	}
	if werr := b.writeResponse(str, status, resp, false); werr != nil {
		str.CancelWrite(streamCodeProtocol)
		str.CancelRead(streamCodeProtocol)
		if code == CodeOK {
			code = CodeOf(werr)
		}
		return code
	}
	_ = str.Close()
	return code
}

func (b *Bus) serveServerStream(ctx context.Context, str *quic.Stream, h *handler, payload []byte) Code {
	// A write to a caller that is gone without a word (killed) blocks
	// until QUIC gives the connection up; once ctx ends (the caller reset
	// the stream, or the bus stops) no write waits any longer.
	unblock := context.AfterFunc(ctx, func() { _ = str.SetWriteDeadline(time.Now()) })
	defer unblock()
	send := func(m proto.Message) error {
		if err := ctx.Err(); err != nil {
			return ctxError(err)
		}
		if err := b.writeResponse(str, Error{}, m, false); err != nil {
			var se *quic.StreamError
			if errors.As(err, &se) {
				return Errorf(CodeCanceled, "caller went away: %v", err)
			}
			return err
		}
		return nil
	}
	err := h.stream(ctx, payload, send)
	status := toWire(err)
	code := status.Code
	if werr := b.writeResponse(str, status, nil, true); werr != nil {
		str.CancelWrite(streamCodeCanceled)
		str.CancelRead(streamCodeCanceled)
		return code
	}
	_ = str.Close()
	return code
}

// serveBatch applies the batch frames of a one-way stream in order until
// the stream ends or fails.
func (b *Bus) serveBatch(ctx context.Context, str *quic.Stream, peer *Peer, fr *frameReader, body []byte, p wire.Protocol, method string, h *handler) {
	_ = str.Close() // nothing is sent back
	ctx = context.WithValue(ctx, peerKey{}, peer)
	var msgs [][]byte
	for {
		m, ms, err := decodeBatch(body, msgs[:0])
		msgs = ms
		if err == nil && m != method {
			err = fmt.Errorf("batch for %q on a stream of %q", m, method)
		}
		if err == nil {
			if !b.enterHandler(p, method) {
				str.CancelRead(streamCodeStopping)
				return
			}
			start := time.Now()
			err = h.batch(ctx, *peer, msgs)
			b.exitHandler(p, method)
			b.m.observeHandled(p, method, CodeOf(err), start)
		}
		if err != nil {
			b.log.Debug("bus: dropped batch stream", "peer", peer.Addr, "method", method, "err", err)
			str.CancelRead(streamCodeProtocol)
			return
		}
		body, err = fr.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			code := streamCodeProtocol
			if errors.Is(err, wire.ErrFrameTooLarge) {
				code = streamCodeTooLarge
			}
			b.log.Debug("bus: dropped batch stream", "peer", peer.Addr, "method", method, "err", err)
			str.CancelRead(code)
			return
		}
		b.m.received.Add(float64(wire.FrameHeaderLen + len(body)))
	}
}
