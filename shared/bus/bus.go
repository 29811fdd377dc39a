package bus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// ALPN is the TLS application protocol every bus connection negotiates.
const ALPN = "pleiades/1"

// Config configures a bus endpoint. The zero value of each duration or
// size field means its default.
type Config struct {
	// ListenAddr is the UDP address to bind, e.g. "127.0.0.1:7401"; port 0
	// picks a free port (read it back with Addr). Required.
	ListenAddr string
	// TLS holds the node's certificate and the cluster CA; it yields the
	// server and client configurations (mutual TLS 1.3). Required.
	TLS *tls.Config
	// MaxFrameSize bounds every frame sent or received, in bytes.
	// Default wire.DefaultMaxFrameSize (16 MiB).
	MaxFrameSize int
	// DialTimeout bounds one connection attempt. Default 5s.
	DialTimeout time.Duration
	// IdleTimeout closes a dialed connection that no call, batch send or
	// datagram has used for this long (the next use redials, resuming the
	// TLS session); it is also the QUIC idle timeout for connections that
	// carry no packets at all. A batch stream with no batch for this long
	// counts as idle. Default 30s.
	IdleTimeout time.Duration
	// KeepAlivePeriod sends keep-alives on open connections, so that NATs
	// and peers do not drop a connection in use between calls; they do
	// not count as use. Default 10s.
	KeepAlivePeriod time.Duration
	// RedialBackoffMin and RedialBackoffMax bound the wait before redialing
	// a peer whose last dial failed. Defaults 50ms and 5s.
	RedialBackoffMin, RedialBackoffMax time.Duration
	// DisableTCP turns off the TCP listener that Start binds at
	// ListenAddr's address and port beside the UDP socket, and the sending
	// of large requests over TCP (see "Large calls over TCP" in doc.go):
	// every call then takes QUIC (or a local socket). Default false.
	DisableTCP bool
}

// Deps are the bus's injected dependencies.
type Deps struct {
	// Logger receives lifecycle and error logs. Required.
	Logger *slog.Logger
	// Registerer receives the bus metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// preambleTimeout bounds how long an accepted stream may take to send its
// preamble and first frame.
const preambleTimeout = 5 * time.Second

// Bus is one daemon's QUIC endpoint: one UDP socket for listening and
// dialing, handlers per protocol and method, and cached connections to peers.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	qconf   *quic.Config
	srvTLS  *tls.Config
	cliTLS  *tls.Config
	maxSize int
	// tcpMin is the request size above which a unary call goes over TCP:
	// tcpCallMin, changed only by the benchmark that compares thresholds.
	tcpMin int

	// handlers and dgram are written only before Start.
	handlers map[hkey]*handler
	dgram    [256]func(Peer, []byte)
	rules    map[wire.Protocol]Rules
	denyLog  denyLogger

	mu       sync.Mutex
	started  bool
	stopping bool // no new calls or handlers
	closed   bool // no new goroutines
	active   int  // running handlers
	// running counts the running handlers by method, for the log of a
	// slow stop.
	running map[hkey]int
	// stopBegun ends when Stop begins. It is the parent context of
	// server-stream handlers (subscriptions), which would otherwise run
	// until their callers leave (unary calls drain instead), and it cuts
	// short the waits on callers that may be gone (see awaitCallerDone).
	stopBegun       context.Context
	cancelStopBegun context.CancelFunc
	drained         chan struct{}
	peers           map[string]*peerSet
	conns           map[*quic.Conn]struct{}
	accepted        map[string]*quic.Conn // latest accepted connection by remote address
	batches         map[batchKey]*batchStream
	callsSrv        map[*callsServer]struct{} // served calls streams, for Stop
	localPath       string                    // ListenLocal's socket, "" for none
	localLn         *net.UnixListener
	tcpLn           *net.TCPListener                     // beside the UDP socket, unless Config.DisableTCP
	sockConns       map[net.Conn]struct{}                // socket connections (Unix and TCP), dialed and accepted
	local           atomic.Pointer[map[string]*sockPeer] // peers' local sockets by bus address (copy on write)
	bulk            map[string]*sockPeer                 // pools for large requests, by sockPeer.name
	udp             *net.UDPConn
	tr              *quic.Transport
	ln              *quic.Listener
	ctx             context.Context // cancelled when handlers must give up
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	stopOnce        sync.Once
	stopErr         error
}

