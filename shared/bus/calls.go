package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// Calls streams carry the unary calls of one connection on one long-lived
// stream (see "Calls streams" in doc.go): no stream is opened, tracked and
// retired per call, and the frames of concurrent calls share packets.

// maxCallsRequest is the largest Request body sent on a shared calls
// stream; a larger one goes on a connection for large requests (TCP, or
// the peer's local socket), or else on a QUIC stream of its own, so that
// it neither delays the small calls behind it nor, if the peer refuses
// its size, fails them.
const maxCallsRequest = 64 << 10

// errCallsClosed is the error of a write after closeSend.
var errCallsClosed = errors.New("calls stream closed")

// frameWriter writes whole frames to a stream shared by many goroutines.
// A goroutine that finds no write in progress writes, and keeps writing
// what others queued meanwhile; the others return at once. Queued frames
// go out together, in one Write, usually one packet.
type frameWriter struct {
	str interface {
		io.Writer
		closeSend() // ends the send side after what was written
	}
	mu      sync.Mutex
	pending []byte
	spare   []byte
	writing bool
	closing bool  // closeSend was called: FIN once pending is written
	err     error // the first write error; every later write fails with it
}

// write queues frame (copied) for the stream. An error means the stream
// failed, by this write or an earlier one; a nil return does not promise
// delivery (a failure after it is reported by the stream's reader).
func (w *frameWriter) write(frame []byte) error {
	w.mu.Lock()
	if w.err != nil || w.closing {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = errCallsClosed
		}
		return err
	}
	if !w.writing && len(frame) > maxCallsRequest {
		// A large frame with no write in progress goes out as it is:
		// copying it into pending costs more than a Write, and it fills
		// the packets it takes without company. Frames queued meanwhile
		// follow it. 64 KiB calls at concurrency 64 over TCP went from
		// 3,100-6,200 to 8,200-11,100 per second (runs minutes apart,
		// raftd/BENCHMARKS.md, "Eleventh stop").
		w.writing = true
		w.mu.Unlock()
		_, err := w.str.Write(frame)
		w.mu.Lock()
		if err != nil {
			return w.failLocked(err)
		}
		return w.flushLocked()
	}
	w.pending = append(w.pending, frame...)
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	// Let the goroutines that are ready to run (the other answers of a
	// raft round, callers woken together) queue their frames first: they
	// go out in this Write, in one packet instead of one each, with one
	// acknowledgement. raftd, put with 64 clients: 3.4 -> 1.8 datagrams
	// and 12.3 -> 8.2 context switches per put, +29-38% throughput; linear-
	// izable gets 2.5 -> 0.8 datagrams per get, +58-72%. Yielding only
	// when other calls were in flight on the stream did worse under load
	// (2.2 datagrams per put) and no better for a single client.
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	return w.flushLocked()
}

// flushLocked writes what is pending until nothing is, then ends the
// write in progress (and the stream, once closeSend was called). w.mu is
// held and w.writing set; flushLocked unlocks it.
func (w *frameWriter) flushLocked() error {
	for len(w.pending) > 0 {
		out := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err := w.str.Write(out)
		w.mu.Lock()
		if cap(out) <= 1<<20 {
			w.spare = out[:0]
		} else {
			w.spare = nil
		}
		if err != nil {
			return w.failLocked(err)
		}
	}
	w.writing = false
	if w.closing {
		w.str.closeSend()
	}
	w.mu.Unlock()
	return nil
}

// failLocked records the stream's write error err and unlocks w.mu.
func (w *frameWriter) failLocked(err error) error {
	w.err, w.writing, w.pending = err, false, nil
	w.mu.Unlock()
	return err
}

// closeSend ends the send side once every queued frame is written.
func (w *frameWriter) closeSend() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return
	}
	w.closing = true
	if !w.writing && w.err == nil {
		w.str.closeSend()
	}
}

// callResult is what a caller waiting on a calls stream gets: a response
// whose payload aliases *buf (the caller returns buf to the pool), or err.
type callResult struct {
	buf *[]byte
	r   response
	err error
}

// callsClient is the caller's end of the calls stream of one connection.
type callsClient struct {
	b    *Bus
	conn *quic.Conn // nil on a socket
	str  callsConn
	w    frameWriter

	mu    sync.Mutex
	next  uint64
	calls map[uint64]chan callResult
	err   error // set once the stream has failed or ended; calls fail with it
}

// errCallsRefused means the peer refused calls streams as an unknown
// protocol (a build from before them); the call was not served and goes on a
// stream of its own.
var errCallsRefused = errors.New("calls streams refused")

