package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--stored-addr", "--stored-socket", "--gossip-addr", "--clock-addr", "--peers", "PLEIADES_CLOCK_ADDR")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--clock-addr", "clockd"}, Flag: "clock-addr"},
		daemontest.BadFlag{Args: []string{"--peers", "raftd"}, Flag: "peers"},
		daemontest.BadFlag{Args: []string{"--value-cache-bytes", "0"}, Flag: "value-cache-bytes"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec(), "--stored-addr", "")
}
