package lifecycle

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// TestConfigDefaults: zero fields get their documented defaults; the check
// interval follows the dead-node timeout within its bounds.
func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		in        Config
		deadAfter time.Duration
		check     time.Duration
	}{
		{Config{}, 5 * time.Minute, 30 * time.Second},
		{Config{DeadNodeTimeout: time.Minute}, time.Minute, 6 * time.Second},
		{Config{DeadNodeTimeout: 200 * time.Millisecond}, 200 * time.Millisecond, 100 * time.Millisecond},
		{Config{DeadNodeTimeout: time.Hour}, time.Hour, 30 * time.Second},
		{Config{DeadNodeTimeout: time.Minute, CheckInterval: time.Second}, time.Minute, time.Second},
	} {
		c := tc.in.withDefaults()
		if c.DeadNodeTimeout != tc.deadAfter || c.CheckInterval != tc.check {
			t.Errorf("%+v: dead after %v, check every %v; want %v, %v", tc.in, c.DeadNodeTimeout, c.CheckInterval, tc.deadAfter, tc.check)
		}
		if c.RetryInterval != 5*time.Second || c.ChangeTimeout != 5*time.Minute || c.RebalanceThreshold != 2 || c.RebalanceInterval != 0 || c.MoveConcurrency != 4 {
			t.Errorf("%+v: defaults %+v", tc.in, c)
		}
	}
}

// TestDeadFor: only dead and left members count, from their last state
// change.
func TestDeadFor(t *testing.T) {
	now := time.Unix(1000, 0)
	since := now.Add(-90 * time.Second).UnixNano()
	for st, want := range map[gossippb.MemberState]time.Duration{
		gossippb.MemberState_MEMBER_STATE_ALIVE:   0,
		gossippb.MemberState_MEMBER_STATE_SUSPECT: 0,
		gossippb.MemberState_MEMBER_STATE_DEAD:    90 * time.Second,
		gossippb.MemberState_MEMBER_STATE_LEFT:    90 * time.Second,
	} {
		if got := deadFor(&gossippb.Member{State: st, StateChangeUnixNano: since}, now); got != want {
			t.Errorf("%v: dead for %v; want %v", st, got, want)
		}
	}
}

// TestFailingReport: a failing check logs at debug until it has failed
// for failingWarnAfter, then warns every failingWarnEvery, and says when
// it succeeds again; a success before the warning resets quietly.
func TestFailingReport(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t0 := time.Unix(1000, 0)
	errBoom := errors.New("boom")
	var f failing
	steps := []struct {
		at   time.Duration
		err  error
		want string // level and message start of the line logged
	}{
		{0, errBoom, "level=DEBUG msg=check"},
		{30 * time.Second, errBoom, "level=DEBUG msg=check"},
		{40 * time.Second, nil, ""}, // recovered before any warning: nothing
		{50 * time.Second, errBoom, "level=DEBUG msg=check"},
		{50*time.Second + failingWarnAfter, errBoom, `level=WARN msg="check keeps failing" failing_for=1m0s`},
		{2 * failingWarnAfter, errBoom, "level=DEBUG msg=check"},
		{50*time.Second + failingWarnAfter + failingWarnEvery, errBoom, "level=WARN"},
		{time.Hour, nil, `level=INFO msg="check succeeds again"`},
		{time.Hour + time.Second, nil, ""},
	}
	for i, s := range steps {
		buf.Reset()
		f.report(log, "check", s.err, t0.Add(s.at))
		got := buf.String()
		if s.want == "" && got != "" || s.want != "" && !strings.Contains(got, s.want) {
			t.Errorf("step %d (+%v, %v): logged %q; want %q", i, s.at, s.err, got, s.want)
		}
	}
}
