package bus

// NOTE: this file fixes the public API of the bus. Bodies marked
// "pending" are being written; the signatures are the contract.

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

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
	// IdleTimeout closes a connection with no traffic for this long. Default 30s.
	IdleTimeout time.Duration
	// KeepAlivePeriod sends keep-alives on open connections. Default 10s.
	KeepAlivePeriod time.Duration
	// RedialBackoffMin and RedialBackoffMax bound the wait before redialing
	// a peer whose last dial failed. Defaults 50ms and 5s.
	RedialBackoffMin, RedialBackoffMax time.Duration
}

// Deps are the bus's injected dependencies.
type Deps struct {
	// Logger receives lifecycle and error logs. Required.
	Logger *slog.Logger
	// Registerer receives the bus metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Bus is one daemon's QUIC endpoint: one UDP socket for listening and
// dialing, handlers per protocol and method, and cached connections to peers.
type Bus struct{}

// New validates cfg and returns an unstarted Bus.
func New(cfg Config, deps Deps) (*Bus, error) { return nil, errPending }

var errPending = errors.New("bus: pending")

// Start binds the socket and starts accepting. ctx bounds start-up only.
func (b *Bus) Start(ctx context.Context) error { return errPending }

// Addr returns the bound UDP address (valid after Start).
func (b *Bus) Addr() net.Addr { return nil }

// Stop refuses new calls, waits for in-flight handlers until ctx ends,
// closes every connection and the socket. It is idempotent.
func (b *Bus) Stop(ctx context.Context) error { return errPending }

// Peer describes the remote end of a call as seen by a handler.
type Peer struct {
	// Addr is the peer's UDP address; because each daemon dials from its
	// listening socket, it is also the address to call it back on.
	Addr string
	// Name is the common name of the peer's certificate.
	Name string
}

// PeerFromContext returns the calling peer inside a handler.
func PeerFromContext(ctx context.Context) (Peer, bool) { return Peer{}, false }

// message constrains a type parameter to pointers to generated protobuf structs.
type message[T any] interface {
	*T
	proto.Message
}

// HandleUnary registers h for unary calls of method on protocol p. The
// handler's ctx carries the caller's deadline and is cancelled if the
// caller gives up. Its error is mapped with CodeOf.
func HandleUnary[Req any, Resp proto.Message, PReq message[Req]](b *Bus, p wire.Protocol, method string, h func(context.Context, PReq) (Resp, error)) {
}

// HandleStream registers h for server-streaming calls of method on p. h
// calls send for each response; returning ends the stream (with the error's
// code if non-nil). send fails once the caller has gone away.
func HandleStream[Req any, Resp proto.Message, PReq message[Req]](b *Bus, p wire.Protocol, method string, h func(ctx context.Context, req PReq, send func(Resp) error) error) {
}

// HandleBatch registers h for one-way batches of method on p. Batches from
// one peer arrive in the order sent, one h call at a time per stream.
func HandleBatch[Msg any, PMsg message[Msg]](b *Bus, p wire.Protocol, method string, h func(ctx context.Context, from Peer, batch []PMsg)) {
}

// HandleDatagram registers h for unreliable datagrams of protocol p. h runs
// on the connection's receive goroutine: it must not block.
func (b *Bus) HandleDatagram(p wire.Protocol, h func(from Peer, payload []byte)) {}

// Call makes a unary call to the daemon at addr and unmarshals the answer
// into resp. Failures are *Error values (use errors.Is with the sentinels).
func (b *Bus) Call(ctx context.Context, addr string, p wire.Protocol, method string, req, resp proto.Message) error {
	return errPending
}

// ClientStream is the caller's side of a server-streaming call.
type ClientStream struct{}

// Stream opens a server-streaming call.
func (b *Bus) Stream(ctx context.Context, addr string, p wire.Protocol, method string, req proto.Message) (*ClientStream, error) {
	return nil, errPending
}

// Recv reads the next response into m. It returns io.EOF after the last
// one, or the stream's error.
func (s *ClientStream) Recv(m proto.Message) error { return errPending }

// Close abandons the stream; the handler's context is cancelled.
func (s *ClientStream) Close() error { return errPending }

// SendBatch sends msgs as one frame on the long-lived one-way stream to
// addr for (p, method), opening it if needed. An error means the batch may
// not have been delivered; the next call reopens the stream.
func (b *Bus) SendBatch(ctx context.Context, addr string, p wire.Protocol, method string, msgs ...proto.Message) error {
	return errPending
}

// MaxDatagramPayload is the largest payload SendDatagram accepts, in bytes.
const MaxDatagramPayload = 1100

// SendDatagram sends payload to addr unreliably. It dials if no
// connection is open (the dial is not unreliable: it waits up to ctx).
func (b *Bus) SendDatagram(ctx context.Context, addr string, p wire.Protocol, payload []byte) error {
	return errPending
}
