package engine_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// execLog records step executions: which step ran under which epoch.
type execLog struct {
	mu      sync.Mutex
	entries []string
	running atomic.Int32
	overlap atomic.Bool
}

func (l *execLog) step(name string) func(context.Context, *workflow.Context, *counter) error {
	return func(_ context.Context, c *workflow.Context, d *counter) error {
		if l.running.Add(1) > 1 {
			l.overlap.Store(true)
		}
		defer l.running.Add(-1)
		l.mu.Lock()
		l.entries = append(l.entries, fmt.Sprintf("%s@%d", name, c.Epoch))
		l.mu.Unlock()
		d.Log = append(d.Log, name)
		return nil
	}
}

func (l *execLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

// TestRestartResumes: an engine stopped mid-workflow hands the instance
// back; a new engine (another node) finishes it from the last persisted
// step, with no step lost and the ones done not run again.
func TestRestartResumes(t *testing.T) {
	v := newEnv(t)
	var log execLog
	gate := make(chan struct{})
	mk := func() *workflow.Definition {
		b := workflow.New[counter]("resume", 1)
		b.Then("s1", log.step("s1")).Then("s2", log.step("s2")).
			Then("wait", func(ctx context.Context, c *workflow.Context, d *counter) error {
				select {
				case <-gate:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}).Then("s3", log.step("s3"))
		return b.MustBuild()
	}
	e1, err := engineNoCleanup(v, 1, mk())
	if err != nil {
		t.Fatal(err)
	}
	id := start(t, e1, "resume", `{}`)
	waitFor(t, "two steps done", func() bool { rec, _ := e1.Get(t.Context(), id); return rec.GetStepsCompleted() == 2 })
	if err := e1.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, _ := v.engine(9, nil).Get(t.Context(), id)
	if rec.GetOwner() != 0 {
		t.Errorf("after a clean stop the owner is %d; want released", rec.GetOwner())
	}
	close(gate)
	e2 := v.engine(2, []*workflow.Definition{mk()})
	rec = waitStatus(t, e2, id, workflowpb.Status_STATUS_COMPLETED)
	if got := log.get(); !slices.Equal(got, []string{"s1@1", "s2@1", "s3@2"}) {
		t.Errorf("executions %v; want s1, s2 by epoch 1 and s3 by epoch 2", got)
	}
	if d := decode(t, rec); !slices.Equal(d.Log, []string{"s1", "s2", "s3"}) {
		t.Errorf("data log %v", d.Log)
	}
}

func engineNoCleanup(v *env, node uint64, defs ...*workflow.Definition) (*engine.Engine, error) {
	e := v.engine(node, defs)
	return e, nil
}

// TestTakeoverAndFencing: the owner freezes past its lease (its next
// write blocks); another engine takes the instance over after the lease
// and finishes it; when the frozen owner wakes, its write is refused.
func TestTakeoverAndFencing(t *testing.T) {
	v := newEnv(t)
	var log execLog
	mk := func() *workflow.Definition {
		b := workflow.New[counter]("fence", 1)
		for i := range 5 {
			b.Then(fmt.Sprintf("s%d", i), log.step(fmt.Sprintf("s%d", i)))
		}
		return b.MustBuild()
	}
	freeze := make(chan struct{})
	var thaw sync.Once
	t.Cleanup(func() { thaw.Do(func() { close(freeze) }) })
	frozen := make(chan struct{}, 1)
	var writes atomic.Int32
	var isFrozen atomic.Bool
	e1 := v.engine(1, []*workflow.Definition{mk()}, func(_ *engine.Config, d *engine.Deps) {
		d.Knobs = &engine.Knobs{
			BeforePersist: func(string) {
				// Freeze before the write of s1's result (the second write)
				// (as SIGSTOP would: renewals stop too).
				if writes.Add(1) == 2 {
					isFrozen.Store(true)
					frozen <- struct{}{}
					<-freeze
				}
			},
			BeforeRenew: func(string) {
				if isFrozen.Load() {
					<-freeze
				}
			},
		}
	})
	id := start(t, e1, "fence", `{}`)
	<-frozen
	e2 := v.engine(2, []*workflow.Definition{mk()})
	rec := waitStatus(t, e2, id, workflowpb.Status_STATUS_COMPLETED)
	if rec.GetEpoch() != 2 {
		t.Errorf("epoch %d; want 2 after one takeover", rec.GetEpoch())
	}
	thaw.Do(func() { close(freeze) }) // the old owner wakes up and tries to write
	waitFor(t, "old owner fenced", func() bool { return e1.Running() == 0 })
	after, err := e2.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if after.GetRevision() != rec.GetRevision() || after.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
		t.Errorf("the fenced owner changed the record: revision %d -> %d, status %v", rec.GetRevision(), after.GetRevision(), after.GetStatus())
	}
	// s1 ran under epoch 1, its write was lost: it ran again under epoch
	// 2 (at least once), and nothing ran twice at the same time.
	want := []string{"s0@1", "s1@1", "s1@2", "s2@2", "s3@2", "s4@2"}
	if got := log.get(); !slices.Equal(got, want) || log.overlap.Load() {
		t.Errorf("executions %v (overlap %v); want %v", got, log.overlap.Load(), want)
	}
	if d := decode(t, after); !slices.Equal(d.Log, []string{"s0", "s1", "s2", "s3", "s4"}) {
		t.Errorf("data log %v; want each step once", d.Log)
	}
}

// TestTimersAndEventsSurviveRestart: instances parked on a timer and on
// an event, with every engine stopped, complete under a new engine.
func TestTimersAndEventsSurviveRestart(t *testing.T) {
	v := newEnv(t)
	mk := func() []*workflow.Definition {
		timer := workflow.New[counter]("timer", 1)
		timer.Delay("nap", func(*counter) time.Duration { return 800 * time.Millisecond }).Then("after", logStep("after"))
		event := workflow.New[counter]("event", 1)
		event.WaitFor("wait", "ping", func(*counter) string { return "k" }).Then("after", logStep("after"))
		return []*workflow.Definition{timer.MustBuild(), event.MustBuild()}
	}
	e1 := v.engine(1, mk())
	tid, eid := start(t, e1, "timer", `{}`), start(t, e1, "event", `{}`)
	for _, id := range []string{tid, eid} {
		waitFor(t, "parked", func() bool {
			rec, err := e1.Get(t.Context(), id)
			return err == nil && rec.GetOwner() == 0 && (rec.GetDueUnixNano() != 0 || len(rec.GetSubscriptions()) == 1)
		})
	}
	if err := e1.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	e2 := v.engine(2, mk())
	if _, woken, err := e2.PublishEvent(t.Context(), "ping", "k", nil, time.Time{}, ""); err != nil || woken != 1 {
		t.Fatalf("PublishEvent = %d, %v", woken, err)
	}
	for _, id := range []string{tid, eid} {
		if d := decode(t, waitStatus(t, e2, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"after"}) {
			t.Errorf("%s: log %v", id, d.Log)
		}
	}
	if rec, _ := e2.Get(t.Context(), tid); time.Duration(rec.GetEndedUnixNano()-rec.GetCreatedUnixNano()) < 800*time.Millisecond {
		t.Errorf("timer instance ended %v after its start; want at least its 800ms delay", time.Duration(rec.GetEndedUnixNano()-rec.GetCreatedUnixNano()))
	}
}
