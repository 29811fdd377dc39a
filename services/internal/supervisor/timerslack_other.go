//go:build !linux

package supervisor

import (
	"os/exec"
	"time"
)

// startWithTimerSlack starts cmd; timer slack is Linux only.
func startWithTimerSlack(cmd *exec.Cmd, _ time.Duration) error { return cmd.Start() }
