package daemon

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

// slackExecEnv marks a process that re-executed itself to apply its timer
// slack, so that it never tries twice.
const slackExecEnv = "PLEIADES_TIMER_SLACK_APPLIED"

// currentTimerSlack returns the timer slack of the calling thread.
func currentTimerSlack() (time.Duration, error) {
	v, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_TIMERSLACK, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("prctl(PR_GET_TIMERSLACK): %w", errno)
	}
	return time.Duration(v), nil
}

// applyTimerSlack gives every thread of the process the timer slack d
// (0: leave it). A thread's slack is copied to the threads it creates and
// kept across execve, but the Go runtime starts its threads before main
// runs, so the process sets the slack on the current thread and executes
// itself again: the new image's first thread, and so every thread, then
// has it. On success the re-execution does not return. An error means the
// process runs on with the slack it inherited.
func applyTimerSlack(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := currentTimerSlack()
	if err != nil {
		return err
	}
	applied := os.Getenv(slackExecEnv)
	_ = os.Unsetenv(slackExecEnv)
	if cur == d {
		return nil
	}
	if applied != "" {
		return fmt.Errorf("timer slack is %v after re-executing to set %v", cur, d)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, uintptr(d), 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_TIMERSLACK, %v): %w", d, errno)
	}
	// Not /proc/self/exe: the kernel names the process after the file
	// executed (ps, top and pgrep would show "exe").
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("re-execute to apply timer slack: %w", err)
	}
	env := append(os.Environ(), slackExecEnv+"=1")
	err = syscall.Exec(exe, os.Args, env)
	// Still here: the exec failed. Undo the change on this thread.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_TIMERSLACK, uintptr(cur), 0)
	return fmt.Errorf("re-execute to apply timer slack: %w", err)
}
