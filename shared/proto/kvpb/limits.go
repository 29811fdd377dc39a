package kvpb

// Limits of user keys and values: raftd's defaults (raftd.Config's
// MaxKeyBytes and MaxValueBytes), which the Go client also checks before
// it sends a request, so that a value too large gets the same error
// whatever its size (not a bus frame error above the frame limit).
const (
	// MaxKeyBytes is the largest user key: 64 KiB.
	MaxKeyBytes = 64 << 10
	// MaxValueBytes is the largest value: 8 MiB, half the default bus
	// frame, which a raft entry with its value must fit in.
	MaxValueBytes = 8 << 20
)
