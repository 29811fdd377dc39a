// Package cli is the pleiades command line: the operator's and developer's
// front door. One file per command group; app.go holds the command list.
//
// The CLI links no daemon code. It reaches daemons through their admin
// HTTP endpoints and the bus (shared clients), msgd as a NATS client
// (nats.go: `events`, `bench msg`), and runs them as child processes
// through package supervisor (`up`, `dev`).
//
// Every command takes --output table|json; commands that talk to a running
// node take --addr to aim somewhere other than node 1's default address.
// Flags follow shared/config: each is also PLEIADES_<FLAG> in the
// environment or a key of the file given with --config.
//
// `up` runs a node on a real host (hosts.go): --listen-host,
// --advertise-host and --admin-host give every daemon its addresses
// (stored stays on loopback; the daemons of the node dial each other on
// loopback when they listen on a wildcard), --join the gossip seeds; it
// refuses to start without certificates valid for the advertised hosts
// unless --dev. `deploy compose` (deploy.go) generates the compose file of
// N hosts; `health` reads admin endpoints.
package cli
