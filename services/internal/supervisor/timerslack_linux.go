package supervisor

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// startWithTimerSlack starts cmd with the timer slack d (0: the
// supervisor's own). A new process takes the slack of the thread that
// forks it, and keeps it across exec, so the fork happens on a thread
// locked for the purpose, with its slack set for the moment.
func startWithTimerSlack(cmd *exec.Cmd, d time.Duration) error {
	if d <= 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_TIMERSLACK, 0, 0)
	if errno != 0 {
		return fmt.Errorf("prctl(PR_GET_TIMERSLACK): %w", errno)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, uintptr(d), 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_TIMERSLACK, %v): %w", d, errno)
	}
	defer func() {
		// Back to the thread's own slack before it serves other goroutines.
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, old, 0)
	}()
	return cmd.Start()
}