// New validates cfg and returns an unstarted Bus.
func New(cfg Config, deps Deps) (*Bus, error) {
	if cfg.ListenAddr == "" {
		return nil, errors.New("bus: Config.ListenAddr is required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("bus: Config.TLS is required")
	}
	if cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.TLS.ClientCAs == nil {
		return nil, errors.New("bus: Config.TLS must require and verify client certificates (ClientAuth RequireAndVerifyClientCert, ClientCAs set): authorization relies on the caller's certificate")
	}
	if deps.Logger == nil {
		return nil, errors.New("bus: Deps.Logger is required")
	}
	if cfg.MaxFrameSize < 0 || cfg.DialTimeout < 0 || cfg.IdleTimeout < 0 || cfg.KeepAlivePeriod < 0 ||
		cfg.RedialBackoffMin < 0 || cfg.RedialBackoffMax < 0 {
		return nil, errors.New("bus: negative size or duration in Config")
	}
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = wire.DefaultMaxFrameSize
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.KeepAlivePeriod == 0 {
		cfg.KeepAlivePeriod = 10 * time.Second
	}
	if cfg.RedialBackoffMin == 0 {
		cfg.RedialBackoffMin = 50 * time.Millisecond
	}
	if cfg.RedialBackoffMax == 0 {
		cfg.RedialBackoffMax = 5 * time.Second
	}
	if cfg.RedialBackoffMax < cfg.RedialBackoffMin {
		cfg.RedialBackoffMax = cfg.RedialBackoffMin
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	srv := cfg.TLS.Clone()
	srv.NextProtos = []string{ALPN}
	srv.MinVersion = tls.VersionTLS13
	cli := cfg.TLS.Clone()
	cli.NextProtos = []string{ALPN}
	cli.MinVersion = tls.VersionTLS13
	if cli.ClientSessionCache == nil {
		cli.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return &Bus{
		cfg:     cfg,
		log:     deps.Logger,
		m:       m,
		srvTLS:  srv,
		cliTLS:  cli,
		maxSize: cfg.MaxFrameSize,
		tcpMin:  tcpCallMin,
		qconf: &quic.Config{
			HandshakeIdleTimeout:           cfg.DialTimeout,
			MaxIdleTimeout:                 cfg.IdleTimeout,
			KeepAlivePeriod:                cfg.KeepAlivePeriod,
			EnableDatagrams:                true,
			MaxIncomingStreams:             1 << 12,
			MaxIncomingUniStreams:          -1,
			InitialStreamReceiveWindow:     1 << 20,
			MaxStreamReceiveWindow:         8 << 20,
			InitialConnectionReceiveWindow: 16 << 20,
			MaxConnectionReceiveWindow:     64 << 20,
		},
		handlers: make(map[hkey]*handler),
		rules:    make(map[wire.Protocol]Rules),
		running:  make(map[hkey]int),
		drained:  make(chan struct{}),
		peers:    make(map[string]*peerSet),
		conns:    make(map[*quic.Conn]struct{}),
		accepted: make(map[string]*quic.Conn),
		batches:  make(map[batchKey]*batchStream),
		callsSrv: make(map[*callsServer]struct{}),

		sockConns: make(map[net.Conn]struct{}),
		bulk:      make(map[string]*sockPeer),
	}, nil
}

// resetKey derives the stateless reset key from the node's private key so
// that a restarted node on the same address can tell its peers at once that
// their old connections are gone. Without a key resets are disabled.
func resetKey(c *tls.Config) *quic.StatelessResetKey {
	if len(c.Certificates) == 0 || c.Certificates[0].PrivateKey == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.Certificates[0].PrivateKey)
	if err != nil {
		return nil
	}
	h := sha256.New()
	h.Write([]byte("pleiades bus stateless reset\x00"))
	h.Write(der)
	var k quic.StatelessResetKey
	copy(k[:], h.Sum(nil))
	return &k
}

// Start binds the socket and starts accepting. ctx bounds start-up only.
func (b *Bus) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return errors.New("bus: already started")
	}
	if b.stopping {
		return errors.New("bus: stopped")
	}
	ua, err := net.ResolveUDPAddr("udp", b.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("bus: listen address %q: %w", b.cfg.ListenAddr, err)
	}
	udp, tln, err := b.bind(ua)
	if err != nil {
		return err
	}
	closeTCP := func() {
		if tln != nil {
			_ = tln.Close()
		}
	}
	tr := &quic.Transport{Conn: udp, StatelessResetKey: resetKey(b.cfg.TLS)}
	ln, err := tr.Listen(b.srvTLS, b.qconf)
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		closeTCP()
		return fmt.Errorf("bus: listen %s: %w", b.cfg.ListenAddr, err)
	}
	b.udp, b.tr, b.ln = udp, tr, ln
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.stopBegun, b.cancelStopBegun = context.WithCancel(b.ctx)
	if err := b.startLocal(); err != nil {
		b.cancel()
		_ = ln.Close()
		_ = tr.Close()
		_ = udp.Close()
		closeTCP()
		return err
	}
	b.started = true
	b.wg.Add(2)
	go b.acceptLoop()
	go b.reapLoop()
	b.startTCP(tln)
	b.log.Info("bus started", "addr", udp.LocalAddr().String(), "tcp", tln != nil, "local_socket", b.localPath)
	return nil
}

