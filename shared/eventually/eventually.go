// Package eventually is the tests' way to wait for a condition: poll it
// until it holds or a deadline passes, then fail the test naming what was
// awaited (and, for NoError, the last error). Tests never sleep and then
// assert; they wait for the state they need with one of these.
//
// Polls start 1ms apart and back off to 50ms, so a condition that holds
// soon is seen soon without spinning on one that takes seconds.
package eventually

import (
	"testing"
	"time"
)

const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// True polls cond until it returns true, and fails t with what if it has
// not within timeout. Call it from the test's goroutine only.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	NoError(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// NoError polls cond until it returns nil, and fails t with what and
// cond's last error if it has not within timeout. Call it from the test's
// goroutine only.
func NoError(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Within(timeout, cond); err != nil {
		if err == errNotYet {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
	}
}

// Within polls cond until it returns nil or timeout passes, and returns
// cond's last error (nil when it succeeded). It is for helpers that must
// not fail the test themselves (goroutines other than the test's).
func Within(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	wait := firstPoll
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(min(wait, time.Until(deadline)+time.Millisecond))
		wait = min(2*wait, maxPoll)
	}
}

// errNotYet is True's stand-in error for a condition still false.
var errNotYet = notYet{}

type notYet struct{}

func (notYet) Error() string { return "condition not met" }
