package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec())
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--bus-addr", "stored"}, Flag: "bus-addr"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec())
}
