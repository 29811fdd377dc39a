package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--nats-port", "PLEIADES_NATS_PORT", "4222", "6222", "--gossip-addr")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--nats-port", "70000"}, Flag: "nats-port"},
		daemontest.BadFlag{Args: []string{"--gossip-addr", "gossipd"}, Flag: "gossip-addr"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec())
}
