// Package clockd is the clock daemon of Pleiades, as an importable server
// (Config, DefaultConfig, Deps, New, Server): the node's hybrid logical
// clock authority.
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), validates its configuration (the stored and gossipd addresses
// and the static peer list it will use) and reports readiness through the
// "clockd" check once started.
//
// Still to come, in its own issue: the HLC itself (shared/hlc), the clock
// protocol on the bus (Now, Update, Status, health stream), a wall-time
// upper bound persisted in stored, and the remote clock monitor that turns
// the node unhealthy when its clock drifts from the majority of its peers.
package clockd
