package msgd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
)

// Name is the daemon's name.
const Name = "msgd"

// Defaults (see the ports table).
const (
	DefaultBusAddr         = "127.0.0.1:7406"
	DefaultAdminAddr       = "127.0.0.1:7506"
	DefaultGossipAddr      = "127.0.0.1:7403"
	DefaultClockAddr       = "127.0.0.1:7404"
	DefaultRaftAddr        = "127.0.0.1:7402"
	DefaultStoreAddr       = "127.0.0.1:7401"
	DefaultWorkflowAddr    = "127.0.0.1:7405"
	DefaultNATSHost        = "127.0.0.1"
	DefaultNATSPort        = 4222
	DefaultNATSClusterPort = 6222
	DefaultClusterName     = "pleiades"
	// DefaultMaxPayload is the largest message NATS accepts (NATS's own
	// default, 1 MiB).
	DefaultMaxPayload = 1 << 20
	// DefaultJetStreamMaxMemory bounds memory-backed streams (256 MiB).
	DefaultJetStreamMaxMemory = 256 << 20
	// DefaultJetStreamMaxStore bounds file-backed streams (8 GiB).
	DefaultJetStreamMaxStore = 8 << 30
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// Client TLS modes (Config.ClientTLS).
const (
	// ClientTLSOff: clients connect in plain text.
	ClientTLSOff = "off"
	// ClientTLSOn: clients must use TLS; the server presents the node's
	// certificate (verify it with the cluster CA).
	ClientTLSOn = "on"
	// ClientTLSVerify: as on, and clients must present a certificate
	// signed by the cluster CA with a role (node, admin or client); without
	// an AuthFile the role sets the client's permissions (see the package
	// documentation: a client certificate's key prefixes limit its
	// subjects).
	ClientTLSVerify = "verify"
)

// Config configures the messaging server. Zero ports mean "any free
// port" (tests); the defaults are DefaultConfig's.
type Config struct {
	// NATSHost is the interface of the client and route listeners.
	// Default 127.0.0.1.
	NATSHost string
	// NATSPort is the TCP port of the NATS client listener. Default 4222.
	NATSPort int
	// NATSClusterPort is the TCP port of the NATS route listener. Default
	// 6222.
	NATSClusterPort int
	// NoCluster runs NATS alone: no route listener, no routes, JetStream
	// standalone at once. Default false.
	NoCluster bool
	// AdvertiseHost is the host other msgd dial for routes and clients are
	// told about, published in gossip; default NATSHost (a wildcard
	// NATSHost publishes nothing).
	AdvertiseHost string
	// ClusterName is the NATS cluster name; every msgd of a cluster must
	// use the same. Default "pleiades".
	ClusterName string
	// Routes are static route addresses (host:port of other msgd's route
	// listeners), kept in addition to those learned from gossip.
	Routes []string
	// GossipAddr is the bus address of the node's gossipd: routes to the
	// other hosts' msgd and membership events come from it; "" turns both
	// off. Default 127.0.0.1:7403.
	GossipAddr string
	// ClockAddr is the bus address of the node's clockd, whose health
	// verdicts become clock events; "" turns them off. Default
	// 127.0.0.1:7404.
	ClockAddr string
	// RaftAddr is the bus address of the node's raftd, whose range events
	// are bridged; "" turns them off. Default 127.0.0.1:7402.
	RaftAddr string
	// StoreAddr is the bus address of the node's stored, whose disk
	// status becomes disk events; "" turns them off. Default
	// 127.0.0.1:7401.
	StoreAddr string
	// WorkflowAddr is the bus address of the node's workflowd, whose
	// instances' lifecycle events become workflow events; "" turns them
	// off. Default 127.0.0.1:7405.
	WorkflowAddr string
	// DataDir is msgd's own directory; JetStream stores under
	// DataDir/jetstream. Required.
	DataDir string
	// ClientTLS is off, on or verify (see the ClientTLS constants).
	// Default off. Routes always use mutual TLS from the cluster CA, with
	// node certificates only.
	ClientTLS string
	// AuthFile is a NATS configuration file whose authorization block
	// (users, nkeys, no_auth_user, timeout) authenticates clients and
	// sets their permissions; "" lets every client in (under ClientTLS
	// verify: as its certificate's role allows). Default "".
	AuthFile string
	// MaxPayload is the largest message accepted, in bytes. Default 1 MiB.
	MaxPayload int32
	// JetStream turns JetStream on. Default true.
	JetStream bool
	// JetStreamMaxMemory and JetStreamMaxStore bound this server's
	// memory- and file-backed stream data, in bytes. Defaults 256 MiB and
	// 8 GiB.
	JetStreamMaxMemory, JetStreamMaxStore int64
	// RefreshInterval is how often the membership is re-read even without
	// an event. Default 5s.
	RefreshInterval time.Duration
	// EventsMaxAge is how long the cluster's events are kept in the
	// JetStream stream events.Stream (with JetStream on); 0 keeps no
	// stream. Default 24h.
	EventsMaxAge time.Duration
	// EventsMaxBytes bounds that stream (oldest events dropped first).
	// Default 256 MiB.
	EventsMaxBytes int64
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{
		NATSHost: DefaultNATSHost, NATSPort: DefaultNATSPort, NATSClusterPort: DefaultNATSClusterPort,
		ClusterName: DefaultClusterName, GossipAddr: DefaultGossipAddr, ClockAddr: DefaultClockAddr, RaftAddr: DefaultRaftAddr,
		StoreAddr: DefaultStoreAddr, WorkflowAddr: DefaultWorkflowAddr,
		ClientTLS: ClientTLSOff, MaxPayload: DefaultMaxPayload, JetStream: true,
		JetStreamMaxMemory: DefaultJetStreamMaxMemory, JetStreamMaxStore: DefaultJetStreamMaxStore,
		RefreshInterval: 5 * time.Second,
		EventsMaxAge:    24 * time.Hour, EventsMaxBytes: 256 << 20,
	}
}

// FieldError is a Config.Validate failure naming the field.
type FieldError struct {
	// Field is the Config field's name.
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "msgd: " + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate reports the first invalid field as a *FieldError.
func (c Config) Validate() error {
	if net.ParseIP(c.NATSHost) == nil {
		return fieldErr("NATSHost", "%q is not an IP address", c.NATSHost)
	}
	if c.NATSPort < 0 || c.NATSPort > 65535 {
		return fieldErr("NATSPort", "%d out of range 0..65535", c.NATSPort)
	}
	if c.NATSClusterPort < 0 || c.NATSClusterPort > 65535 {
		return fieldErr("NATSClusterPort", "%d out of range 0..65535", c.NATSClusterPort)
	}
	if !c.NoCluster && c.NATSPort != 0 && c.NATSPort == c.NATSClusterPort {
		return fieldErr("NATSClusterPort", "%d is also NATSPort", c.NATSPort)
	}
	if c.AdvertiseHost != "" && !validToken(c.AdvertiseHost) {
		return fieldErr("AdvertiseHost", "%q is not a host", c.AdvertiseHost)
	}
	if c.ClusterName == "" || !validToken(c.ClusterName) || strings.Contains(c.ClusterName, ".") {
		return fieldErr("ClusterName", "%q must be a non-empty word without spaces or dots", c.ClusterName)
	}
	for _, r := range c.Routes {
		if err := config.ValidateAddr(r); err != nil {
			return &FieldError{Field: "Routes", Err: fmt.Errorf("%q: %w", r, err)}
		}
	}
	for name, a := range map[string]string{"GossipAddr": c.GossipAddr, "ClockAddr": c.ClockAddr, "RaftAddr": c.RaftAddr, "StoreAddr": c.StoreAddr, "WorkflowAddr": c.WorkflowAddr} {
		if a == "" {
			continue
		}
		if err := config.ValidateAddr(a); err != nil {
			return &FieldError{Field: name, Err: fmt.Errorf("%q: %w", a, err)}
		}
	}
	if c.DataDir == "" {
		return fieldErr("DataDir", "required")
	}
	switch c.ClientTLS {
	case ClientTLSOff, ClientTLSOn, ClientTLSVerify:
	default:
		return fieldErr("ClientTLS", "%q: want off, on or verify", c.ClientTLS)
	}
	if c.MaxPayload <= 0 || c.MaxPayload > 64<<20 {
		return fieldErr("MaxPayload", "%d out of range 1..64 MiB", c.MaxPayload)
	}
	if c.JetStreamMaxMemory < 0 {
		return fieldErr("JetStreamMaxMemory", "%d is negative", c.JetStreamMaxMemory)
	}
	if c.JetStreamMaxStore < 0 {
		return fieldErr("JetStreamMaxStore", "%d is negative", c.JetStreamMaxStore)
	}
	if c.EventsMaxAge < 0 {
		return fieldErr("EventsMaxAge", "%v is negative (0 keeps no events stream)", c.EventsMaxAge)
	}
	if c.EventsMaxBytes <= 0 && c.EventsMaxAge > 0 {
		return fieldErr("EventsMaxBytes", "%d must be positive", c.EventsMaxBytes)
	}
	if c.RefreshInterval <= 0 {
		return fieldErr("RefreshInterval", "%v must be positive", c.RefreshInterval)
	}
	return nil
}

// validToken reports whether s has no spaces, control characters or NATS
// wildcards.
func validToken(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == '*' || r == '>' || r == 0x7f {
			return false
		}
	}
	return true
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and the /v1/nats views. Required.
	Admin *admin.Server
	// TLS is the node's mutual TLS configuration from the cluster CA, used
	// for routes (and clients under ClientTLS on/verify). Required.
	TLS *tls.Config
	// NodeID is this node's id; the NATS server is named "node-<id>".
	// Required.
	NodeID uint64
}

// ServerName returns the NATS server name of node id.
func ServerName(id uint64) string { return "node-" + strconv.FormatUint(id, 10) }

// Server is the messaging daemon.
type Server struct {
	cfg  Config
	d    Deps
	log  *slog.Logger
	opts *natsserver.Options // the options the server started with
	auth *authConfig
	// bridge is the event bridge's identity when clients authenticate
	// (auth or certAuth set), else nil.
	bridge *bridgeAuth
	// certAuth authenticates clients by certificate (Config.certClients).
	certAuth *certAuth
	tls      tlsConfigs
	// reloadMu serializes NATS reloads (routes, JetStream).
	reloadMu sync.Mutex
	metrics  *metrics
	ready    chan struct{}
	errc     chan error
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc

	mu struct {
		sync.Mutex
		started, stopped bool
		ns               *natsserver.Server
		// gossipRoutes are the route addresses learned from gossip and
		// peers their servers' names; fromGossip tells whether gossip
		// answered yet.
		gossipRoutes []string
		peers        []string
		fromGossip   bool
		// applied is the route list last given to NATS.
		applied []string
	}
}

// New validates cfg, reads the auth file, registers the readiness check
// and admin views on deps.Admin and returns an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil || deps.TLS == nil || deps.NodeID == 0 {
		return nil, errors.New("msgd: Deps.Logger, Bus, Admin, TLS and NodeID are required")
	}
	s := &Server{cfg: cfg, d: deps, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	if cfg.AuthFile != "" {
		a, err := loadAuth(cfg.AuthFile)
		if err != nil {
			return nil, err
		}
		s.auth = a
	}
	if s.auth != nil || cfg.certClients() {
		b, err := newBridgeAuth()
		if err != nil {
			return nil, err
		}
		s.bridge = b
	}
	if cfg.certClients() {
		s.certAuth = &certAuth{bridge: s.bridge.pub, perms: s.bridge.perms}
	}
	// Ports 0 are resolved now: the route list holds this msgd's own
	// route address from the start.
	for _, p := range []*int{&s.cfg.NATSPort, &s.cfg.NATSClusterPort} {
		if *p == 0 && (p == &s.cfg.NATSPort || !cfg.NoCluster) {
			port, err := freePort(cfg.NATSHost)
			if err != nil {
				return nil, fmt.Errorf("msgd: pick a free port: %w", err)
			}
			*p = port
		}
	}
	s.mu.applied = s.routes()
	opts, err := s.options(s.mu.applied)
	if err != nil {
		return nil, err
	}
	s.opts = opts
	s.metrics = newMetrics(deps.Registerer)
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	for k, a := range map[string]string{"gossip": cfg.GossipAddr, "clock": cfg.ClockAddr, "raft": cfg.RaftAddr, "stored": cfg.StoreAddr, "workflow": cfg.WorkflowAddr} {
		if a != "" {
			deps.Admin.SetAddress(k, a)
		}
	}
	s.registerMonitor(deps.Admin)
	return s, nil
}