// calls returns the calls stream of the slot's connection conn, opening it
// if there is none. It returns nil if the peer refused calls streams on
// conn, or if the stream cannot be opened now (the call then takes a stream
// of its own).
func (p *peerConn) calls(b *Bus, conn *quic.Conn) *callsClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc := p.cc; cc != nil && cc.conn == conn && cc.usable() {
		return cc
	}
	if p.noCalls == conn {
		return nil
	}
	str, err := conn.OpenStream()
	if err != nil {
		return nil
	}
	cc := newCallsClient(b, conn, quicCalls{str})
	if !b.track(cc.readLoop) {
		str.CancelWrite(streamCodeStopping)
		str.CancelRead(streamCodeStopping)
		return nil
	}
	// No call can reach cc before p.cc is set: the preamble goes first,
	// straight to the stream (the writer's yield is for frames that may
	// have company, and p.mu is held here).
	if _, err := str.Write(wire.AppendPreamble(make([]byte, 0, wire.PreambleLen), wire.ProtoCalls)); err != nil {
		cc.fail(err)
		return nil
	}
	p.cc = cc
	return cc
}

func newCallsClient(b *Bus, conn *quic.Conn, str callsConn) *callsClient {
	cc := &callsClient{b: b, conn: conn, str: str, calls: make(map[uint64]chan callResult)}
	cc.w.str = str
	return cc
}

func (cc *callsClient) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil
}

// readLoop hands each response to its caller until the stream ends.
func (cc *callsClient) readLoop() {
	defer cc.str.release()
	fr := frameReader{r: cc.str, max: cc.b.maxSize}
	defer fr.release()
	for {
		body, err := fr.read()
		if err != nil {
			cc.fail(err)
			return
		}
		cc.b.m.received.Add(float64(wire.FrameHeaderLen + len(body)))
		r, err := decodeResponse(body)
		if err != nil {
			cc.fail(fmt.Errorf("%w: response: %v", errMalformed, err))
			return
		}
		if r.callID == 0 {
			// The peer refused the stream itself and closes it.
			err := fromWire(r)
			if r.code == CodeInvalidArgument {
				err = errCallsRefused
			}
			cc.fail(err)
			return
		}
		cc.mu.Lock()
		ch := cc.calls[r.callID]
		delete(cc.calls, r.callID)
		cc.mu.Unlock()
		if ch == nil {
			continue // the caller gave up
		}
		ch <- callResult{buf: fr.buf, r: r}
		fr.buf = nil
	}
}

// fail ends the stream with err: every waiting call gets it, later calls
// open a new stream. A clean end (the peer closed its side after draining)
// is answered by closing ours; anything else resets the stream.
func (cc *callsClient) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	if errors.Is(err, io.EOF) {
		err = Errorf(CodeUnavailable, "peer stopping")
	}
	cc.err = err
	calls := cc.calls
	cc.calls = nil
	cc.mu.Unlock()
	for _, ch := range calls {
		ch <- callResult{err: err}
	}
	var be *Error
	if errors.As(err, &be) && be.Code == CodeUnavailable {
		cc.w.closeSend()
		return
	}
	cc.str.reset(streamCodeCanceled)
}

// do sends the request frame (from appendCallRequest, the call_id at idOff)
// and waits for its response. It returns errCallsRefused if the peer does
// not take calls streams. On success the caller must putBuf(res.buf).
func (cc *callsClient) do(ctx context.Context, frame []byte, idOff int) (callResult, error) {
	ch := make(chan callResult, 1)
	cc.mu.Lock()
	if err := cc.err; err != nil {
		cc.mu.Unlock()
		return callResult{}, err
	}
	cc.next++
	id := cc.next
	cc.calls[id] = ch
	cc.mu.Unlock()
	setCallID(frame, idOff, id)
	if err := cc.w.write(frame); err != nil {
		cc.fail(err)
	}
	cc.b.m.sent.Add(float64(len(frame)))
	select {
	case res := <-ch:
		return res, res.err
	case <-ctx.Done():
	}
	cc.mu.Lock()
	_, waiting := cc.calls[id]
	delete(cc.calls, id)
	cc.mu.Unlock()
	if waiting {
		// Tell the handler; its answer, if any, will be dropped.
		var cf [wire.FrameHeaderLen + 16]byte
		out, off := beginFrame(cf[:0])
		out = appendCancel(out, id)
		_ = endFrame(out, off, cc.b.maxSize)
		_ = cc.w.write(out)
	} else if res := <-ch; res.buf != nil {
		putBuf(res.buf) // answered as the caller gave up
	}
	return callResult{}, ctxError(ctx.Err())
}

