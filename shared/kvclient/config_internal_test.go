package kvclient

import (
	"testing"
	"time"
)

func TestAttemptTimeoutDefaults(t *testing.T) {
	tests := []struct {
		name        string
		quick, slow time.Duration
		wantQuick   time.Duration
		wantSlow    time.Duration
		wantSuspect time.Duration
	}{
		{"defaults", 0, 0, DefaultAttemptTimeout, DefaultSlowAttemptTimeout, DefaultSuspectFor},
		{"short quick", 200 * time.Millisecond, 0, 200 * time.Millisecond, DefaultSlowAttemptTimeout, DefaultSuspectFor},
		{"long quick lengthens slow", time.Minute, 0, time.Minute, time.Minute, DefaultSuspectFor},
		{"both set", time.Minute, time.Second, time.Minute, time.Second, DefaultSuspectFor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Addrs: []string{"127.0.0.1:7402"}, AttemptTimeout: tt.quick, SlowAttemptTimeout: tt.slow}.withDefaults()
			if c.AttemptTimeout != tt.wantQuick || c.SlowAttemptTimeout != tt.wantSlow || c.SuspectFor != tt.wantSuspect {
				t.Errorf("AttemptTimeout %v, SlowAttemptTimeout %v, SuspectFor %v; want %v, %v, %v",
					c.AttemptTimeout, c.SlowAttemptTimeout, c.SuspectFor, tt.wantQuick, tt.wantSlow, tt.wantSuspect)
			}
		})
	}
}
