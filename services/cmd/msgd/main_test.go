package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--nats-port", "PLEIADES_NATS_PORT", "4222", "6222", "--gossip-addr",
		"--routes", "--nats-client-tls", "--nats-auth-file", "--jetstream-max-store", "--raft-addr", "--clock-addr", "--store-addr")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--nats-port", "70000"}, Flag: "nats-port"},
		daemontest.BadFlag{Args: []string{"--gossip-addr", "gossipd"}, Flag: "gossip-addr"},
		daemontest.BadFlag{Args: []string{"--routes", "a:1,b"}, Flag: "routes"},
		daemontest.BadFlag{Args: []string{"--events-max-age", "-1h"}, Flag: "events-max-age"},
		daemontest.BadFlag{Args: []string{"--nats-client-tls", "maybe"}, Flag: "nats-client-tls"},
		daemontest.BadFlag{Args: []string{"--nats-host", "localhost"}, Flag: "nats-host"},
		daemontest.BadFlag{Args: []string{"--nats-port", "5000", "--nats-cluster-port", "5000"}, Flag: "nats-cluster-port"},
		daemontest.BadFlag{Args: []string{"--jetstream-max-store", "-1"}, Flag: "jetstream-max-store"},
		daemontest.BadFlag{Args: []string{"--store-addr", "stored"}, Flag: "store-addr"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec(), "--nats-port", "0", "--nats-cluster-port", "0",
		"--gossip-addr", "", "--clock-addr", "", "--raft-addr", "", "--store-addr", "")
}