// callOnCalls makes a unary call on the calls stream of a connection to
// addr. ok is false if the call was not sent and should take a stream of
// its own (request too large, peer without calls streams).
func (b *Bus) callOnCalls(ctx context.Context, addr string, p wire.Protocol, method string, req, resp proto.Message) (ok bool, err error) {
	buf := getBuf()
	defer putBuf(buf)
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	out, off := beginFrame((*buf)[:0])
	out, idOff, err := appendCallRequest(out, p, method, deadline, req)
	*buf = out
	if err != nil {
		return true, Errorf(CodeInvalidArgument, "%s/%s: %v", p, method, err)
	}
	if err := endFrame(out, off, b.maxSize); err != nil {
		return true, Errorf(CodeResourceExhausted, "%s/%s request: %v", p, method, err)
	}
	if err := b.checkOpen(); err != nil {
		return true, err
	}
	// Over TCP above tcpMin; to a peer with a local socket, over that
	// socket's connections for large requests above maxCallsRequest. If
	// that cannot be, the shared calls stream, or for a request too large
	// for it a stream of its own (encoded once more by streamCall).
	bulkAt := b.tcpMin
	if b.localPeer(addr) != nil {
		bulkAt = maxCallsRequest
	}
	if size := len(out) - wire.FrameHeaderLen; size > bulkAt {
		res, ok, err := b.callBulk(ctx, addr, out, idOff)
		if ok {
			return true, b.callAnswer(ctx, addr, p, method, res, err, resp)
		}
		if size > maxCallsRequest {
			return false, nil
		}
	}
	if cc, lslot := b.localCallsTo(ctx, addr); cc != nil {
		res, err := cc.do(ctx, out, idOff)
		lslot.release()
		if !errors.Is(err, errCallsRefused) {
			b.m.localCalls.Inc()
			return true, b.callAnswer(ctx, addr, p, method, res, err, resp)
		}
		// A peer that does not serve calls on its socket: QUIC.
	}
	slot := b.peer(addr, true)
	slot.acquire()
	defer slot.release()
	conn, err := slot.get(ctx, b)
	if err != nil {
		return true, err
	}
	cc := slot.calls(b, conn)
	if cc == nil {
		return false, nil
	}
	res, err := cc.do(ctx, out, idOff)
	if errors.Is(err, errCallsRefused) {
		slot.mu.Lock()
		slot.noCalls = conn
		slot.mu.Unlock()
		return false, nil
	}
	return true, b.callAnswer(ctx, addr, p, method, res, err, resp)
}

// callAnswer turns the result of a call on a calls stream into the
// call's error, decoding the payload into resp.
func (b *Bus) callAnswer(ctx context.Context, addr string, p wire.Protocol, method string, res callResult, err error, resp proto.Message) error {
	if err != nil {
		return streamErr(ctx, fmt.Sprintf("%s/%s on %s", p, method, addr), err)
	}
	defer putBuf(res.buf)
	if res.r.code != CodeOK {
		return fromWire(res.r)
	}
	if err := proto.Unmarshal(res.r.payload, resp); err != nil {
		return Errorf(CodeInternal, "%s/%s on %s: decode %T: %v", p, method, addr, resp, err)
	}
	return nil
}

// callsServer is the handler side of one calls stream.
type callsServer struct {
	str  callsConn
	w    frameWriter
	done chan struct{} // closed when the reader has stopped

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
}

