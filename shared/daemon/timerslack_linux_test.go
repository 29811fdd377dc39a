package daemon_test

import (
	"fmt"
	"os"
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

func TestProcessTimerSlack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	inherited := threadSlacks(t, os.Getpid())[strconv.Itoa(os.Getpid())]
	tests := []struct {
		name string
		args []string
		want time.Duration
	}{
		{"default", nil, time.Millisecond},
		{"set", []string{"--timer-slack", "3ms"}, 3 * time.Millisecond},
		{"zero keeps the inherited slack", []string{"--timer-slack", "0"}, inherited},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--dev", "--data-dir", t.TempDir(), "--log-format", "json"}, tt.args...)
			c := startChild(t, nil, args...)
			c.waitMsg(t, "ready")
			got := threadSlacks(t, c.cmd.Process.Pid)
			if len(got) < 3 {
				t.Fatalf("only %d threads seen: %v", len(got), got)
			}
			for tid, d := range got {
				if d != tt.want {
					t.Errorf("thread %s: timer slack %v; want %v (all: %v)", tid, d, tt.want, got)
				}
			}
			comm := func(pid int) string {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			if got, want := comm(c.cmd.Process.Pid), comm(os.Getpid()); got != want {
				t.Errorf("process name %q; want %q (the binary's)", got, want)
			}
			if strings.Contains(c.output(), "timer slack not applied") {
				t.Errorf("warned:\n%s", c.output())
			}
			if os.Getenv("PLEIADES_TIMER_SLACK_APPLIED") != "" {
				t.Error("marker leaked into the test process")
			}
		})
	}
}
