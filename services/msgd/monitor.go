package msgd

import (
	"net/http"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/pleiades-db/pleiades/shared/admin"
)

// monitorViews are NATS's monitoring endpoints msgd serves on its admin
// endpoint under /v1/nats/<name>, with NATS's own query parameters and
// JSON (no NATS monitoring port is opened).
var monitorViews = map[string]func(*natsserver.Server, http.ResponseWriter, *http.Request){
	"varz":     (*natsserver.Server).HandleVarz,
	"connz":    (*natsserver.Server).HandleConnz,
	"routez":   (*natsserver.Server).HandleRoutez,
	"subsz":    (*natsserver.Server).HandleSubsz,
	"accountz": (*natsserver.Server).HandleAccountz,
	"jsz":      (*natsserver.Server).HandleJsz,
	"healthz":  (*natsserver.Server).HandleHealthz,
	"raftz":    (*natsserver.Server).HandleRaftz,
}

// registerMonitor mounts monitorViews on the admin server; before the NATS
// server runs they answer 503.
func (s *Server) registerMonitor(a *admin.Server) {
	for name, h := range monitorViews {
		a.Handle("/v1/nats/"+name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ns := s.nats()
			if ns == nil {
				admin.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "msgd: NATS server not running"})
				return
			}
			h(ns, w, r)
		}))
	}
}
