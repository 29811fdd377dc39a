package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/logkey"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/version"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// StatusMethod is the bus method (on wire.ProtoAdmin) every runtime
// serves: adminpb.StatusRequest → adminpb.Status. Callers use
// admin.CallStatus.
const StatusMethod = admin.StatusMethod

// adminRules authorizes the runtime's methods on wire.ProtoAdmin: a
// daemon's status is for the operators and the cluster's own daemons.
func adminRules() bus.Rules {
	return bus.Rules{
		StatusMethod: {Roles: bus.Nodes | bus.Admins},
	}
}

// Runtime is what every daemon runs on: identity, logger, metrics
// registry, bus endpoint and admin server. Build registers its handlers,
// checks and views on Bus and Admin before the runtime starts.
type Runtime struct {
	// Name is the daemon's name, e.g. "stored".
	Name string
	// NodeID is the node's identity.
	NodeID uint64
	// DataDir is this daemon's own directory, <data-dir>/<Name>; it exists.
	DataDir string
	// Logger is the daemon's root logger, with the daemon and node keys.
	Logger *slog.Logger
	// Registry is the daemon's Prometheus registry, served on /metrics.
	// It already holds the Go and process collectors and the bus metrics.
	Registry *prometheus.Registry
	// Bus is the daemon's QUIC endpoint.
	Bus *bus.Bus
	// Admin is the daemon's HTTP admin server.
	Admin *admin.Server
	// TLS is the node's mutual TLS configuration from the cluster CA (the
	// bus's); a daemon serving another protocol with it clones it first.
	TLS *tls.Config

	common config.Common
	// reloader reloads the node certificate from CertsDir (nil for a
	// runtime built from a ready TLS configuration).
	reloader *tlsutil.Reloader
	// watchStop ends the certificate files' watcher; watchDone is closed
	// when it has returned.
	watchStop func()
	watchDone chan struct{}
	mu        struct {
		sync.Mutex
		started, stopped bool
	}
}

// NewRuntime builds an unstarted runtime for daemon name from the common
// configuration: it loads or creates the node id, creates dev certificates
// when c.Dev is set, loads TLS from c.CertsDir, and creates the bus and
// the admin server.
func NewRuntime(name string, c config.Common, logger *slog.Logger) (*Runtime, error) {
	if c.Dev {
		id, err := LoadOrCreateNodeID(c.DataDir, c.NodeID)
		if err != nil {
			return nil, fmt.Errorf("node id: %w", err)
		}
		c.NodeID = id
		if err := tlsutil.EnsureDev(c.CertsDir, fmt.Sprintf("node-%d", id), devHosts(c), id); err != nil {
			return nil, fmt.Errorf("dev certificates in %s: %w", c.CertsDir, err)
		}
	}
	reloader, tc, err := tlsutil.NewReloader(c.CertsDir, tlsutil.KindNode)
	if err != nil {
		return nil, fmt.Errorf("load TLS from %s: %w (create the cluster CA once with `pleiades cert create-ca`, "+
			"then this host's certificate with `pleiades cert create-node --hosts <advertised host>`; or --dev for a throwaway one)", c.CertsDir, err)
	}
	if err := checkCertificate(c, tc); err != nil {
		return nil, fmt.Errorf("certificate in %s does not match the advertised address: %w", c.CertsDir, err)
	}
	rt, err := NewRuntimeWithTLS(name, c, tc, logger)
	if err != nil {
		return nil, err
	}
	rt.reloader = reloader
	return rt, nil
}

// certNodeID returns the node id tc's certificate carries; it must be a
// node certificate.
func certNodeID(tc *tls.Config) (uint64, error) {
	r, err := tlsutil.RoleOfConfig(tc)
	if err != nil {
		return 0, err
	}
	if r.Kind != tlsutil.KindNode {
		return 0, fmt.Errorf("the certificate's role is %s, not node: issue this host's with `pleiades cert create-node` "+
			"(a certificate made before roles existed carries none; issue it again)", r)
	}
	return r.NodeID, nil
}

// devHosts lists the host names a dev certificate carries: loopback, the
// machine's host name and the advertised host.
func devHosts(c config.Common) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h := advertisedHost(c); h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

