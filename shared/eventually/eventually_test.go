package eventually

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records Fatalf instead of stopping.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	r := &recorder{TB: t}
	True(r, 10*time.Second, "three polls", func() bool { return n.Add(1) >= 3 })
	if r.failed != "" || n.Load() != 3 {
		t.Errorf("failed %q after %d polls; want success at the third", r.failed, n.Load())
	}
}

func TestFailureNamesWhatAndTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	True(r, 5*time.Millisecond, "the leader", func() bool { return false })
	if want := "timed out after 5ms waiting for the leader"; r.failed != want {
		t.Errorf("failure %q; want %q", r.failed, want)
	}
	r = &recorder{TB: t}
	NoError(r, 5*time.Millisecond, "the replica", func() error { return errors.New("applied 3 of 7") })
	if want := "timed out after 5ms waiting for the replica: applied 3 of 7"; r.failed != want {
		t.Errorf("failure %q; want %q", r.failed, want)
	}
}

func TestWithin(t *testing.T) {
	if err := Within(time.Millisecond, func() error { return errors.New("no") }); err == nil || err.Error() != "no" {
		t.Errorf("Within = %v; want the last error", err)
	}
	if err := Within(time.Second, func() error { return nil }); err != nil {
		t.Errorf("Within = %v; want nil", err)
	}
}
