package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

type counter struct {
	N     int      `json:"n"`
	Log   []string `json:"log"`
	Value int      `json:"value"`
	Out   string   `json:"out"`
}

func TestSequence(t *testing.T) {
	v := newEnv(t)
	var tr trace
	b := workflow.New[counter]("seq", 1)
	for i := range 3 {
		b.Then(fmt.Sprintf("s%d", i), func(_ context.Context, c *workflow.Context, d *counter) error {
			tr.add(c.Step)
			d.N++
			return nil
		})
	}
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "seq", `{}`)
	rec := waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	if got := tr.get(); !slices.Equal(got, []string{"s0", "s1", "s2"}) {
		t.Errorf("steps ran %v; want s0 s1 s2", got)
	}
	var d counter
	if err := json.Unmarshal(rec.GetData(), &d); err != nil || d.N != 3 {
		t.Errorf("data = %s (%v); want n=3", rec.GetData(), err)
	}
	if rec.GetStepsCompleted() != 3 || len(rec.GetPointers()) != 0 || rec.GetOwner() != 0 {
		t.Errorf("record: steps %d, pointers %v, owner %d; want 3 steps, none, no owner", rec.GetStepsCompleted(), rec.GetPointers(), rec.GetOwner())
	}
}

func decode(t *testing.T, rec *workflowpb.InstanceRecord) counter {
	t.Helper()
	var d counter
	if err := json.Unmarshal(rec.GetData(), &d); err != nil {
		t.Fatalf("data %s: %v", rec.GetData(), err)
	}
	return d
}

func logStep(name string) func(context.Context, *workflow.Context, *counter) error {
	return func(_ context.Context, c *workflow.Context, d *counter) error {
		d.Log = append(d.Log, name)
		return nil
	}
}

type addIn struct{ A, B int }
type addOut struct{ Sum int }

func TestDataInOut(t *testing.T) {
	v := newEnv(t)
	add := func(_ context.Context, c *workflow.Context, in addIn) (addOut, error) {
		return addOut{in.A + in.B}, nil
	}
	b := workflow.New[counter]("data", 1)
	b.Task(workflow.Task[counter]("add", add).
		In(func(d *counter, _ *workflow.Context) addIn { return addIn{d.N, 10} }).
		Out(func(d *counter, o addOut) { d.Value = o.Sum })).
		Task(workflow.Task[counter]("key", func(_ context.Context, c *workflow.Context, _ struct{}) (string, error) { return c.IdempotencyKey, nil }).
			Out(func(d *counter, k string) { d.Out = k }))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "data", `{"n": 32}`)
	d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
	if d.Value != 42 || d.N != 32 {
		t.Errorf("data = %+v; want value 42 from n 32", d)
	}
	if d.Out == "" || d.Out[:len(id)] != id {
		t.Errorf("idempotency key %q; want it to start with the instance id %s", d.Out, id)
	}
}

func TestIf(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("if", 1)
	b.If("big", func(d *counter) bool { return d.N > 5 }, func(s *workflow.Seq[counter]) {
		s.Then("yes", logStep("yes"))
	}).Else(func(s *workflow.Seq[counter]) {
		s.Then("no", logStep("no"))
	}).Then("after", logStep("after"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	for _, tt := range []struct {
		data string
		want []string
	}{{`{"n": 10}`, []string{"yes", "after"}}, {`{"n": 1}`, []string{"no", "after"}}} {
		id := start(t, e, "if", tt.data)
		if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, tt.want) {
			t.Errorf("%s: log %v; want %v", tt.data, d.Log, tt.want)
		}
	}
}

func TestWhile(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("while", 1)
	b.While("loop", func(d *counter) bool { return d.N < 4 }, func(s *workflow.Seq[counter]) {
		s.Then("inc", func(_ context.Context, c *workflow.Context, d *counter) error {
			d.Log = append(d.Log, fmt.Sprint(c.Index))
			d.N++
			return nil
		})
	}).Then("done", logStep("done"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "while", `{"n": 1}`)
	if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"0", "1", "2", "done"}) || d.N != 4 {
		t.Errorf("data %+v; want iterations 0..2 then done, n 4", d)
	}
}

func TestForEach(t *testing.T) {
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprintf("parallel=%v", parallel), func(t *testing.T) {
			v := newEnv(t)
			var tr trace
			release := make(chan struct{})
			b := workflow.New[counter]("foreach", 1)
			b.ForEach("each", func(d *counter) any { return []string{"a", "b", "c"} }, parallel, func(s *workflow.Seq[counter]) {
				s.Task(workflow.Task[counter]("visit", func(ctx context.Context, c *workflow.Context, _ struct{}) (string, error) {
					item, err := workflow.Item[string](c)
					if err != nil {
						return "", err
					}
					tr.add("start " + item)
					if parallel {
						// All three must be running at once to get here.
						select {
						case <-release:
						case <-ctx.Done():
							return "", ctx.Err()
						}
					}
					tr.add("end " + item)
					return fmt.Sprintf("%s%d", item, c.Index), nil
				}).Out(func(d *counter, s string) { d.Log = append(d.Log, s) }))
			})
			e := v.engine(1, []*workflow.Definition{b.MustBuild()})
			id := start(t, e, "foreach", `{}`)
			if parallel {
				waitFor(t, "three items started", func() bool { return len(tr.get()) == 3 })
				close(release)
			}
			d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
			slices.Sort(d.Log)
			if !slices.Equal(d.Log, []string{"a0", "b1", "c2"}) {
				t.Errorf("outputs %v; want a0 b1 c2", d.Log)
			}
			if !parallel {
				if got := tr.get(); !slices.Equal(got, []string{"start a", "end a", "start b", "end b", "start c", "end c"}) {
					t.Errorf("sequential order %v", got)
				}
			}
		})
	}
}

