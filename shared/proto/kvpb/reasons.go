package kvpb

// Reasons (bus.Error.Reason) the kv protocol gives its failures, so that
// callers can act on the cause without reading the message.
const (
	// ReasonNotInitialized comes with code Unavailable when the cluster has
	// no ranges yet: run Init (`pleiades init`).
	ReasonNotInitialized = "not_initialized"
)
