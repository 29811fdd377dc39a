package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--stored-addr", "PLEIADES_STORED_ADDR", "--peers", "PLEIADES_PEERS", "--max-offset", "--gossip-addr", "--advertise-addr")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--stored-addr", "stored"}, Flag: "stored-addr"},
		daemontest.BadFlag{Args: []string{"--peers", "127.0.0.1:1,nohost"}, Flag: "peers"},
		daemontest.BadFlag{Args: []string{"--gossip-addr", "gossipd"}, Flag: "gossip-addr"},
		daemontest.BadFlag{Args: []string{"--advertise-addr", "10.0.0.1"}, Flag: "advertise-addr"},
	)
}

func TestServe(t *testing.T) {
	// No gossipd and no stored in this test: --peers only, the bound in
	// a file.
	daemontest.CheckServe(t, spec(), "--gossip-addr", "", "--stored-addr", "")
}
