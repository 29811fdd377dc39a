//go:build !linux

package bus

import (
	"net"
	"time"
)

// setUserTimeout is Linux only; elsewhere keep-alives alone find a dead
// peer, and only while nothing is in flight.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
