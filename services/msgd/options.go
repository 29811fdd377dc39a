package msgd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// tlsTimeout bounds a TLS handshake with a client or a route, in seconds.
const tlsTimeout = 2

// authConfig is what msgd takes from the auth file: NATS's own users and
// nkeys.
type authConfig struct {
	users       []*natsserver.User
	nkeys       []*natsserver.NkeyUser
	noAuthUser  string
	authTimeout float64
}

// loadAuth reads the authorization block of a NATS configuration file.
// Only users (passwords plain or bcrypt), nkeys, their permissions,
// no_auth_user and timeout are taken; a token, accounts, or a file
// without users are refused, so a mistake never leaves NATS open.
func loadAuth(path string) (*authConfig, error) {
	o, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("msgd: auth file %s: %w", path, err)
	}
	if o.Authorization != "" {
		return nil, fmt.Errorf("msgd: auth file %s: token authorization is not supported; use users or nkeys", path)
	}
	if len(o.Accounts) > 0 {
		return nil, fmt.Errorf("msgd: auth file %s: accounts are not supported; use users or nkeys with permissions", path)
	}
	a := &authConfig{users: o.Users, nkeys: o.Nkeys, noAuthUser: o.NoAuthUser, authTimeout: o.AuthTimeout}
	if o.Username != "" {
		a.users = append(a.users, &natsserver.User{Username: o.Username, Password: o.Password})
	}
	if len(a.users) == 0 && len(a.nkeys) == 0 {
		return nil, fmt.Errorf("msgd: auth file %s: no users or nkeys in its authorization block", path)
	}
	return a, nil
}

// bridgeAuth is the event bridge's own identity when clients must
// authenticate (an auth file, or certificates under ClientTLS verify):
// an nkey made at New, allowed to publish events and to keep the events
// stream only.
type bridgeAuth struct {
	key   nkeys.KeyPair
	pub   string
	perms *natsserver.Permissions
}

func newBridgeAuth() (*bridgeAuth, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("msgd: bridge nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("msgd: bridge nkey: %w", err)
	}
	return &bridgeAuth{key: kp, pub: pub, perms: &natsserver.Permissions{
		// Events, and the JetStream API calls that keep the events
		// stream (answered on the bridge's inbox).
		Publish: &natsserver.SubjectPermission{Allow: []string{events.SubjectAll,
			"$JS.API.INFO", "$JS.API.STREAM.INFO." + events.Stream, "$JS.API.STREAM.CREATE." + events.Stream, "$JS.API.STREAM.UPDATE." + events.Stream}},
		Subscribe: &natsserver.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}}, nil
}

// certClients reports whether client certificates' roles authenticate
// NATS clients: ClientTLS verify without an auth file.
func (c Config) certClients() bool { return c.ClientTLS == ClientTLSVerify && c.AuthFile == "" }