func TestParallel(t *testing.T) {
	v := newEnv(t)
	var tr trace
	gate := make(chan struct{})
	branch := func(name string) func(*workflow.Seq[counter]) {
		return func(s *workflow.Seq[counter]) {
			s.Task(workflow.Task[counter](name, func(ctx context.Context, _ *workflow.Context, _ struct{}) (string, error) {
				tr.add(name)
				select {
				case <-gate:
				case <-ctx.Done():
					return "", ctx.Err()
				}
				return name, nil
			}).Out(func(d *counter, s string) { d.Log = append(d.Log, s) }))
		}
	}
	b := workflow.New[counter]("parallel", 1)
	b.Parallel("fan", branch("x"), branch("y")).Then("join", logStep("join"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "parallel", `{}`)
	waitFor(t, "both branches running", func() bool { return len(tr.get()) == 2 })
	close(gate)
	d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
	if len(d.Log) != 3 || d.Log[2] != "join" {
		t.Errorf("log %v; want x, y in any order, then join", d.Log)
	}
}

func TestDecide(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("decide", 1)
	b.Decide("route", func(d *counter) string { return d.Out }).
		Branch("a", func(s *workflow.Seq[counter]) { s.Then("A", logStep("A")) }).
		Branch("b", func(s *workflow.Seq[counter]) { s.Then("B", logStep("B")) }).
		Then("end", logStep("end"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	for in, want := range map[string][]string{"a": {"A", "end"}, "b": {"B", "end"}, "zzz": {"end"}} {
		id := start(t, e, "decide", fmt.Sprintf(`{"out": %q}`, in))
		if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, want) {
			t.Errorf("decide %q: log %v; want %v", in, d.Log, want)
		}
	}
}

func TestDelay(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("delay", 1)
	b.Then("before", logStep("before")).
		Delay("nap", func(d *counter) time.Duration { return time.Duration(d.N) * time.Millisecond }).
		Then("after", logStep("after"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "delay", `{"n": 600}`)
	// Longer than HoldFor: the instance parks in the timer index, unowned.
	waitFor(t, "parked on its timer", func() bool {
		rec, err := e.Get(t.Context(), id)
		return err == nil && rec.GetDueUnixNano() != 0 && rec.GetOwner() == 0
	})
	rec := waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	h := rec.GetHistory()
	if len(h) != 2 || h[1].GetStep() != "after" {
		t.Fatalf("history %v", h)
	}
	if gap := time.Duration(h[1].GetStartedUnixNano() - h[0].GetEndedUnixNano()); gap < 600*time.Millisecond {
		t.Errorf("after ran %v after before; want at least the 600ms delay", gap)
	}
	if rec.GetDueUnixNano() != 0 {
		t.Errorf("finished instance still has a timer at %d", rec.GetDueUnixNano())
	}
}

type order struct {
	ID       string `json:"id"`
	Got      string `json:"got"`
	Received []string
}

func waitDef() *workflow.Definition {
	b := workflow.New[order]("wait", 1)
	b.WaitFor("paid", "payment", func(d *order) string { return d.ID }).
		OnEvent(func(d *order, ev workflow.Event) error {
			d.Got = string(ev.Data)
			return nil
		})
	return b.MustBuild()
}

func TestWaitForEvent(t *testing.T) {
	v := newEnv(t)
	e := v.engine(1, []*workflow.Definition{waitDef()})
	ctx := t.Context()
	t.Run("published after the wait", func(t *testing.T) {
		id := start(t, e, "wait", `{"id": "o1"}`)
		other := start(t, e, "wait", `{"id": "o2"}`)
		waitFor(t, "subscribed", func() bool {
			rec, _ := e.Get(ctx, id)
			return len(rec.GetSubscriptions()) == 1 && rec.GetOwner() == 0
		})
		_, woken, err := e.PublishEvent(ctx, "payment", "o1", []byte("42"), time.Time{}, "")
		if err != nil || woken != 1 {
			t.Fatalf("PublishEvent = %d woken, %v; want 1", woken, err)
		}
		rec := waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
		if got := decodeOrder(t, rec).Got; got != "42" {
			t.Errorf("event data %q; want 42", got)
		}
		// The other key's instance still waits.
		if rec, _ := e.Get(ctx, other); rec.GetStatus() != workflowpb.Status_STATUS_RUNNING {
			t.Errorf("o2 = %v; want still running", rec.GetStatus())
		}
		if _, _, err := e.PublishEvent(ctx, "payment", "o2", []byte("7"), time.Time{}, ""); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, other, workflowpb.Status_STATUS_COMPLETED)
	})
	t.Run("published before the wait", func(t *testing.T) {
		// The instance exists but has not reached the wait.
		b := workflow.New[order]("slowwait", 1)
		gate := make(chan struct{})
		b.Then("first", func(ctx context.Context, _ *workflow.Context, _ *order) error {
			select {
			case <-gate:
			case <-ctx.Done():
			}
			return ctx.Err()
		}).WaitFor("paid", "payment", func(d *order) string { return d.ID }).
			OnEvent(func(d *order, ev workflow.Event) error {
				d.Got = string(ev.Data)
				return nil
			})
		if err := e.Register(b.MustBuild().Compiled()); err != nil {
			t.Fatal(err)
		}
		id := start(t, e, "slowwait", `{"id": "early"}`)
		if _, woken, err := e.PublishEvent(ctx, "payment", "early", []byte("early-bird"), time.Time{}, ""); err != nil || woken != 0 {
			t.Fatalf("PublishEvent = %d woken, %v; want 0 (nobody waits yet)", woken, err)
		}
		close(gate)
		if got := decodeOrder(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)).Got; got != "early-bird" {
			t.Errorf("event data %q; want early-bird", got)
		}
	})
	t.Run("effective time excludes older events", func(t *testing.T) {
		b := workflow.New[order]("late", 1)
		b.WaitFor("paid", "payment", func(d *order) string { return d.ID }).
			EffectiveAt(func(d *order) time.Time { return time.Now().Add(time.Hour) }).
			OnEvent(func(d *order, ev workflow.Event) error {
				d.Got = string(ev.Data)
				return nil
			})
		if err := e.Register(b.MustBuild().Compiled()); err != nil {
			t.Fatal(err)
		}
		id := start(t, e, "late", `{"id": "future"}`)
		if _, _, err := e.PublishEvent(ctx, "payment", "future", []byte("now"), time.Time{}, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.PublishEvent(ctx, "payment", "future", []byte("later"), time.Now().Add(2*time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		if got := decodeOrder(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)).Got; got != "later" {
			t.Errorf("event data %q; want the event after the effective time", got)
		}
	})
	t.Run("loop takes each event once", func(t *testing.T) {
		b := workflow.New[order]("loopwait", 1)
		b.While("three", func(d *order) bool { return len(d.Received) < 3 }, func(s *workflow.Seq[order]) {
			s.WaitFor("msg", "msg", func(d *order) string { return d.ID }).
				OnEvent(func(d *order, ev workflow.Event) error {
					d.Received = append(d.Received, string(ev.Data))
					return nil
				})
		})
		if err := e.Register(b.MustBuild().Compiled()); err != nil {
			t.Fatal(err)
		}
		id := start(t, e, "loopwait", `{"id": "l"}`)
		for i := range 3 {
			if _, _, err := e.PublishEvent(ctx, "msg", "l", []byte(fmt.Sprint(i)), time.Time{}, ""); err != nil {
				t.Fatal(err)
			}
		}
		if got := decodeOrder(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)).Received; !slices.Equal(got, []string{"0", "1", "2"}) {
			t.Errorf("received %v; want 0 1 2, each once", got)
		}
	})
}

func decodeOrder(t *testing.T, rec *workflowpb.InstanceRecord) order {
	t.Helper()
	var d order
	if err := json.Unmarshal(rec.GetData(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSchedule(t *testing.T) {
	v := newEnv(t)
	var tr trace
	b := workflow.New[counter]("schedule", 1)
	b.Schedule("later", func(*counter) time.Duration { return 300 * time.Millisecond }, func(s *workflow.Seq[counter]) {
		s.Then("scheduled", func(_ context.Context, _ *workflow.Context, d *counter) error {
			tr.add("scheduled")
			d.Log = append(d.Log, "scheduled")
			return nil
		})
	}).Then("main", func(_ context.Context, _ *workflow.Context, d *counter) error {
		tr.add("main")
		d.Log = append(d.Log, "main")
		return nil
	})
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "schedule", `{}`)
	d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
	// The main path did not wait for the scheduled block; the instance
	// did.
	if !slices.Equal(d.Log, []string{"main", "scheduled"}) || !slices.Equal(tr.get(), d.Log) {
		t.Errorf("log %v, ran %v; want main then scheduled", d.Log, tr.get())
	}
}

func TestRecur(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("recur", 1)
	b.Recur("tick", func(*counter) time.Duration { return 50 * time.Millisecond }, func(d *counter) bool { return d.N >= 3 },
		func(s *workflow.Seq[counter]) {
			s.Then("inc", func(_ context.Context, _ *workflow.Context, d *counter) error {
				d.N++
				return nil
			})
		}).Then("main", logStep("main"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	id := start(t, e, "recur", `{}`)
	d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
	if d.N != 3 || !slices.Equal(d.Log, []string{"main"}) {
		t.Errorf("data %+v; want 3 runs and main", d)
	}
}

func flaky(fails int, tr *trace) func(context.Context, *workflow.Context, *counter) error {
	return func(_ context.Context, c *workflow.Context, d *counter) error {
		tr.add(fmt.Sprintf("attempt %d", c.Attempt))
		if c.Attempt <= fails {
			return fmt.Errorf("boom %d", c.Attempt)
		}
		d.Log = append(d.Log, "ok")
		return nil
	}
}

func TestRetry(t *testing.T) {
	pol := workflow.RetryPolicy(10*time.Millisecond, 2, 3, workflow.Terminate)
	t.Run("then success", func(t *testing.T) {
		v := newEnv(t)
		var tr trace
		b := workflow.New[counter]("retry", 1)
		b.Then("flaky", flaky(2, &tr)).OnError(pol)
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		rec := waitStatus(t, e, start(t, e, "retry", `{}`), workflowpb.Status_STATUS_COMPLETED)
		if got := tr.get(); !slices.Equal(got, []string{"attempt 1", "attempt 2", "attempt 3"}) {
			t.Errorf("attempts %v; want 3", got)
		}
		var outcomes []string
		for _, h := range rec.GetHistory() {
			outcomes = append(outcomes, h.GetOutcome())
		}
		if !slices.Equal(outcomes, []string{"retrying", "retrying", "completed"}) {
			t.Errorf("history outcomes %v", outcomes)
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		v := newEnv(t)
		var tr trace
		b := workflow.New[counter]("retry", 1)
		b.Then("flaky", flaky(100, &tr)).OnError(pol).Then("never", logStep("never"))
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		rec := waitStatus(t, e, start(t, e, "retry", `{}`), workflowpb.Status_STATUS_FAILED)
		if n := len(tr.get()); n != 3 {
			t.Errorf("%d attempts; want 3", n)
		}
		if !strings.Contains(rec.GetError(), "boom 3") || len(decode(t, rec).Log) != 0 {
			t.Errorf("error %q, data %s; want boom 3 and no later step", rec.GetError(), rec.GetData())
		}
	})
	t.Run("then suspend, resume", func(t *testing.T) {
		v := newEnv(t)
		var tr trace
		b := workflow.New[counter]("retry", 1)
		calls := 0
		b.Then("flaky", func(_ context.Context, c *workflow.Context, d *counter) error {
			tr.add(fmt.Sprintf("attempt %d", c.Attempt))
			if calls++; calls <= 2 {
				return fmt.Errorf("boom %d", c.Attempt)
			}
			return nil
		}).OnError(workflow.RetryPolicy(time.Millisecond, 1, 2, workflow.Suspend))
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		id := start(t, e, "retry", `{}`)
		rec := waitStatus(t, e, id, workflowpb.Status_STATUS_SUSPENDED)
		if !strings.Contains(rec.GetError(), "boom 2") {
			t.Errorf("suspended with error %q", rec.GetError())
		}
		if _, err := e.Control(t.Context(), id, "resume", ""); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
		if got := tr.get(); len(got) != 3 || got[2] != "attempt 1" {
			t.Errorf("attempts %v; want 2 then a fresh first attempt after resume", got)
		}
	})
}

func waitEntered(t *testing.T, entered chan struct{}) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the gated step did not begin")
	}
}

// gated is a step that waits for gate; entered (if not nil, buffered)
// is told each time the step begins.
func gated(gate, entered chan struct{}) func(context.Context, *workflow.Context, *counter) error {
	return func(ctx context.Context, _ *workflow.Context, d *counter) error {
		if entered != nil {
			select {
			case entered <- struct{}{}:
			default:
			}
		}
		select {
		case <-gate:
			d.Log = append(d.Log, "gated")
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestSuspendResume(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("pause", 1)
	b.WaitFor("go", "go", func(*counter) string { return "k" }).Then("after", logStep("after"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	ctx := t.Context()
	id := start(t, e, "pause", `{}`)
	waitFor(t, "parked", func() bool { rec, _ := e.Get(ctx, id); return rec.GetOwner() == 0 && len(rec.GetSubscriptions()) == 1 })
	if st, err := e.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_SUSPENDED {
		t.Fatalf("suspend = %v, %v", st, err)
	}
	if _, err := e.Control(ctx, id, "suspend", ""); !errors.Is(err, engine.ErrPrecondition) {
		t.Errorf("second suspend = %v; want a precondition error", err)
	}
	// An event while suspended is kept; nothing runs.
	if _, _, err := e.PublishEvent(ctx, "go", "k", nil, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the pollers have a go at it
	if rec, _ := e.Get(ctx, id); rec.GetStatus() != workflowpb.Status_STATUS_SUSPENDED || rec.GetStepsCompleted() != 0 {
		t.Fatalf("while suspended: %v, %d steps", rec.GetStatus(), rec.GetStepsCompleted())
	}
	if _, err := e.Control(ctx, id, "resume", ""); err != nil {
		t.Fatal(err)
	}
	if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"after"}) {
		t.Errorf("log %v", d.Log)
	}
	t.Run("while running", func(t *testing.T) {
		gate := make(chan struct{})
		b := workflow.New[counter]("busy", 1)
		entered := make(chan struct{}, 1)
		b.Then("busy", gated(gate, entered)).Then("after", logStep("after"))
		if err := e.Register(b.MustBuild().Compiled()); err != nil {
			t.Fatal(err)
		}
		id := start(t, e, "busy", `{}`)
		waitEntered(t, entered) // the request must come while the step runs
		// Owned and mid-step: the request waits for the owner.
		if st, err := e.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_RUNNING {
			t.Fatalf("suspend of an owned instance = %v, %v; want accepted, still running", st, err)
		}
		close(gate)
		d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_SUSPENDED))
		if !slices.Equal(d.Log, []string{"gated"}) {
			t.Errorf("log %v; want the busy step done, after not run", d.Log)
		}
		if _, err := e.Control(ctx, id, "resume", ""); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	})
	t.Run("from another workflowd", func(t *testing.T) {
		gate := make(chan struct{})
		b := workflow.New[counter]("busy2", 1)
		entered := make(chan struct{}, 1)
		b.Then("busy", gated(gate, entered)).Then("after", logStep("after"))
		if err := e.Register(b.MustBuild().Compiled()); err != nil {
			t.Fatal(err)
		}
		other := v.engine(2, nil)
		id := start(t, e, "busy2", `{}`)
		waitEntered(t, entered)
		// The owner is not told: it finds the request when it writes
		// the busy step's result, and applies it before the next step.
		if st, err := other.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_RUNNING {
			t.Fatalf("suspend from another engine = %v, %v", st, err)
		}
		close(gate)
		if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_SUSPENDED)); !slices.Equal(d.Log, []string{"gated"}) {
			t.Errorf("log %v; want the busy step done, after not run", d.Log)
		}
	})
}

// waitRenewals drops the renewals signalled so far on renewed, then
// waits for n more.
func waitRenewals(t *testing.T, renewed <-chan struct{}, n int) {
	t.Helper()
	for len(renewed) > 0 {
		<-renewed
	}
	for range n {
		select {
		case <-renewed:
		case <-time.After(30 * time.Second):
			t.Fatal("no lease renewal while the step runs")
		}
	}
}

// TestSuspendAfterStepInFlight: a suspend request for an instance whose
// step is running applies once the step has finished: until then the
// record says running (the request pending), then the step's result is
// written with the suspension and the next step waits for a resume;
// whether the owner is told (the request made through it) or finds the
// request at a lease renewal (made through another workflowd).
func TestSuspendAfterStepInFlight(t *testing.T) {
	for _, via := range []string{"owner", "another workflowd"} {
		t.Run(via, func(t *testing.T) {
			v := newEnv(t)
			ctx := t.Context()
			gate := make(chan struct{})
			entered := make(chan struct{}, 1)
			b := workflow.New[counter]("busy", 1)
			b.Then("busy", gated(gate, entered)).Then("after", logStep("after"))
			renewed := make(chan struct{}, 16)
			e := v.engine(1, []*workflow.Definition{b.MustBuild()}, func(_ *engine.Config, d *engine.Deps) {
				d.Knobs = &engine.Knobs{BeforeRenew: func(string) {
					select {
					case renewed <- struct{}{}:
					default:
					}
				}}
			})
			ctl := e
			if via != "owner" {
				ctl = v.engine(2, nil)
			}
			id := start(t, e, "busy", `{}`)
			waitEntered(t, entered)
			if st, err := ctl.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_RUNNING {
				t.Fatalf("suspend of an instance mid-step = %v, %v; want accepted, still running", st, err)
			}
			// Two lease renewals after the request: the first finds it
			// when made elsewhere (the owner was told at once otherwise).
			waitRenewals(t, renewed, 2)
			rec, err := e.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if rec.GetStatus() != workflowpb.Status_STATUS_RUNNING || rec.GetRequested() != "suspend" || rec.GetStepsCompleted() != 0 {
				t.Errorf("while the step runs: %v, request %q, %d steps done; want running, suspend pending, none done",
					rec.GetStatus(), rec.GetRequested(), rec.GetStepsCompleted())
			}
			close(gate)
			rec = waitStatus(t, e, id, workflowpb.Status_STATUS_SUSPENDED)
			if d := decode(t, rec); !slices.Equal(d.Log, []string{"gated"}) || rec.GetStepsCompleted() != 1 || rec.GetRequested() != "" {
				t.Errorf("suspended with log %v, %d steps done, request %q; want the busy step done, after not run, no request",
					d.Log, rec.GetStepsCompleted(), rec.GetRequested())
			}
			if _, err := e.Control(ctx, id, "resume", ""); err != nil {
				t.Fatal(err)
			}
			if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"gated", "after"}) {
				t.Errorf("log %v after resume; want gated, after", d.Log)
			}
		})
	}
}

// TestResumeRacesStaleIndexDrop: a claim that finds a suspended instance
// in the runnable index drops the stale entry; a resume written between
// its read and that drop keeps the entry, and the instance runs.
func TestResumeRacesStaleIndexDrop(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	b := workflow.New[counter]("pause", 1)
	b.WaitFor("go", "go", func(*counter) string { return "k" }).Then("after", logStep("after"))
	resumeAt := make(chan *engine.Engine, 1)
	resumed := make(chan error, 1)
	var id string
	e := v.engine(1, []*workflow.Definition{b.MustBuild()}, func(_ *engine.Config, d *engine.Deps) {
		d.Knobs = &engine.Knobs{BeforeDropIndex: func(got string) {
			select {
			case e := <-resumeAt:
				_, err := e.Control(ctx, got, "resume", "")
				resumed <- err
			default:
			}
		}}
	})
	id = start(t, e, "pause", `{}`)
	waitFor(t, "parked", func() bool { rec, _ := e.Get(ctx, id); return rec.GetOwner() == 0 && len(rec.GetSubscriptions()) == 1 })
	if st, err := e.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_SUSPENDED {
		t.Fatalf("suspend = %v, %v", st, err)
	}
	// The event makes the suspended instance runnable; the claim that
	// follows finds it suspended, and the resume comes just then.
	resumeAt <- e
	if _, _, err := e.PublishEvent(ctx, "go", "k", nil, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-resumed:
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no claim found the suspended instance")
	}
	if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"after"}) {
		t.Errorf("log %v; want after", d.Log)
	}
}

// TestControlDuringOwnerWrite: a control request written while the owner
// writes the instance is neither lost nor applied twice.
func TestControlDuringOwnerWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// control runs before an owner's write, given the stored record;
		// it reports whether it made its request.
		control func(ctx context.Context, e, other *engine.Engine, rec *workflowpb.InstanceRecord) bool
	}{
		// The suspend already applied is requested again (through another
		// workflowd) just before the step's result is written with it.
		{"suspend again", func(ctx context.Context, _, other *engine.Engine, rec *workflowpb.InstanceRecord) bool {
			if rec.GetStatus() != workflowpb.Status_STATUS_RUNNING || rec.GetRequested() != "suspend" {
				return false
			}
			_, err := other.Control(ctx, rec.GetId(), "suspend", "")
			return err == nil
		}},
		// The resume comes between the write of the suspension and the
		// parking of the instance.
		{"resume while parking", func(ctx context.Context, e, _ *engine.Engine, rec *workflowpb.InstanceRecord) bool {
			if rec.GetStatus() != workflowpb.Status_STATUS_SUSPENDED || rec.GetOwner() == 0 {
				return false
			}
			_, err := e.Control(ctx, rec.GetId(), "resume", "")
			return err == nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			ctx := t.Context()
			gate := make(chan struct{})
			entered := make(chan struct{}, 1)
			b := workflow.New[counter]("busy", 1)
			b.Then("busy", gated(gate, entered)).Then("after", logStep("after"))
			renewed := make(chan struct{}, 16)
			done := make(chan struct{})
			var h struct {
				sync.Mutex
				e, other *engine.Engine // set: the control is armed
				bad      []string       // suspended records still requesting a suspend
			}
			e := v.engine(1, []*workflow.Definition{b.MustBuild()}, func(_ *engine.Config, d *engine.Deps) {
				d.Knobs = &engine.Knobs{
					BeforeRenew: func(string) {
						select {
						case renewed <- struct{}{}:
						default:
						}
					},
					BeforePersist: func(id string) {
						h.Lock()
						defer h.Unlock()
						if h.other == nil {
							return
						}
						rec, err := h.other.Get(ctx, id)
						if err != nil {
							return
						}
						if rec.GetStatus() == workflowpb.Status_STATUS_SUSPENDED && rec.GetRequested() == "suspend" {
							h.bad = append(h.bad, rec.String())
						}
						if h.e != nil && tc.control(ctx, h.e, h.other, rec) {
							h.e = nil
							close(done)
						}
					},
				}
			})
			other := v.engine(2, nil)
			id := start(t, e, "busy", `{}`)
			waitEntered(t, entered)
			if st, err := other.Control(ctx, id, "suspend", ""); err != nil || st != workflowpb.Status_STATUS_RUNNING {
				t.Fatalf("suspend mid-step = %v, %v; want accepted, still running", st, err)
			}
			// The owner learns of the request at a renewal.
			waitRenewals(t, renewed, 2)
			h.Lock()
			h.e, h.other = e, other
			h.Unlock()
			close(gate)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the control request was never made")
			}
			if tc.name == "suspend again" {
				rec := waitStatus(t, e, id, workflowpb.Status_STATUS_SUSPENDED)
				waitFor(t, "parked", func() bool { rec, _ = e.Get(ctx, id); return rec.GetOwner() == 0 })
				if rec.GetStatus() != workflowpb.Status_STATUS_SUSPENDED || rec.GetRequested() != "" || rec.GetStepsCompleted() != 1 {
					t.Errorf("parked: %v, request %q, %d steps done; want suspended, no request, 1 step done",
						rec.GetStatus(), rec.GetRequested(), rec.GetStepsCompleted())
				}
				if _, err := e.Control(ctx, id, "resume", ""); err != nil {
					t.Fatal(err)
				}
			}
			if d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"gated", "after"}) {
				t.Errorf("log %v; want gated, after", d.Log)
			}
			h.Lock()
			defer h.Unlock()
			for _, r := range h.bad {
				t.Errorf("suspended record still requests a suspend: %s", r)
			}
		})
	}
}