// nats returns the running NATS server, or nil.
func (s *Server) nats() *natsserver.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.ns
}

// Start starts the NATS server, waits until it accepts clients (bounded
// by ctx), then follows gossip and bridges events in the background; it
// does not wait for routes.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.started || s.mu.stopped {
		s.mu.Unlock()
		return errors.New("msgd: already started or stopped")
	}
	s.mu.started = true
	s.mu.Unlock()

	ns, err := natsserver.NewServer(s.opts)
	if err != nil {
		return fmt.Errorf("msgd: nats server: %w", err)
	}
	lg := newNATSLogger(s.log, s.fatal)
	ns.SetLoggerV2(lg, s.log.Enabled(ctx, slog.LevelDebug), false, false)
	ns.Start()
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if ctx.Err() != nil || !ns.Running() || lg.failed() != "" {
			ns.Shutdown()
			ns.WaitForShutdown()
			if f := lg.failed(); f != "" {
				return fmt.Errorf("msgd: nats server: %s", f)
			}
			return fmt.Errorf("msgd: nats server not accepting connections: %w", context.Cause(ctx))
		}
	}
	s.mu.Lock()
	s.mu.ns = ns
	s.mu.Unlock()
	s.d.Admin.SetAddress("nats", ns.Addr().String())
	if ca := ns.ClusterAddr(); ca != nil {
		s.d.Admin.SetAddress("nats-cluster", ca.String())
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.cfg.GossipAddr != "" && !s.cfg.NoCluster {
		s.wg.Go(func() { s.gossipLoop(s.ctx) })
	}
	if err := s.startBridge(s.ctx, ns); err != nil {
		s.cancel()
		s.wg.Wait()
		ns.Shutdown()
		ns.WaitForShutdown()
		return err
	}
	close(s.ready)
	s.log.Info("messaging server started", slog.String("nats_addr", ns.Addr().String()),
		slog.Any("nats_cluster_addr", ns.ClusterAddr()), slog.String("server_name", ServerName(s.d.NodeID)))
	return nil
}

// fatal records a fatal report of the NATS server.
func (s *Server) fatal(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// Ready is closed once the server accepts clients.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops following gossip and bridging, withdraws msgd's addresses
// from gossip, and shuts the NATS server down (closing every client
// connection); it is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return nil
	}
	s.mu.stopped = true
	ns := s.mu.ns
	s.mu.Unlock()
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	// After the gossip loop ended, so that it cannot publish them again.
	s.withdraw(ctx)
	if ns != nil {
		// Shutdown closes every connection and waits for the server's
		// goroutines.
		ns.Shutdown()
		ns.WaitForShutdown()
	}
	return nil
}