// routeURLs turns host:port route addresses into NATS route URLs.
func routeURLs(addrs []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(addrs))
	for _, a := range addrs {
		u, err := url.Parse("nats-route://" + a)
		if err != nil {
			return nil, fmt.Errorf("msgd: route %q: %w", a, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// tlsConfigs derives, once, the route and client TLS configurations from
// the node's; the same pointers go into every reload so that NATS sees no
// TLS change. Routes take node certificates only (a client or admin
// certificate of the cluster CA is refused in the handshake, either way);
// clients under verify take node, admin and client certificates, not one
// without a role.
type tlsConfigs struct {
	once          sync.Once
	route, client *tls.Config
}

func (s *Server) tlsFor() (route, client *tls.Config) {
	s.tls.once.Do(func() {
		s.tls.route = s.d.TLS.Clone()
		s.tls.route.ClientAuth = tls.RequireAndVerifyClientCert
		s.tls.route.VerifyConnection = tlsutil.RequirePeer(tlsutil.KindNode)
		if s.cfg.ClientTLS != ClientTLSOff {
			c := s.d.TLS.Clone()
			c.ClientAuth = tls.NoClientCert
			if s.cfg.ClientTLS == ClientTLSVerify {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.VerifyConnection = tlsutil.RequirePeer(tlsutil.KindNode, tlsutil.KindAdmin, tlsutil.KindClient)
			}
			s.tls.client = c
		}
	})
	return s.tls.route, s.tls.client
}

// options builds the NATS options for the given routes. Every call builds
// the same options but for the routes, as ReloadOptions requires.
func (s *Server) options(routes []string) (*natsserver.Options, error) {
	c := s.cfg
	o := &natsserver.Options{
		ServerName:             ServerName(s.d.NodeID),
		Host:                   c.NATSHost,
		Port:                   c.NATSPort,
		MaxPayload:             c.MaxPayload,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		JetStream:              c.JetStream,
		StoreDir:               c.DataDir,
		JetStreamMaxMemory:     c.JetStreamMaxMemory,
		JetStreamMaxStore:      c.JetStreamMaxStore,
	}
	if c.AdvertiseHost != "" {
		o.ClientAdvertise = net.JoinHostPort(c.AdvertiseHost, strconv.Itoa(c.NATSPort))
	}
	routeTLS, clientTLS := s.tlsFor()
	if clientTLS != nil {
		o.TLSConfig, o.TLSTimeout = clientTLS, tlsTimeout
		o.TLSVerify = c.ClientTLS == ClientTLSVerify
	}
	if a := s.auth; a != nil {
		o.Users = a.users
		o.NoAuthUser, o.AuthTimeout = a.noAuthUser, a.authTimeout
		o.Nkeys = append(append([]*natsserver.NkeyUser(nil), a.nkeys...), &natsserver.NkeyUser{Nkey: s.bridge.pub, Permissions: s.bridge.perms})
	}
	if s.certAuth != nil {
		// The nonce the bridge signs (NATS sends one to every client only
		// when it has nkey users of its own).
		o.CustomClientAuthentication, o.AlwaysEnableNonce = s.certAuth, true
	}
	if !c.NoCluster {
		o.Cluster = natsserver.ClusterOpts{
			Name: c.ClusterName, Host: c.NATSHost, Port: c.NATSClusterPort,
			TLSConfig: routeTLS, TLSTimeout: tlsTimeout,
		}
		if c.AdvertiseHost != "" {
			o.Cluster.Advertise = net.JoinHostPort(c.AdvertiseHost, strconv.Itoa(c.NATSClusterPort))
		}
		urls, err := routeURLs(routes)
		if err != nil {
			return nil, err
		}
		o.Routes = urls
	}
	return o, nil
}

// freePort returns a TCP port free on host now (for a configured 0).
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// natsLogger sends the NATS server's logs to slog. Notices are Info,
// traces are dropped; a fatal report is logged as an error and delivered
// to onFatal instead of exiting the process.
type natsLogger struct {
	log     *slog.Logger
	onFatal func(error)
	mu      sync.Mutex
	fatal   string
}

func newNATSLogger(log *slog.Logger, onFatal func(error)) *natsLogger {
	return &natsLogger{log: log.With(slog.String("component", "nats")), onFatal: onFatal}
}

func (l *natsLogger) Noticef(f string, v ...any) { l.log.Info(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l *natsLogger) Tracef(string, ...any)      {}

func (l *natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.log.Error(msg, slog.Bool("fatal", true))
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.onFatal(errors.New("msgd: nats server: " + msg))
}

// failed returns the first fatal report, or "".
func (l *natsLogger) failed() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// Reload re-reads the auth file (on SIGHUP: daemon.Reloader) and gives
// NATS its users and nkeys through a configuration reload: clients
// connect with the new credentials at once, and NATS closes connections
// whose user is gone. A file that fails to load keeps the current users
// in force; the event bridge keeps its own key. Certificates under
// ClientTLS verify without an auth file have nothing to re-read.
func (s *Server) Reload(why string) {
	if s.cfg.AuthFile == "" {
		return
	}
	if err := s.reloadAuth(); err != nil {
		s.metrics.reloadErrors.Inc()
		s.log.Warn("auth file not reloaded; the current users stay in force", slog.String("reason", why), slog.Any("err", err))
		return
	}
	s.log.Info("auth file reloaded", slog.String("reason", why), slog.String("file", s.cfg.AuthFile))
}

func (s *Server) reloadAuth() error {
	a, err := loadAuth(s.cfg.AuthFile)
	if err != nil {
		return err
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	ns := s.nats()
	if ns == nil {
		return errors.New("msgd: not running")
	}
	prev := s.auth
	s.auth = a
	s.mu.Lock()
	routes := s.mu.applied
	s.mu.Unlock()
	o, err := s.options(routes)
	if err == nil {
		s.metrics.reloads.Inc()
		err = ns.ReloadOptions(o)
	}
	if err != nil {
		s.auth = prev
		return fmt.Errorf("msgd: reload NATS options: %w", err)
	}
	return nil
}