func TestTerminate(t *testing.T) {
	v := newEnv(t)
	gate := make(chan struct{})
	defer close(gate)
	b := workflow.New[counter]("term", 1)
	b.Then("stuck", gated(gate, nil)).Then("after", logStep("after"))
	b2 := workflow.New[counter]("termwait", 1)
	b2.WaitFor("never", "never", func(*counter) string { return "k" })
	e := v.engine(1, []*workflow.Definition{b.MustBuild(), b2.MustBuild()})
	ctx := t.Context()
	for _, def := range []string{"term", "termwait"} {
		id := start(t, e, def, `{}`)
		if def == "termwait" {
			waitFor(t, "parked", func() bool { rec, _ := e.Get(ctx, id); return rec.GetOwner() == 0 && len(rec.GetSubscriptions()) == 1 })
		}
		if _, err := e.Control(ctx, id, "terminate", "operator said so"); err != nil {
			t.Fatal(err)
		}
		rec := waitStatus(t, e, id, workflowpb.Status_STATUS_TERMINATED)
		if rec.GetError() != "operator said so" || len(rec.GetPointers()) != 0 || len(rec.GetSubscriptions()) != 0 || len(decode(t, rec).Log) != 0 {
			t.Errorf("%s: terminated record: %v", def, rec)
		}
		if _, err := e.Control(ctx, id, "terminate", ""); !errors.Is(err, engine.ErrPrecondition) {
			t.Errorf("%s: terminate twice = %v; want a precondition error", def, err)
		}
	}
	// Nothing is left in the indexes.
	if _, woken, err := e.PublishEvent(ctx, "never", "k", nil, time.Time{}, ""); err != nil || woken != 0 {
		t.Errorf("event for the terminated waiter woke %d (%v); want 0", woken, err)
	}
}

