package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// threadSlacks returns the timer slack of every thread of process pid.
func threadSlacks(t *testing.T, pid int) map[string]time.Duration {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]time.Duration, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/timerslack_ns")
		if err != nil {
			continue // the thread exited
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = time.Duration(ns)
	}
	return out
}

func TestChildrenTimerSlack(t *testing.T) {
	own := threadSlacks(t, os.Getpid())[strconv.Itoa(os.Getpid())]
	tests := []struct {
		name  string
		slack time.Duration
		want  time.Duration
	}{
		{"set", 3 * time.Millisecond, 3 * time.Millisecond},
		{"zero keeps the supervisor's", 0, own},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := filepath.Join(t.TempDir(), "events")
			cfg := testConfig(fake(t, "a", events))
			cfg.TimerSlack = tt.slack
			s, err := New(cfg, Deps{Logger: logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			stop := runReady(t, s)
			got := threadSlacks(t, s.Status()[0].PID)
			if len(got) < 3 {
				t.Fatalf("only %d threads seen: %v", len(got), got)
			}
			for tid, d := range got {
				if d != tt.want {
					t.Errorf("child thread %s: timer slack %v; want %v (all: %v)", tid, d, tt.want, got)
				}
			}
			// The thread that forked went back to its own slack.
			for tid, d := range threadSlacks(t, os.Getpid()) {
				if d != own {
					t.Errorf("supervisor thread %s: timer slack %v; want %v", tid, d, own)
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