// MaxFrameSize returns the largest frame this bus sends or accepts
// (Config.MaxFrameSize with its default applied). Peers are expected to
// run with the same limit.
func (b *Bus) MaxFrameSize() int { return b.maxSize }

// Addr returns the bound UDP address (valid after Start).
func (b *Bus) Addr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp == nil {
		return nil
	}
	return b.udp.LocalAddr()
}

// Stop refuses new calls, waits for in-flight handlers until ctx ends,
// closes every connection and the socket. It is idempotent.
func (b *Bus) Stop(ctx context.Context) error {
	b.stopOnce.Do(func() { b.stopErr = b.stop(ctx) })
	return b.stopErr
}

func (b *Bus) stop(ctx context.Context) error {
	b.mu.Lock()
	b.stopping = true
	started := b.started
	if b.active == 0 {
		close(b.drained)
	}
	b.mu.Unlock()
	if !started {
		return nil
	}
	// Subscriptions end now (their callers see the stream end and
	// resubscribe elsewhere or later); unary calls drain.
	b.cancelStopBegun()
	slow := time.NewTimer(slowStop)
	defer slow.Stop()
	var err error
drain:
	for {
		select {
		case <-b.drained:
			break drain
		case <-slow.C:
			b.log.Warn("bus still stopping: handlers running", slog.Duration("after", slowStop), slog.String("handlers", b.runningHandlers()))
		case <-ctx.Done():
			err = fmt.Errorf("bus: stop: handlers still running (%s): %w", b.runningHandlers(), ctx.Err())
			break drain
		}
	}
	b.drainCalls(ctx)
	// Snapshot the connections before cancelling b.ctx: cancelling ends the
	// accept loops, which untrack their connections, and an untracked
	// connection would only be destroyed with the transport, without the
	// CONNECTION_CLOSE that tells its peer to redial at once.
	b.mu.Lock()
	b.closed = true
	conns := make([]*quic.Conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	b.cancel()
	for _, c := range conns {
		_ = c.CloseWithError(connCodeStopping, "bus stopping")
	}
	b.closeSocks()
	_ = b.ln.Close()
	_ = b.tr.Close()
	_ = b.udp.Close()
	b.wg.Wait()
	b.log.Info("bus stopped")
	return err
}

// slowStop is how long Stop may drain before it logs what it waits for.
const slowStop = time.Second

// runningHandlers describes the handlers running, e.g. "kv/Get:2".
func (b *Bus) runningHandlers() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for k, n := range b.running {
		parts = append(parts, fmt.Sprintf("%s/%s:%d", k.p, k.method, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// enterHandler counts a handler of p/method in; it fails once Stop has
// begun.
func (b *Bus) enterHandler(p wire.Protocol, method string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping {
		return false
	}
	b.active++
	b.running[hkey{p, method}]++
	return true
}

func (b *Bus) exitHandler(p wire.Protocol, method string) {
	b.mu.Lock()
	b.active--
	if k := (hkey{p, method}); b.running[k] > 1 {
		b.running[k]--
	} else {
		delete(b.running, k)
	}
	if b.active == 0 && b.stopping {
		close(b.drained)
	}
	b.mu.Unlock()
}

// Peer describes the remote end of a call as seen by a handler.
type Peer struct {
	// Addr is the peer's UDP address; because each daemon dials from its
	// listening socket, it is also the address to call it back on. For a
	// call over a local socket it is "unix:" and the socket's path; over
	// TCP (a large request) "tcp:" and the caller's TCP address, whose port
	// is not its bus port. Neither is an address to call back on.
	Addr string
	// Name is the common name of the peer's certificate.
	Name string
	// Role is the role the peer's certificate carries (KindNone when it
	// names none or an unreadable one).
	Role tlsutil.Role
}

type peerKey struct{}

// PeerFromContext returns the calling peer inside a handler.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(*Peer)
	if !ok {
		return Peer{}, false
	}
	return *p, true
}

// message constrains a type parameter to pointers to generated protobuf structs.
type message[T any] interface {
	*T
	proto.Message
}

// HandleUnary registers h for unary calls of method on protocol p. The
// handler's ctx carries the caller's deadline and is cancelled if the
// caller gives up. Its error is mapped with CodeOf.
func HandleUnary[Req any, Resp proto.Message, PReq message[Req]](b *Bus, p wire.Protocol, method string, h func(context.Context, PReq) (Resp, error)) {
	b.register(p, method, &handler{kind: kindUnary, newReq: func() proto.Message { return PReq(new(Req)) }, unary: func(ctx context.Context, payload []byte) (proto.Message, error) {
		req := PReq(new(Req))
		if err := proto.Unmarshal(payload, req); err != nil {
			return nil, Errorf(CodeInvalidArgument, "decode %T: %v", req, err)
		}
		if err := b.authorize(ctx, p, method, req); err != nil {
			return nil, err
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}})
}

// HandleStream registers h for server-streaming calls of method on p. h
// calls send for each response; returning ends the stream (with the error's
// code if non-nil). send fails once the caller has gone away.
func HandleStream[Req any, Resp proto.Message, PReq message[Req]](b *Bus, p wire.Protocol, method string, h func(ctx context.Context, req PReq, send func(Resp) error) error) {
	b.register(p, method, &handler{kind: kindStream, newReq: func() proto.Message { return PReq(new(Req)) }, stream: func(ctx context.Context, payload []byte, send func(proto.Message) error) error {
		req := PReq(new(Req))
		if err := proto.Unmarshal(payload, req); err != nil {
			return Errorf(CodeInvalidArgument, "decode %T: %v", req, err)
		}
		if err := b.authorize(ctx, p, method, req); err != nil {
			return err
		}
		return h(ctx, req, func(r Resp) error { return send(r) })
	}})
}

// HandleBatch registers h for one-way batches of method on p. Batches from
// one peer arrive in the order sent, one h call at a time per stream.
func HandleBatch[Msg any, PMsg message[Msg]](b *Bus, p wire.Protocol, method string, h func(ctx context.Context, from Peer, batch []PMsg)) {
	b.register(p, method, &handler{kind: kindBatch, newReq: func() proto.Message { return PMsg(new(Msg)) }, batch: func(ctx context.Context, from Peer, msgs [][]byte) error {
		batch := make([]PMsg, len(msgs))
		for i, raw := range msgs {
			m := PMsg(new(Msg))
			if err := proto.Unmarshal(raw, m); err != nil {
				return fmt.Errorf("decode %T: %w", m, err)
			}
			if err := b.permit(p, method, from, m); err != nil {
				return err
			}
			batch[i] = m
		}
		h(ctx, from, batch)
		return nil
	}})
}

// HandleDatagram registers h for unreliable datagrams of protocol p. h runs
// on the connection's receive goroutine: it must not block.
func (b *Bus) HandleDatagram(p wire.Protocol, h func(from Peer, payload []byte)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		panic("bus: HandleDatagram after Start")
	}
	b.dgram[p] = h
}

// Call makes a unary call to the daemon at addr and unmarshals the answer
// into resp. Failures are *Error values (use errors.Is with the sentinels).
func (b *Bus) Call(ctx context.Context, addr string, p wire.Protocol, method string, req, resp proto.Message) error {
	start := time.Now()
	err := b.call(ctx, addr, p, method, req, resp)
	b.m.observeCall(p, method, err, start)
	return err
}

func (b *Bus) call(ctx context.Context, addr string, p wire.Protocol, method string, req, resp proto.Message) error {
	if !p.Valid() {
		return Errorf(CodeInvalidArgument, "unknown protocol %d", byte(p))
	}
	if ok, err := b.callOnCalls(ctx, addr, p, method, req, resp); ok {
		return err
	}
	return b.streamCall(ctx, addr, p, method, req, resp)
}

// ClientStream is the caller's side of a server-streaming call.
type ClientStream struct {
	b      *Bus
	str    *quic.Stream
	ctx    context.Context
	stop   func() bool
	rd     frameReader
	p      wire.Protocol
	method string
	start  time.Time
	mu     sync.Mutex
	err    error // sticky result once finished
}

// Stream opens a server-streaming call.
func (b *Bus) Stream(ctx context.Context, addr string, p wire.Protocol, method string, req proto.Message) (*ClientStream, error) {
	start := time.Now()
	s, err := b.openStream(ctx, addr, p, method, req)
	if err != nil {
		b.m.observeCall(p, method, err, start)
		return nil, err
	}
	s.start = start
	return s, nil
}

// Recv reads the next response into m. It returns io.EOF after the last
// one, or the stream's error.
func (s *ClientStream) Recv(m proto.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	err := s.recv(m)
	if err != nil {
		s.finish(err)
		return s.err
	}
	return nil
}

// Close abandons the stream; the handler's context is cancelled.
func (s *ClientStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.finish(Errorf(CodeCanceled, "stream closed by caller"))
	}
	return nil
}

// MaxDatagramPayload is the largest payload SendDatagram accepts, in bytes.
const MaxDatagramPayload = 1100

// SendDatagram sends payload to addr unreliably. It dials if no
// connection is open (the dial is not unreliable: it waits up to ctx).
func (b *Bus) SendDatagram(ctx context.Context, addr string, p wire.Protocol, payload []byte) error {
	if len(payload) > MaxDatagramPayload {
		return Errorf(CodeInvalidArgument, "datagram payload of %d bytes exceeds %d", len(payload), MaxDatagramPayload)
	}
	if !p.Valid() {
		return Errorf(CodeInvalidArgument, "unknown protocol %d", byte(p))
	}
	if err := b.checkOpen(); err != nil {
		return err
	}
	slot := b.peer(addr, false)
	slot.acquire()
	defer slot.release()
	conn, err := slot.get(ctx, b)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, wire.PreambleLen+len(payload))
	buf = wire.AppendPreamble(buf, p)
	buf = append(buf, payload...)
	if err := conn.SendDatagram(buf); err != nil {
		return Errorf(CodeUnavailable, "send datagram to %s: %v", addr, err)
	}
	b.m.sent.Add(float64(len(buf)))
	return nil
}