func failing(_ context.Context, _ *workflow.Context, _ *counter) error {
	return errors.New("card declined")
}

func TestSagaCompensation(t *testing.T) {
	noRetry := workflow.ErrorPolicy{Behavior: workflow.Compensate}
	t.Run("reverse order", func(t *testing.T) {
		v := newEnv(t)
		b := workflow.New[counter]("saga", 1)
		b.Saga("book", func(s *workflow.Seq[counter]) {
			s.Then("flight", logStep("flight")).CompensateWith("cancel flight", logStep("undo flight")).
				Then("hotel", logStep("hotel")).CompensateWith("cancel hotel", logStep("undo hotel")).
				Then("no-undo", logStep("no-undo")).
				Then("pay", failing).OnError(noRetry).CompensateWith("refund", logStep("refund"))
		}).Then("after saga", logStep("after saga"))
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		d := decode(t, waitStatus(t, e, start(t, e, "saga", `{}`), workflowpb.Status_STATUS_COMPLETED))
		want := []string{"flight", "hotel", "no-undo", "undo hotel", "undo flight", "after saga"}
		if !slices.Equal(d.Log, want) {
			t.Errorf("log %v; want %v", d.Log, want)
		}
	})
	t.Run("nested", func(t *testing.T) {
		v := newEnv(t)
		b := workflow.New[counter]("nested", 1)
		b.Saga("outer", func(s *workflow.Seq[counter]) {
			s.Then("a", logStep("a")).CompensateWith("undo a", logStep("undo a")).
				Saga("inner", func(s *workflow.Seq[counter]) {
					s.Then("b", logStep("b")).CompensateWith("undo b", logStep("undo b")).
						Then("c", failing).OnError(noRetry)
				}).Propagate().
				Then("never", logStep("never"))
		}).Then("after", logStep("after"))
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		d := decode(t, waitStatus(t, e, start(t, e, "nested", `{}`), workflowpb.Status_STATUS_COMPLETED))
		want := []string{"a", "b", "undo b", "undo a", "after"}
		if !slices.Equal(d.Log, want) {
			t.Errorf("log %v; want %v", d.Log, want)
		}
	})
	t.Run("completed inner saga undone by the outer one", func(t *testing.T) {
		v := newEnv(t)
		b := workflow.New[counter]("nested2", 1)
		b.Saga("outer", func(s *workflow.Seq[counter]) {
			s.Saga("inner", func(s *workflow.Seq[counter]) {
				s.Then("x", logStep("x")).CompensateWith("undo x", logStep("undo x"))
			}).Then("y", logStep("y")).CompensateWith("undo y", logStep("undo y")).
				Then("z", failing).OnError(noRetry)
		})
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		d := decode(t, waitStatus(t, e, start(t, e, "nested2", `{}`), workflowpb.Status_STATUS_COMPLETED))
		if want := []string{"x", "y", "undo y", "undo x"}; !slices.Equal(d.Log, want) {
			t.Errorf("log %v; want %v", d.Log, want)
		}
	})
	t.Run("outside any saga", func(t *testing.T) {
		v := newEnv(t)
		b := workflow.New[counter]("bare", 1)
		b.Then("a", logStep("a")).CompensateWith("undo a", logStep("undo a")).
			ForEach("each", func(*counter) any { return []int{1, 2} }, false, func(s *workflow.Seq[counter]) {
				s.Then("item", func(_ context.Context, c *workflow.Context, d *counter) error {
					d.Log = append(d.Log, fmt.Sprint("item ", c.Index))
					return nil
				}).CompensateWith("undo item", func(_ context.Context, c *workflow.Context, d *counter) error {
					d.Log = append(d.Log, fmt.Sprint("undo item ", c.Index))
					return nil
				})
			}).
			Then("b", failing).OnError(workflow.RetryPolicy(time.Millisecond, 1, 2, workflow.Compensate))
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		rec := waitStatus(t, e, start(t, e, "bare", `{}`), workflowpb.Status_STATUS_COMPENSATED)
		want := []string{"a", "item 0", "item 1", "undo item 1", "undo item 0", "undo a"}
		if d := decode(t, rec); !slices.Equal(d.Log, want) {
			t.Errorf("log %v; want %v", d.Log, want)
		}
		if !strings.Contains(rec.GetError(), "card declined") {
			t.Errorf("error %q", rec.GetError())
		}
	})
	t.Run("parallel branches cancelled", func(t *testing.T) {
		v := newEnv(t)
		b := workflow.New[counter]("par", 1)
		b.Saga("s", func(s *workflow.Seq[counter]) {
			s.Then("a", logStep("a")).CompensateWith("undo a", logStep("undo a")).
				Parallel("fan",
					func(s *workflow.Seq[counter]) {
						s.Task(workflow.Task[counter]("slow", func(ctx context.Context, _ *workflow.Context, _ struct{}) (struct{}, error) {
							<-ctx.Done()
							return struct{}{}, ctx.Err()
						}))
					},
					func(s *workflow.Seq[counter]) { s.Then("bad", failing).OnError(noRetry) })
		})
		e := v.engine(1, []*workflow.Definition{b.MustBuild()})
		d := decode(t, waitStatus(t, e, start(t, e, "par", `{}`), workflowpb.Status_STATUS_COMPLETED))
		if want := []string{"a", "undo a"}; !slices.Equal(d.Log, want) {
			t.Errorf("log %v; want %v", d.Log, want)
		}
	})
}

