package daemon

import (
	"context"
	"sync"
)

// Tasks owns a server's background goroutines, so that Stop can refuse new
// ones and wait for those running: every goroutine a server starts after
// Start goes through Go. The zero value is ready to use; it must not be
// copied after first use.
type Tasks struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Go runs f on a new goroutine owned by t and reports true, or reports
// false and runs nothing once t is closed. f must return when the work it
// does is cancelled (the server's lifetime context, say), or Wait never
// returns.
func (t *Tasks) Go(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// Close refuses new goroutines from now on; it is idempotent and does not
// wait.
func (t *Tasks) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// Closed reports whether Close was called.
func (t *Tasks) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Wait waits for every goroutine started by Go to return, or until ctx
// ends (then it returns ctx's error and the goroutines finish on their
// own). Call Close first, or goroutines started meanwhile are waited for
// too.
func (t *Tasks) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop is Close then Wait.
func (t *Tasks) Stop(ctx context.Context) error {
	t.Close()
	return t.Wait(ctx)
}
