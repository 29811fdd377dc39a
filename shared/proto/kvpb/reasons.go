package kvpb

// Reasons (bus.Error.Reason) the kv protocol gives its failures, so that
// callers can act on the cause without reading the message.
const (
	// ReasonNotInitialized comes with code Unavailable when the cluster has
	// no ranges yet: run Init (`pleiades init`).
	ReasonNotInitialized = "not_initialized"
	// ReasonDiskFull comes with code ResourceExhausted when the disk of
	// the node leading the range is full (or below its stored's free-space
	// floor): the write was not proposed, so nothing of it happened; reads
	// are still served. It succeeds again once space returns.
	ReasonDiskFull = "disk_full"
)