func TestVersions(t *testing.T) {
	v := newEnv(t)
	mk := func(ver uint32, gate chan struct{}) *workflow.Definition {
		b := workflow.New[counter]("versioned", ver)
		b.Then("first", func(ctx context.Context, c *workflow.Context, d *counter) error {
			d.Log = append(d.Log, fmt.Sprintf("v%d first", c.Version))
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}).Then("second", func(_ context.Context, c *workflow.Context, d *counter) error {
			d.Log = append(d.Log, fmt.Sprintf("v%d second", c.Version))
			return nil
		})
		return b.MustBuild()
	}
	gate := make(chan struct{})
	e := v.engine(1, []*workflow.Definition{mk(1, gate)})
	old := start(t, e, "versioned", `{}`)
	if err := e.Register(mk(2, nil).Compiled()); err != nil {
		t.Fatal(err)
	}
	if err := e.Register(mk(2, nil).Compiled()); err == nil {
		t.Error("registering v2 twice succeeded")
	}
	nu := start(t, e, "versioned", `{}`)
	close(gate)
	if d := decode(t, waitStatus(t, e, old, workflowpb.Status_STATUS_COMPLETED)); !slices.Equal(d.Log, []string{"v1 first", "v1 second"}) {
		t.Errorf("old instance ran %v; want v1 throughout", d.Log)
	}
	rec := waitStatus(t, e, nu, workflowpb.Status_STATUS_COMPLETED)
	if d := decode(t, rec); rec.GetVersion() != 2 || !slices.Equal(d.Log, []string{"v2 first", "v2 second"}) {
		t.Errorf("new instance: version %d ran %v; want v2", rec.GetVersion(), d.Log)
	}
	id, ver, _, err := e.Start(t.Context(), "versioned", engine.StartOptions{Version: 1})
	if err != nil || ver != 1 {
		t.Fatalf("start v1 explicitly = %v, %v", ver, err)
	}
	waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
}

