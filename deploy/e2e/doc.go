// Package e2e holds the end-to-end tests of Pleiades: they build the real
// binaries (every daemon and the pleiades CLI) into a temporary directory
// and drive them as an operator would — `pleiades up`, `pleiades dev`,
// `pleiades status`, kill -9, SIGTERM — on loopback ports chosen away from
// the defaults, so they can run beside a developer's own cluster.
//
// There are no build tags: `make test` runs these tests with everything
// else, and `go test -short` skips them. Each test uses its own port
// offset, away from the defaults and from other tests. TestNodesOnHosts
// runs nodes as on separate hosts (wildcard buses, advertised addresses,
// gossip seeds only, certificates from `pleiades cert`); the systemd units
// are checked against the daemons' flags here. TestKVLinearizableUnderFaults
// checks with porcupine that the Go client's default retries stay
// linearizable while a range's leader is paused, killed or cut off one way
// (iptables rules on loopback ports, when run as root); `make e2e-faults`
// repeats it (PLEIADES_E2E_FAULT_ROUNDS). TestReReplicationHostKilled
// kills one of four hosts with SIGKILL and waits for workflowd to put its
// replicas back on the others (PLEIADES_DEAD_NODE_TIMEOUT=2s in the
// daemons' environment); TestDecommission drives `pleiades node
// decommission`. The fault suite across
// containers is deploy/e2edocker (`make e2e-docker`).
package e2e
