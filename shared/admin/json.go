package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
)

// Status is the JSON shape of /v1/status.
type Status struct {
	Daemon        string            `json:"daemon"`
	NodeID        uint64            `json:"node_id,string"`
	Version       string            `json:"version"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	StartedAt     time.Time         `json:"started_at"`
	Addresses     map[string]string `json:"addresses"`
	Ready         bool              `json:"ready"`
	// Degraded is true when a condition fails (see Server.AddCondition).
	Degraded bool             `json:"degraded,omitempty"`
	Checks   map[string]Check `json:"checks"`
}

// Check is the JSON shape of one readiness check's or condition's outcome.
type Check struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	Degraded bool   `json:"degraded,omitempty"`
}

// StatusJSON converts the protobuf status to its JSON shape.
func StatusJSON(st *adminpb.Status) Status {
	out := Status{
		Daemon:        st.GetDaemon(),
		NodeID:        st.GetNodeId(),
		Version:       st.GetVersion(),
		UptimeSeconds: st.GetUptimeSeconds(),
		StartedAt:     time.Unix(0, st.GetStartedAtUnixNano()).UTC(),
		Addresses:     st.GetAddresses(),
		Ready:         st.GetReady(),
		Degraded:      st.GetDegraded(),
		Checks:        make(map[string]Check, len(st.GetChecks())),
	}
	if out.Addresses == nil {
		out.Addresses = map[string]string{}
	}
	for name, c := range st.GetChecks() {
		out.Checks[name] = Check{OK: c.GetOk(), Error: c.GetError(), Degraded: c.GetDegraded()}
	}
	return out
}

// errorBody is the JSON shape of a failed /v1/... request.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// JSON returns a handler for a daemon's /v1/... view: view computes the
// value (typically by calling the same typed method the bus uses) and the
// handler encodes it. An error becomes {"error": ...} with a status
// derived from its bus code (NotFound → 404, InvalidArgument → 400,
// Unavailable/NotLeader → 503, DeadlineExceeded → 504, else 500).
func JSON(view func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := view(r)
		if err != nil {
			WriteJSON(w, httpStatus(err), errorBody{Error: err.Error(), Code: bus.CodeOf(err).String()})
			return
		}
		WriteJSON(w, http.StatusOK, v)
	})
}

// WriteJSON writes v as indented JSON with the given HTTP status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, bus.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, bus.ErrUnavailable), errors.Is(err, bus.ErrNotLeader):
		return http.StatusServiceUnavailable
	case errors.Is(err, bus.ErrDeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, bus.ErrFailedPrecondition):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