func TestSubWorkflow(t *testing.T) {
	v := newEnv(t)
	child := workflow.New[counter]("child", 1)
	child.Then("double", func(_ context.Context, _ *workflow.Context, d *counter) error {
		d.N *= 2
		return nil
	}).WaitFor("go", "go", func(*counter) string { return "child" })
	parent := workflow.New[counter]("parent", 1)
	parent.SubWorkflow("call", "child", 0, func(d *counter) any { return map[string]int{"n": d.N} },
		func(d *counter, out json.RawMessage) error {
			var c counter
			if err := json.Unmarshal(out, &c); err != nil {
				return err
			}
			d.Value = c.N
			return nil
		}).Then("after", logStep("after"))
	e := v.engine(1, []*workflow.Definition{child.MustBuild(), parent.MustBuild()})
	ctx := t.Context()
	id := start(t, e, "parent", `{"n": 21}`)
	var childID string
	waitFor(t, "child started and parked", func() bool {
		rec, _ := e.Get(ctx, id)
		for _, p := range rec.GetPointers() {
			if p.GetChildInstance() != "" {
				childID = p.GetChildInstance()
			}
		}
		if childID == "" {
			return false
		}
		c, err := e.Get(ctx, childID)
		return err == nil && c.GetOwner() == 0 && len(c.GetSubscriptions()) == 1
	})
	if c, _ := e.Get(ctx, childID); c.GetParentId() != id {
		t.Errorf("child's parent = %q; want %s", c.GetParentId(), id)
	}
	if _, _, err := e.PublishEvent(ctx, "go", "child", nil, time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	d := decode(t, waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED))
	if d.Value != 42 || !slices.Equal(d.Log, []string{"after"}) {
		t.Errorf("parent data %+v; want value 42 from the child, then after", d)
	}
	t.Run("failed child fails the step", func(t *testing.T) {
		bad := workflow.New[counter]("badchild", 1)
		bad.Then("boom", failing).OnError(workflow.ErrorPolicy{Behavior: workflow.Terminate})
		p := workflow.New[counter]("badparent", 1)
		p.SubWorkflow("call", "badchild", 1, nil, nil).OnError(workflow.ErrorPolicy{Behavior: workflow.Terminate})
		for _, d := range []*workflow.Definition{bad.MustBuild(), p.MustBuild()} {
			if err := e.Register(d.Compiled()); err != nil {
				t.Fatal(err)
			}
		}
		rec := waitStatus(t, e, start(t, e, "badparent", `{}`), workflowpb.Status_STATUS_FAILED)
		if !strings.Contains(rec.GetError(), "card declined") {
			t.Errorf("parent error %q; want the child's", rec.GetError())
		}
	})
}

