package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--raft-addr", "PLEIADES_RAFT_ADDR", "127.0.0.1:7402", "--gossip-addr", "PLEIADES_GOSSIP_ADDR", "--instance-lease", "PLEIADES_INSTANCE_LEASE", "--poll-interval", "--http-deny", "127.0.0.0/8,::1/128", "--retention")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--raft-addr", "raftd"}, Flag: "raft-addr"},
		daemontest.BadFlag{Args: []string{"--gossip-addr", "gossipd"}, Flag: "gossip-addr"},
		daemontest.BadFlag{Args: []string{"--instance-lease", "1ms"}, Flag: "instance-lease"},
		daemontest.BadFlag{Args: []string{"--http-deny", "10.0.0.0/99"}, Flag: "http-deny"},
		daemontest.BadFlag{Args: []string{"--retention", "0s"}, Flag: "retention"},
		daemontest.BadFlag{Args: []string{"--dead-node-timeout", "0s"}, Flag: "dead-node-timeout"},
		daemontest.BadFlag{Args: []string{"--rebalance-threshold", "0"}, Flag: "rebalance-threshold"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec())
}
