package clockd_test

import (
	"context"
	"sync"
)

// memoryBound is an in-memory clockd.BoundStore for tests; it survives a
// Server restart when the same value is handed to the next Server.
type memoryBound struct {
	mu    sync.Mutex
	bound int64
	saves int
	err   error
}

// LoadBound implements clockd.BoundStore.
func (m *memoryBound) LoadBound(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bound, m.err
}

// SaveBound implements clockd.BoundStore.
func (m *memoryBound) SaveBound(_ context.Context, wallNs int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.bound = wallNs
	m.saves++
	return nil
}

// SetErr makes every later call fail with err (nil heals).
func (m *memoryBound) SetErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// Saves returns how many times the bound was saved.
func (m *memoryBound) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}