func TestBadInput(t *testing.T) {
	v := newEnv(t)
	b := workflow.New[counter]("ok", 1)
	b.Then("a", logStep("a"))
	e := v.engine(1, []*workflow.Definition{b.MustBuild()})
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		def  string
		ver  uint32
		data string
		want error
	}{
		{"unknown definition", "nope", 0, `{}`, engine.ErrNotFound},
		{"unknown version", "ok", 7, `{}`, engine.ErrNotFound},
		{"no definition", "", 0, `{}`, engine.ErrInvalid},
		{"not JSON", "ok", 0, `{"n": `, engine.ErrInvalid},
		{"not an object", "ok", 0, `[1, 2]`, engine.ErrInvalid},
		{"wrong type", "ok", 0, `{"n": "ten"}`, engine.ErrInvalid},
	} {
		if _, _, _, err := e.Start(ctx, tt.def, engine.StartOptions{Version: tt.ver, Data: []byte(tt.data)}); !errors.Is(err, tt.want) {
			t.Errorf("%s: Start = %v; want %v", tt.name, err, tt.want)
		}
	}
	if list, _, err := e.List(ctx, engine.ListFilter{}); err != nil || len(list) != 0 {
		t.Errorf("after refused starts, List = %v, %v; want nothing stored", list, err)
	}
	id := start(t, e, "ok", `{}`)
	waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	if _, _, err := e.PublishEvent(ctx, "x", "k", nil, time.Time{}, id); !errors.Is(err, engine.ErrPrecondition) {
		t.Errorf("event for a finished instance = %v; want a precondition error", err)
	}
	if _, _, err := e.PublishEvent(ctx, "x", "k", nil, time.Time{}, "nosuch"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("event for an unknown instance = %v; want not found", err)
	}
	if _, _, err := e.PublishEvent(ctx, "", "k", nil, time.Time{}, ""); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("event without a name = %v; want invalid", err)
	}
	if _, err := e.Get(ctx, "nosuch"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("Get(nosuch) = %v; want not found", err)
	}
	for _, op := range []string{"suspend", "resume", "terminate"} {
		if _, err := e.Control(ctx, id, op, ""); !errors.Is(err, engine.ErrPrecondition) {
			t.Errorf("%s of a completed instance = %v; want a precondition error", op, err)
		}
	}
}
