// Package daemon is the common main of every Pleiades daemon and the
// runtime they share.
//
// A daemon's cmd/<name>/main.go is one call:
//
//	func main() {
//		daemon.Main(daemon.Spec{
//			Name: "raftd", Usage: "multi-raft KV daemon",
//			DefaultBusAddr: "127.0.0.1:7402", DefaultAdminAddr: "127.0.0.1:7502",
//			Flags: []cli.Flag{&cli.StringFlag{Name: "stored-addr", Value: "127.0.0.1:7401"}},
//			Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
//				return raftd.New(raftd.Config{...from c...}, raftd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus})
//			},
//		})
//	}
//
// Main parses the configuration (flags, PLEIADES_* env, --config file; see
// package config), builds the logger, loads or creates the node id, loads
// TLS (creating dev certificates with --dev), builds the Runtime (bus,
// admin server, Prometheus registry), calls Build (which registers bus
// handlers, ready checks and admin views), starts the runtime then the
// service, logs "ready" once every readiness check passes, and waits for
// SIGTERM/SIGINT or a failure on the service's Err channel. It then stops
// the service and the runtime, in that order, within --shutdown-timeout.
//
// Under systemd (Type=notify) Main reports on the datagram socket named by
// NOTIFY_SOCKET (sd_notify(3), spoken directly: one datagram per message):
// "READY=1" when every readiness check first passes, "STOPPING=1" when it
// starts to stop. Without NOTIFY_SOCKET nothing is sent.
//
// Addresses: --bus-addr is where the bus listens, --advertise-addr where
// other hosts dial it (Runtime.AdvertiseAddr; default the bus address
// unless it is a wildcard). When the advertised host, or failing that the
// bus host, is neither loopback nor a wildcard, the node certificate must
// be valid for it (an IP or DNS name given to `pleiades cert create-node
// --hosts`), else start-up fails saying what to run; --dev certificates
// carry it.
//
// `<daemon> health [--admin-addr ADDR]` is the health check of an image
// without a shell: it asks the admin endpoint (the daemon's own through
// the same flag, PLEIADES_ADMIN_ADDR or --config key; a wildcard host is
// dialed on loopback) for /readyz and exits 0 when ready, 1 otherwise.
//
// Exit status: 0 after a clean stop, 1 when the runtime or service fails
// (start-up or Err) or the stop overruns its timeout, 2 for a bad
// configuration (the message names the flag).
//
// The Runtime serves, on its bus, protocol wire.ProtoAdmin method "Status"
// (adminpb.StatusRequest → adminpb.Status), the same value as the admin
// endpoint's /v1/status, and registers the readiness check "bus".
//
// Node identity: the node id the node certificate carries (its role
// pleiades://node/<id>, see package tlsutil), recorded in
// <data-dir>/node-id on first start; --node-id and an existing node-id
// file must agree with it, else start-up fails naming the command that
// issues a matching certificate. With --dev the id comes first (--node-id,
// the file, or a random one) and the dev certificate is issued for it.
// Creation of the file is atomic (write a temporary file, then hard-link
// it into place), so daemons of one node starting together agree on a
// single id.
//
// Certificates: the runtime reloads the node certificate and key from
// the certificates directory on SIGHUP and when the files change (checked
// every 5s); new connections get the new one, live ones keep theirs (see
// tlsutil.Reloader). A reload that would change the role or that finds an
// expired certificate keeps the current one. The end of validity is the
// metric pleiades_tls_certificate_expiry_timestamp_seconds, the field
// cert_not_after_unix of the status, and, within 30 days (ExpiryWarning),
// the failed condition "certificate" (listed by /readyz and `pleiades
// status`) and a warning in the log.
//
// Admin endpoint: --pprof serves /debug/pprof/; --admin-token-file names
// a file (mode 0600) with the bearer token the endpoint then requires on
// /metrics and /v1/... (see package admin).
//
// Package daemontest starts in-process runtimes for tests.
package daemon
