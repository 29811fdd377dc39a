package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelp(t *testing.T) {
	daemontest.CheckHelp(t, spec(), "--block-cache-bytes", "PLEIADES_BLOCK_CACHE_BYTES", "--max-key-bytes", "65536", "--compression", "--local-socket", "stored.sock")
}

func TestBadFlags(t *testing.T) {
	daemontest.CheckBadFlags(t, spec(),
		daemontest.BadFlag{Args: []string{"--bus-addr", "stored"}, Flag: "bus-addr"},
		daemontest.BadFlag{Args: []string{"--bus-addr", "0.0.0.0:0"}, Flag: "bus-addr"},
		daemontest.BadFlag{Args: []string{"--bus-addr", "192.0.2.1:0"}, Flag: "bus-addr"},
		daemontest.BadFlag{Args: []string{"--advertise-addr", "192.0.2.1:7401"}, Flag: "advertise-addr"},
		daemontest.BadFlag{Args: []string{"--block-cache-bytes", "10"}, Flag: "block-cache-bytes"},
		daemontest.BadFlag{Args: []string{"--compression", "lz4,brotli"}, Flag: "compression"},
		daemontest.BadFlag{Args: []string{"--max-key-bytes", "0"}, Flag: "max-key-bytes"},
		daemontest.BadFlag{Args: []string{"--snapshot-lease", "0s"}, Flag: "snapshot-lease"},
		daemontest.BadFlag{Args: []string{"--max-ingest-bytes", "5"}, Flag: "max-ingest-bytes"},
	)
}

func TestServe(t *testing.T) {
	daemontest.CheckServe(t, spec(), "--block-cache-bytes", "8388608", "--write-buffer-bytes", "4194304")
}
