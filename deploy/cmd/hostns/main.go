// Command hostns holds a host's network namespace in a container cluster:
// it does nothing until SIGTERM or SIGINT, so that the containers of one
// host's daemons, which join its namespace (compose's
// network_mode: "service:hostN"), keep their addresses and loopback while
// any of them restarts. It is the role of a pod's pause container.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
