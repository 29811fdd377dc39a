package storepb

import (
	"fmt"
	"strconv"
)

// ReasonDiskFull is the reason (bus.Error.Reason) stored gives, with code
// RESOURCE_EXHAUSTED, to a write refused because its disk is full or below
// its free-space floor. Nothing of the write was done; it may succeed once
// space returns.
const ReasonDiskFull = "disk_full"

// Describe says what d means for writes, for messages and logs: "disk full
// on node 3 (free 31.0 MiB of 256.0 MiB, floor 32.0 MiB, ballast 2.5 MiB
// held)" while full ("disk has room" otherwise); once the ballast is
// released, the floor reads "floor 32.0 MiB plus 2.5 MiB for the released
// ballast": the free space writes need to resume.
func (d *DiskStatus) Describe() string {
	state := "disk full"
	if !d.GetFull() {
		state = "disk has room"
	}
	s := fmt.Sprintf("%s on node %d (free %s of %s, floor %s", state, d.GetNodeId(),
		formatBytes(d.GetFreeBytes()), formatBytes(d.GetTotalBytes()), formatBytes(d.GetFloorBytes()))
	if d.GetBallastBytes() > 0 {
		if d.GetBallastPresent() {
			s += ", ballast " + formatBytes(d.GetBallastBytes()) + " held"
		} else {
			// Writes resume once the floor and the ballast fit.
			s += " plus " + formatBytes(d.GetBallastBytes()) + " for the released ballast"
		}
	}
	return s + ")"
}

// formatBytes formats n bytes with a binary unit: 512 B, 1.5 KiB, 64.0 MiB.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
