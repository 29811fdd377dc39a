// Package msgd is the application messaging daemon of Pleiades, as an
// importable server (Config, DefaultConfig, Deps, New, Server).
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), validates its configuration (NATS client and route ports, the
// gossipd address) and reports readiness through the "msgd" check once
// started. Its cmd/msgd main is one daemon.Main call.
//
// Still to come, in its own issue: the embedded NATS server listening on
// NATSPort for clients and NATSClusterPort for routes, clustered with the
// other hosts' msgd whose route addresses are discovered through gossipd
// node metadata (retried in the background while gossipd is not up), its
// readiness and metrics folded into the admin endpoint, and the bound NATS
// addresses reported in the status.
package msgd
