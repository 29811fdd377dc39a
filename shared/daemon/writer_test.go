package daemon_test

import (
	"strings"
	"sync"
)

// lockedWriter collects output written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		l.w = &strings.Builder{}
	}
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return ""
	}
	return l.w.String()
}
