package supervisor

import "strings"

// notifySocketEnv is how systemd hands a Type=notify service its
// notification socket. The supervisor's children must not inherit it:
// each daemon would report READY=1 for the supervisor's unit (and systemd
// only listens to the unit's main process).
const notifySocketEnv = "NOTIFY_SOCKET"

// childEnviron is a child's environment: the supervisor's own without
// NOTIFY_SOCKET, then the child's extra variables.
func childEnviron(own, extra []string) []string {
	out := make([]string, 0, len(own)+len(extra))
	for _, kv := range own {
		if !strings.HasPrefix(kv, notifySocketEnv+"=") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}
