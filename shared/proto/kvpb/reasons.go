package kvpb

// Reasons (bus.Error.Reason) the kv protocol gives its failures, so that
// callers can act on the cause without reading the message.
const (
	// ReasonNotInitialized comes with code Unavailable when the cluster has
	// no ranges yet: run Init (`pleiades init`).
	ReasonNotInitialized = "not_initialized"
	// ReasonRequestTooOld comes with code FailedPrecondition for a write
	// of a session (Session) that would apply more than the range's
	// maximum age after it was issued, or was issued that far in the
	// future: this attempt changed nothing, but an earlier attempt of the
	// same write may have applied.
	ReasonRequestTooOld = "request_too_old"
	// ReasonSessionStale comes with code FailedPrecondition for a write
	// below its session's first_unacked: the client had stopped waiting
	// for it. It changed nothing.
	ReasonSessionStale = "session_stale"
	// ReasonSessionsFull comes with code ResourceExhausted when a range
	// cannot remember another session or answer (its limits of sessions,
	// answers per session or bytes are reached, with no session idle long
	// enough to forget). The write changed nothing.
	ReasonSessionsFull = "sessions_full"
	// ReasonDiskFull comes with code ResourceExhausted when the disk of
	// the node leading the range is full (or below its stored's free-space
	// floor): the write was not proposed, so nothing of it happened; reads
	// are still served. It succeeds again once space returns.
	ReasonDiskFull = "disk_full"
	// ReasonRangeKeyMismatch comes with code FailedPrecondition when a
	// request reached a range that no longer holds its keys (the range
	// split, or the header's range_id and generation are stale). Nothing
	// was done. The error's detail (bus.DetailOf) is a DescriptorsResponse
	// with the current descriptors the node knows for the keys: refresh
	// those entries of a range cache and send again.
	ReasonRangeKeyMismatch = "range_key_mismatch"
	// ReasonCompacted comes with code FailedPrecondition for a read at a
	// timestamp (GetRequest.read_at) older than the range's version
	// retention window: the versions it needs may have been collected.
	ReasonCompacted = "compacted"
)
