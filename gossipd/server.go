package gossipd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Name is the daemon's name.
const Name = "gossipd"

// Default addresses (see the ports table in README.md).
const (
	DefaultBusAddr   = "127.0.0.1:7403"
	DefaultAdminAddr = "127.0.0.1:7503"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// Config configures the gossipd server.
type Config struct {
	// Join are the bus addresses of gossipds to join at start;
	// empty for the first node. Joining is retried in the background every
	// JoinRetry until one answers. Default none.
	Join []string
	// Cluster names the cluster; packets of another cluster are dropped.
	// Default "pleiades".
	Cluster string
	// Protocol holds the SWIM/Lifeguard timers. Default
	// swim.DefaultLANConfig() (see gossipd/internal/swim for each field).
	Protocol swim.Config
	// JoinRetry is the pause between join attempts. Default 2 s.
	JoinRetry time.Duration
	// AdvertiseAddr is the bus address other members reach this gossipd
	// at (the member's address in everyone's table). Empty means the
	// bound bus address; a bus on a wildcard address (0.0.0.0, ::) then
	// fails Start, since no one could dial it. Default empty.
	AdvertiseAddr string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{Cluster: "pleiades", Protocol: swim.DefaultLANConfig(), JoinRetry: 2 * time.Second}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, a := range c.Join {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("gossipd: Join %q: %w", a, err)
		}
	}
	if err := c.Protocol.Validate(); err != nil {
		return fmt.Errorf("gossipd: Protocol: %w", err)
	}
	if c.JoinRetry <= 0 {
		return fmt.Errorf("gossipd: JoinRetry %v must be positive", c.JoinRetry)
	}
	if c.AdvertiseAddr != "" {
		if err := config.ValidateAdvertiseAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("gossipd: AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
	}
	return nil
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and the daemon's /v1 views. Required.
	Admin *admin.Server
	// NodeID is this node's id. Required (non-zero).
	NodeID uint64
}

// Server is the gossipd daemon.
type Server struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	ready chan struct{}
	errc  chan error

	eng   *swim.Engine
	sendq chan outPacket
	// tasks are the server's goroutines; Stop closes and waits for them.
	tasks  daemon.Tasks
	cancel context.CancelFunc
	ctx    context.Context

	mu struct {
		sync.Mutex
		started, stopped, joined bool
		subs                     map[chan *gossippb.Event]struct{}
	}
}

type outPacket struct {
	addr string
	b    []byte
}

// New validates cfg, registers the bus handlers and the readiness check
// and returns an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil || deps.NodeID == 0 {
		return nil, errors.New("gossipd: Deps.Logger, Bus, Admin and NodeID are required")
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1), sendq: make(chan outPacket, 1024)}
	s.mu.subs = map[chan *gossippb.Event]struct{}{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.registerHandlers()
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.Handle("/v1/members", http.HandlerFunc(s.serveMembers))
	return s, nil
}

func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return errors.New("stopped")
	case !s.mu.started:
		return errors.New("not started")
	case len(s.cfg.Join) > 0 && !s.mu.joined:
		return errors.New("not joined yet")
	}
	return nil
}

// busTransport carries engine messages over the bus.
type busTransport struct{ s *Server }

func (t busTransport) SendPacket(addr string, b []byte) {
	select {
	case t.s.sendq <- outPacket{addr: addr, b: b}:
	default: // queue full: drop, as the network would
	}
}

func (t busTransport) PushPull(addr string, req *gossippb.PushPullState, done func(*gossippb.PushPullState, error)) {
	s := t.s
	s.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		var resp gossippb.PushPullState
		err := s.deps.Bus.Call(ctx, addr, wire.ProtoGossip, gossipclient.MethodPushPull, req, &resp)
		if err != nil {
			done(nil, err)
			return
		}
		done(&resp, nil)
	})
}

func (t busTransport) PingStream(addr string, ping *gossippb.Ping, timeout time.Duration, done func(*gossippb.Ack, error)) {
	s := t.s
	s.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, timeout)
		defer cancel()
		var ack gossippb.Ack
		if err := s.deps.Bus.Call(ctx, addr, wire.ProtoGossip, gossipclient.MethodPing, ping, &ack); err != nil {
			done(nil, err)
			return
		}
		done(&ack, nil)
	})
}

