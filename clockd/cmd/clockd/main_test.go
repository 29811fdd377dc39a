package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--stored-addr", "PLEIADES_STORED_ADDR", "--peers", "PLEIADES_PEERS", "--max-offset")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--stored-addr", "stored"}, Flag: "stored-addr"},
		daemontest.BadFlag{Args: []string{"--peers", "127.0.0.1:1,nohost"}, Flag: "peers"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec())
}
