// Package admin is the HTTP admin endpoint every Pleiades daemon serves.
//
// Routes:
//
//	/healthz       200 "ok" when every health check passes, else 503 naming the failures
//	/readyz        the same for readiness checks; ?verbose lists every check,
//	               ?exclude=name (repeatable) skips one; a failing condition
//	               is listed as "[!]name degraded: ..." and leaves it 200
//	/metrics       the daemon's own Prometheus registry (Deps.Gatherer)
//	/debug/pprof/  the runtime profiles, only with Config.Pprof (--pprof)
//	/v1/status     JSON: daemon, node_id, version, uptime_seconds, started_at,
//	               addresses, ready, degraded, checks
//
// Daemons register their checks (AddReadyCheck, AddHealthCheck), their
// conditions (AddCondition: a failure degrades the daemon, which keeps
// serving and stays ready, like stored refusing writes on a full disk), the
// addresses they bound (SetAddress) and their own /v1/... views (Handle,
// usually with JSON). [Server.Status] is the typed status used by both the
// HTTP view and the bus Status method, so the two never disagree.
//
// Access: with Config.Token (--admin-token-file) /metrics, /v1/... (every
// view mounted with Handle) and /debug/pprof/ answer 401 without
// "Authorization: Bearer <token>"; /healthz and /readyz stay open for
// probes. Start logs a warning when the endpoint listens beyond loopback.
//
// Checks run concurrently, each bounded by Config.CheckTimeout; a check must
// honour its ctx and be safe to call from several goroutines. Every method of
// Server is safe for concurrent use; checks, addresses and handlers may be
// added before or after Start.
package admin
