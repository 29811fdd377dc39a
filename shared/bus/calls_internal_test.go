package bus

import (
	"runtime"
	"sync"
	"testing"
)

// countingStream counts the Writes that reach it.
type countingStream struct {
	mu     sync.Mutex
	writes int
	bytes  int
}

func (c *countingStream) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.bytes += len(p)
	return len(p), nil
}

func (c *countingStream) closeSend() {}

// TestFrameWriterCoalesces: frames of goroutines that become ready together
// go out in one Write, not one each.
func TestFrameWriterCoalesces(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 16
	cs := &countingStream{}
	w := frameWriter{str: cs}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			if err := w.write([]byte("0123456789")); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if cs.bytes != n*10 {
		t.Fatalf("%d bytes written, want %d", cs.bytes, n*10)
	}
	if cs.writes > n/4 {
		t.Fatalf("%d frames ready together took %d writes; want them coalesced", n, cs.writes)
	}
	t.Logf("%d frames in %d writes", n, cs.writes)
}

// sliceStream records the slices written to it.
type sliceStream struct{ writes [][]byte }

func (s *sliceStream) Write(p []byte) (int, error) {
	s.writes = append(s.writes, p)
	return len(p), nil
}

func (s *sliceStream) closeSend() {}

// TestFrameWriterLargeFrameAsIs: a large frame with no write in progress
// reaches the stream as it is, not copied; small frames are queued.
func TestFrameWriterLargeFrameAsIs(t *testing.T) {
	for _, tt := range []struct {
		size int
		asIs bool
	}{{maxCallsRequest + 1, true}, {1 << 20, true}, {100, false}} {
		s := &sliceStream{}
		w := frameWriter{str: s}
		frame := make([]byte, tt.size)
		if err := w.write(frame); err != nil {
			t.Fatal(err)
		}
		if len(s.writes) != 1 || len(s.writes[0]) != tt.size {
			t.Fatalf("%d bytes: writes %d", tt.size, len(s.writes))
		}
		if same := &s.writes[0][0] == &frame[0]; same != tt.asIs {
			t.Fatalf("%d bytes: written as it is %v, want %v", tt.size, same, tt.asIs)
		}
	}
}