// NewRuntimeWithTLS is NewRuntime with a ready TLS configuration (tests use
// an in-memory CA). Its certificate must be a node certificate; the node id
// is the one it carries, which must agree with c.NodeID when set and with
// the one recorded in c.DataDir (recorded there when missing).
func NewRuntimeWithTLS(name string, c config.Common, tc *tls.Config, logger *slog.Logger) (*Runtime, error) {
	if name == "" {
		return nil, errors.New("daemon: empty name")
	}
	if logger == nil {
		return nil, errors.New("daemon: nil logger")
	}
	certID, err := certNodeID(tc)
	if err != nil {
		return nil, err
	}
	if c.NodeID != 0 && c.NodeID != certID {
		return nil, fmt.Errorf("node id %d differs from node id %d of the certificate: issue this node's with `pleiades cert create-node --node-id %d`", c.NodeID, certID, c.NodeID)
	}
	id, err := LoadOrCreateNodeID(c.DataDir, certID)
	if err != nil {
		return nil, fmt.Errorf("node id: %w (the certificate carries node %d: issue one for this data dir's node with `pleiades cert create-node --node-id <id>`)", err, certID)
	}
	c.NodeID = id
	dir := filepath.Join(c.DataDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	log := logger.With(logkey.Daemon, name, logkey.Node, c.NodeID)

	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process collector: %w", err)
	}
	b, err := bus.New(bus.Config{ListenAddr: c.BusAddr, TLS: tc, MaxFrameSize: c.MaxFrameSize, DisableTCP: c.NoBusTCP},
		bus.Deps{Logger: log.With(logkey.Component, logkey.CompBus), Registerer: reg})
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	token, err := readToken(c.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	adm, err := admin.New(admin.Config{Addr: c.AdminAddr, Pprof: c.Pprof, Token: token},
		admin.Deps{Logger: log.With(logkey.Component, logkey.CompAdmin), Gatherer: reg},
		admin.Info{Daemon: name, NodeID: c.NodeID, Version: version.String()})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	rt := &Runtime{
		Name: name, NodeID: c.NodeID, DataDir: dir, Logger: log,
		Registry: reg, Bus: b, Admin: adm, TLS: tc, common: c,
	}
	if err := rt.watchExpiry(reg); err != nil {
		return nil, err
	}
	bus.HandleUnary(b, wire.ProtoAdmin, StatusMethod, func(ctx context.Context, _ *adminpb.StatusRequest) (*adminpb.Status, error) {
		return adm.Status(ctx)
	})
	b.Authorize(wire.ProtoAdmin, adminRules())
	adm.AddReadyCheck("bus", rt.busReady)
	return rt, nil
}

// Common returns the configuration the runtime was built from, with the
// node id resolved.
func (rt *Runtime) Common() config.Common { return rt.common }

func (rt *Runtime) busReady(context.Context) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	switch {
	case rt.mu.stopped:
		return errors.New("bus stopped")
	case !rt.mu.started || rt.Bus.Addr() == nil:
		return errors.New("bus not started")
	}
	return nil
}

// Start starts the bus, then the admin server. ctx bounds start-up only.
func (rt *Runtime) Start(ctx context.Context) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.mu.started || rt.mu.stopped {
		return errors.New("daemon: runtime already started or stopped")
	}
	if err := rt.Bus.Start(ctx); err != nil {
		return fmt.Errorf("start bus on %s: %w", rt.common.BusAddr, err)
	}
	rt.Admin.SetAddress("bus", rt.Bus.Addr().String())
	if adv := rt.AdvertiseAddr(); adv != "" && adv != rt.Bus.Addr().String() {
		rt.Admin.SetAddress("advertise", adv)
	}
	if err := rt.Admin.Start(ctx); err != nil {
		_ = rt.Bus.Stop(ctx)
		return fmt.Errorf("start admin: %w", err)
	}
	rt.mu.started = true
	if rt.reloader != nil {
		wctx, cancel := context.WithCancel(context.Background())
		rt.watchStop, rt.watchDone = cancel, make(chan struct{})
		go func() { // owned by Stop, which cancels and waits
			defer close(rt.watchDone)
			rt.reloader.Watch(wctx, certWatchInterval, rt.Logger)
		}()
	}
	rt.warnExpiry()
	rt.Logger.Info("started",
		slog.String("bus_addr", rt.Bus.Addr().String()),
		slog.String("admin_addr", rt.Admin.Addr().String()),
		slog.String(logkey.Version, version.String()),
		slog.String("data_dir", rt.DataDir))
	return nil
}

// Err delivers a failure of the runtime after Start (today: the admin
// server stopped serving).
func (rt *Runtime) Err() <-chan error { return rt.Admin.Err() }

// Stop stops the bus (draining in-flight calls until ctx ends), then the
// admin server. It is idempotent.
func (rt *Runtime) Stop(ctx context.Context) error {
	rt.mu.Lock()
	if rt.mu.stopped {
		rt.mu.Unlock()
		return nil
	}
	rt.mu.stopped = true
	started := rt.mu.started
	rt.mu.Unlock()
	if !started {
		return nil
	}
	if rt.watchStop != nil {
		rt.watchStop()
		<-rt.watchDone
	}
	var errs []error
	if err := rt.Bus.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop bus: %w", err))
	}
	if err := rt.Admin.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop admin: %w", err))
	}
	return errors.Join(errs...)
}