// serveCalls reads the Requests of a calls stream and runs each on a
// goroutine of its own; responses go back on the stream in the order they
// finish. It returns when the caller ends the stream or it fails.
func (b *Bus) serveCalls(peer *Peer, str callsConn) {
	sc := &callsServer{str: str, done: make(chan struct{}), running: make(map[uint64]context.CancelFunc)}
	sc.w.str = str
	if !b.addCalls(sc) {
		str.refuse(b, peer, streamCodeStopping, CodeUnavailable, "bus stopping")
		return
	}
	defer b.removeCalls(sc)
	defer close(sc.done)
	pctx := context.WithValue(b.ctx, peerKey{}, peer)
	fr := frameReader{r: str, max: b.maxSize}
	defer fr.release()
	for {
		body, err := fr.read()
		if err != nil {
			code := streamCodeCanceled
			switch {
			case errors.Is(err, io.EOF):
				code = 0
			case errors.Is(err, wire.ErrFrameTooLarge):
				code = streamCodeTooLarge
			case errors.Is(err, wire.ErrTruncated):
				code = streamCodeProtocol
			}
			sc.end(code)
			return
		}
		b.m.received.Add(float64(wire.FrameHeaderLen + len(body)))
		req, err := decodeRequest(body)
		if err == nil && req.callID == 0 {
			err = fmt.Errorf("%w: call without call_id", errMalformed)
		}
		if err != nil {
			b.log.Debug("bus: dropped calls stream", "peer", peer.Addr, "err", err)
			sc.end(streamCodeProtocol)
			return
		}
		if req.cancel {
			sc.cancel(req.callID)
			continue
		}
		p := wire.Protocol(req.protocol)
		h := b.handlers[hkey{p, req.method}]
		switch {
		case req.protocol > 0xff || h == nil || h.kind != kindUnary:
			sc.respond(b, req.callID, Error{Code: CodeUnimplemented, Message: fmt.Sprintf("no unary handler for %s/%s", p, req.method)}, nil)
			continue
		case expired(req.deadline):
			// The caller gave up already (the request waited in a queue,
			// or this process was paused): serving it is wasted work, and
			// for a write, work that may surprise a caller who retried.
			sc.respond(b, req.callID, errExpired, nil)
			b.m.observeHandled(p, req.method, CodeDeadlineExceeded, time.Now())
			continue
		case !b.enterHandler(p, req.method):
			sc.respond(b, req.callID, Error{Code: CodeUnavailable, Message: "bus stopping"}, nil)
			continue
		}
		var ctx context.Context
		var cancel context.CancelFunc
		if req.deadline != 0 {
			ctx, cancel = context.WithDeadline(pctx, time.Unix(0, req.deadline))
		} else {
			ctx, cancel = context.WithCancel(pctx)
		}
		sc.mu.Lock()
		sc.running[req.callID] = cancel
		sc.mu.Unlock()
		fbuf := fr.buf // req.payload aliases it: the handler owns it now
		fr.buf = nil
		b.wg.Add(1) // this goroutine is counted, so the count is not zero
		go func() {
			defer b.wg.Done()
			defer putBuf(fbuf)
			start := time.Now()
			resp, herr := h.unary(ctx, req.payload)
			sc.mu.Lock()
			delete(sc.running, req.callID)
			sc.mu.Unlock()
			cancel()
			status := toWire(herr)
			if herr != nil {
				resp = nil
			}
			sc.respond(b, req.callID, status, resp)
			b.exitHandler(p, req.method)
			b.m.observeHandled(p, req.method, status.Code, start)
		}()
	}
}

// respond writes the Response to call id; a response that cannot be
// encoded is replaced by an error saying why.
func (sc *callsServer) respond(b *Bus, id uint64, status Error, m proto.Message) {
	buf := getBuf()
	defer putBuf(buf)
	body, off := beginFrame((*buf)[:0])
	body, err := appendCallResponse(body, id, status, m)
	if err == nil {
		err = endFrame(body, off, b.maxSize)
	}
	if err != nil {
		c := CodeInternal
		if errors.Is(err, wire.ErrFrameTooLarge) {
			c = CodeResourceExhausted
		}
		body, off = beginFrame(body[:0])
		body, _ = appendCallResponse(body, id, Error{Code: c, Message: "response: " + err.Error()}, nil)
		_ = endFrame(body, off, b.maxSize)
	}
	*buf = body
	if sc.w.write(body) == nil {
		b.m.sent.Add(float64(len(body)))
	}
}

// cancel cancels the handler of call id, if it runs.
func (sc *callsServer) cancel(id uint64) {
	sc.mu.Lock()
	cancel := sc.running[id]
	sc.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// end stops the stream after its reader stopped: running handlers are
// cancelled (the caller is gone or done); code 0 closes the send side
// cleanly, any other resets both sides with it.
func (sc *callsServer) end(code quic.StreamErrorCode) {
	sc.mu.Lock()
	for _, cancel := range sc.running {
		cancel()
	}
	sc.mu.Unlock()
	if code == 0 {
		sc.w.closeSend()
		return
	}
	sc.str.reset(code)
}

// addCalls tracks a calls stream for Stop; it fails once Stop has begun.
func (b *Bus) addCalls(sc *callsServer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping {
		return false
	}
	b.callsSrv[sc] = struct{}{}
	b.m.callsSrv.Inc()
	return true
}

func (b *Bus) removeCalls(sc *callsServer) {
	b.mu.Lock()
	delete(b.callsSrv, sc)
	b.m.callsSrv.Dec()
	b.mu.Unlock()
}

// drainCalls closes the send side of every calls stream, after the
// responses already queued, and waits until each caller has closed its
// side (it does on reading the end), so that closing the connections does
// not discard answers not yet delivered. It gives up at ctx's end or after
// callerDoneTimeout.
func (b *Bus) drainCalls(ctx context.Context) {
	b.mu.Lock()
	scs := make([]*callsServer, 0, len(b.callsSrv))
	for sc := range b.callsSrv {
		scs = append(scs, sc)
	}
	b.mu.Unlock()
	t := time.NewTimer(stoppingCallerDoneTimeout)
	defer t.Stop()
	for _, sc := range scs {
		sc.w.closeSend()
	}
	for _, sc := range scs {
		select {
		case <-sc.done:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

// track runs f on a goroutine counted by b.wg, unless Stop has reached the
// point where it waits for them.
func (b *Bus) track(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}
