//go:build !linux

package daemon

import (
	"errors"
	"time"
)

// applyTimerSlack is Linux only; elsewhere a requested slack is reported
// as not applied.
func applyTimerSlack(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return errors.New("timer slack is only supported on Linux")
}
