package daemon

import (
	"fmt"
	"net"
	"strings"
)

// notifySocketEnv names the environment variable through which systemd
// (Type=notify) passes the datagram socket a service reports its state on.
const notifySocketEnv = "NOTIFY_SOCKET"

// notifier sends service state changes to systemd's notification socket
// (sd_notify(3)): "READY=1" once the daemon is ready, "STOPPING=1" when it
// starts to stop, "STATUS=..." for systemctl status. Without a socket it
// does nothing. The protocol is one datagram per message on a Unix
// datagram socket; a socket name starting with "@" is in the abstract
// namespace.
type notifier struct {
	socket string
}

// send writes one notification, e.g. "READY=1"; a nil error without a
// socket.
func (n notifier) send(state string) error {
	if n.socket == "" {
		return nil
	}
	name := n.socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("daemon: notify %s: %w", n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("daemon: notify %s: %w", n.socket, err)
	}
	return nil
}
