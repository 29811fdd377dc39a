// Package workflowd is the durable workflow daemon of Pleiades, as an
// importable server (Config, DefaultConfig, Deps, New, Server).
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), validates its configuration (the raftd and gossipd addresses it
// will use) and reports readiness through the "workflowd" check once
// started. Its cmd/workflowd main is one daemon.Main call.
//
// Still to come, in their own issues: the workflow engine (definitions
// built in Go: steps, if/while/foreach/parallel, delays, events, schedules,
// saga compensation, retries), instances persisted in the replicated KV
// through raftd so that another host's workflowd can resume them, the host
// API over the bus (protocol wire.ProtoWorkflow), the CLI and /v1/workflows,
// and the built-in cluster lifecycle workflows (re-replication,
// decommission, rebalancing) driven by gossipd events.
package workflowd