// Start starts the protocol and, with Config.Join, joins in the
// background; it does not block.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return fmt.Errorf("gossipd: already started or stopped")
	}
	addr, err := s.advertiseAddr()
	if err != nil {
		return err
	}
	eng, err := swim.NewEngine(s.cfg.Protocol, s.cfg.Cluster, s.deps.NodeID, addr, &gossippb.Metadata{}, swim.EngineDeps{
		Clock: swim.WallClock{}, Transport: busTransport{s}, Seed: uint64(time.Now().UnixNano()),
		OnEvent: s.onEvent, OnUser: s.onUser,
	})
	if err != nil {
		return fmt.Errorf("gossipd: %w", err)
	}
	s.eng = eng
	s.mu.started = true
	s.tasks.Go(s.sendLoop)
	if len(s.cfg.Join) > 0 {
		s.tasks.Go(s.joinLoop)
	}
	s.mu.Unlock()
	// Lock order: the engine's lock, then s.mu (events are published with
	// the engine's lock held), so the engine starts without s.mu.
	eng.Start()
	s.mu.Lock()
	close(s.ready)
	s.log.Info("gossipd server started", slog.Any("join", s.cfg.Join), slog.String("addr", addr))
	return nil
}

// advertiseAddr is this member's address: Config.AdvertiseAddr, else the
// bound bus address, which must not be a wildcard.
func (s *Server) advertiseAddr() (string, error) {
	if s.cfg.AdvertiseAddr != "" {
		return s.cfg.AdvertiseAddr, nil
	}
	a := s.deps.Bus.Addr()
	if ua, ok := a.(*net.UDPAddr); ok && ua.IP.IsUnspecified() {
		return "", fmt.Errorf("gossipd: the bus listens on the wildcard address %s, which other members cannot dial: set --advertise-addr", a)
	}
	return a.String(), nil
}

// Per-peer datagram senders: a send to a peer without a live connection
// dials first, which may take up to sendTimeout when the peer is gone, so
// each peer address gets its own sender goroutine and queue and a dead
// member cannot delay probes and acks to the others. A sender idle for
// senderIdle ends.
const (
	sendTimeout    = time.Second
	senderIdle     = 30 * time.Second
	senderQueueLen = 64
)

// sendLoop hands queued datagrams to per-peer senders and retires idle
// senders; it exits when the server stops, after which the senders exit
// too (they watch s.ctx).
func (s *Server) sendLoop() {
	type sender struct {
		ch   chan []byte
		used time.Time
	}
	senders := map[string]*sender{}
	tick := time.NewTicker(senderIdle / 2)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			for addr, sd := range senders {
				if now.Sub(sd.used) > senderIdle {
					close(sd.ch)
					delete(senders, addr)
				}
			}
		case p := <-s.sendq:
			sd := senders[p.addr]
			if sd == nil {
				sd = &sender{ch: make(chan []byte, senderQueueLen)}
				senders[p.addr] = sd
				addr, ch := p.addr, sd.ch
				s.tasks.Go(func() { s.peerSender(addr, ch) })
			}
			sd.used = time.Now()
			select {
			case sd.ch <- p.b:
			default: // this peer is slow (dialing): drop, as the network would
			}
		}
	}
}

// peerSender sends one peer's datagrams in order until ch is closed or
// the server stops.
func (s *Server) peerSender(addr string, ch <-chan []byte) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
			if err := s.deps.Bus.SendDatagram(ctx, addr, wire.ProtoGossip, b); err != nil {
				s.log.Debug("gossip datagram not sent", slog.String("to", addr), slog.Any("err", err))
			}
			cancel()
		}
	}
}

// joinLoop retries the join list until one address answers or the server
// stops.
func (s *Server) joinLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		res := make(chan int, 1)
		s.eng.Join(s.cfg.Join, func(n int) { res <- n })
		select {
		case <-s.ctx.Done():
			return
		case n := <-res:
			if n > 0 {
				s.mu.Lock()
				s.mu.joined = true
				s.mu.Unlock()
				s.log.Info("joined cluster", slog.Int("answered", n))
				return
			}
		}
		t.Reset(s.cfg.JoinRetry)
	}
}

func (s *Server) onEvent(ev swim.Event) {
	s.publish(&gossippb.Event{Type: ev.Type, Member: swim.MemberToProto(ev.Member, nil)})
}

func (s *Server) onUser(u *gossippb.UserEvent) {
	s.publish(&gossippb.Event{Type: gossippb.EventType_EVENT_TYPE_USER, User: u})
}

// publish hands an event to every subscriber without blocking; a slow
// subscriber loses events.
func (s *Server) publish(ev *gossippb.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.mu.subs {
		select {
		case c <- ev:
		default:
		}
	}
}

// Members returns this node's membership table; nil before Start.
func (s *Server) Members() []Member {
	s.mu.Lock()
	eng := s.eng
	s.mu.Unlock()
	if eng == nil {
		return nil
	}
	return eng.Members()
}

// Ready is closed once the server has started.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops the protocol (without announcing a leave; use the Leave
// method for that) and waits for the server's goroutines; it is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return nil
	}
	s.mu.stopped = true
	s.tasks.Close()
	s.mu.Unlock()
	if s.eng != nil {
		s.eng.Stop()
	}
	s.cancel()
	if err := s.tasks.Wait(ctx); err != nil {
		return fmt.Errorf("gossipd: stop: %w", err)
	}
	return nil
}
