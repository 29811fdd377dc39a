package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// Context describes one step execution to its body and mapping functions:
// instance id, step name, attempt, idempotency key, ForEach item...
type Context = flow.Context

// Event is an event received by a WaitFor step.
type Event = flow.Event

// ErrorPolicy says what a failing step does.
type ErrorPolicy = flow.ErrorPolicy

// Behavior is an error behaviour.
type Behavior = flow.Behavior

// Error behaviours (see ErrorPolicy).
const (
	Retry      = flow.Retry
	Suspend    = flow.Suspend
	Terminate  = flow.Terminate
	Compensate = flow.Compensate
)

// Services are the facilities a step body may use (c.Services).
type Services = flow.Services

// DefaultErrorPolicy is the policy of a definition that sets none.
var DefaultErrorPolicy = flow.DefaultErrorPolicy

// RetryPolicy retries up to maxAttempts attempts (0: forever), interval
// apart growing by backoff, then does then.
func RetryPolicy(interval time.Duration, backoff float64, maxAttempts int, then Behavior) ErrorPolicy {
	return ErrorPolicy{Behavior: Retry, Interval: interval, Backoff: backoff, MaxAttempts: maxAttempts, Then: then}
}

// Item decodes the current ForEach item.
func Item[T any](c *Context) (T, error) {
	var v T
	if c.Item == nil {
		return v, errors.New("workflow: not inside a ForEach")
	}
	err := json.Unmarshal(c.Item, &v)
	return v, err
}

// Definition is a built workflow definition, to register with workflowd.
type Definition struct{ def *flow.Def }

// ID returns the definition's id.
func (d *Definition) ID() string { return d.def.ID }

// Version returns the definition's version.
func (d *Definition) Version() uint32 { return d.def.Version }

// Compiled returns the compiled form (for workflowd's engine).
func (d *Definition) Compiled() *flow.Def { return d.def }

// Builder builds a definition whose instances' data is a D (encoded as
// JSON). It is also the definition's main sequence of steps.
type Builder[D any] struct {
	*Seq[D]
	def  *flow.Def
	errs []error
}

// New starts a definition with id and version (>= 1).
func New[D any](id string, version uint32) *Builder[D] {
	b := &Builder[D]{def: &flow.Def{ID: id, Version: version, Error: flow.DefaultErrorPolicy, Codec: flow.JSONCodec[D]{}, Source: "go"}}
	b.Seq = &Seq[D]{b: b, first: flow.None, last: flow.None}
	return b
}

// Description sets the definition's description.
func (b *Builder[D]) Description(s string) *Builder[D] {
	b.def.Description = s
	return b
}

// DefaultErrorPolicy sets the policy of steps that set none.
func (b *Builder[D]) DefaultErrorPolicy(p ErrorPolicy) *Builder[D] {
	b.def.Error = p
	return b
}

// Build checks and returns the definition.
func (b *Builder[D]) Build() (*Definition, error) {
	if err := errors.Join(b.errs...); err != nil {
		return nil, fmt.Errorf("workflow %q v%d: %w", b.def.ID, b.def.Version, err)
	}
	if b.first == flow.None {
		return nil, fmt.Errorf("workflow %q v%d: no steps", b.def.ID, b.def.Version)
	}
	root := b.add(&flow.Step{Name: "(root)", Kind: flow.Saga, Branches: []int{b.first}})
	b.def.Root = root.ID
	if err := b.def.Validate(); err != nil {
		return nil, err
	}
	return &Definition{def: b.def}, nil
}

// MustBuild is Build that panics on error (for definitions in code).
func (b *Builder[D]) MustBuild() *Definition {
	d, err := b.Build()
	if err != nil {
		panic(err)
	}
	return d
}

func (b *Builder[D]) add(s *flow.Step) *flow.Step {
	s.ID = len(b.def.Steps)
	s.Next, s.Compensation = flow.None, flow.None
	b.def.Steps = append(b.def.Steps, s)
	return s
}

func (b *Builder[D]) errorf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf(format, args...))
}

// Seq is a chain of steps: the definition's main one or a body. Its
// methods append a step and return the Seq; the modifiers (OnError,
// CompensateWith, Else, Branch, OnEvent, EffectiveAt, Propagate) apply to
// the step appended last.
type Seq[D any] struct {
	b           *Builder[D]
	first, last int
}

func (q *Seq[D]) append(s *flow.Step) *Seq[D] {
	s = q.b.add(s)
	if q.first == flow.None {
		q.first = s.ID
	} else {
		q.b.def.Steps[q.last].Next = s.ID
	}
	q.last = s.ID
	return q
}

func (q *Seq[D]) body(f func(*Seq[D])) int {
	if f == nil {
		return flow.None
	}
	s := &Seq[D]{b: q.b, first: flow.None, last: flow.None}
	f(s)
	return s.first
}

func (q *Seq[D]) lastStep(what string, kinds ...flow.Kind) *flow.Step {
	if q.last == flow.None {
		q.b.errorf("%s before any step", what)
		return nil
	}
	s := q.b.def.Steps[q.last]
	if len(kinds) == 0 {
		return s
	}
	for _, k := range kinds {
		if s.Kind == k {
			return s
		}
	}
	q.b.errorf("%s after step %q (%s)", what, s.Name, s.Kind)
	return nil
}

func data[D any](v any) *D { return v.(*D) }

// Then appends a step whose body reads and changes the instance's data in
// place. Such steps run one at a time within an instance.
func (q *Seq[D]) Then(name string, fn func(ctx context.Context, c *Context, d *D) error) *Seq[D] {
	return q.append(inPlace(name, fn))
}

func inPlace[D any](name string, fn func(ctx context.Context, c *Context, d *D) error) *flow.Step {
	return &flow.Step{Name: name, Kind: flow.Task, InPlace: true,
		Exec: func(ctx context.Context, c *Context, in any) (any, error) { return nil, fn(ctx, c, data[D](in)) }}
}

// TaskSpec is a step with typed input and output; see Task.
type TaskSpec[D any] interface {
	step() *flow.Step
}

// TaskBuilder is a typed step: its input In is computed from the data
// (In), its body runs concurrently with the instance's other branches,
// and its output Out is mapped back into the data (Out).
type TaskBuilder[D, In, Out any] struct {
	name string
	fn   func(ctx context.Context, c *Context, in In) (Out, error)
	in   func(d *D, c *Context) In
	out  func(d *D, out Out)
}

// Task makes a typed step; Task[D](name, fn) infers In and Out from fn.
func Task[D, In, Out any](name string, fn func(ctx context.Context, c *Context, in In) (Out, error)) *TaskBuilder[D, In, Out] {
	return &TaskBuilder[D, In, Out]{name: name, fn: fn}
}

// In sets the input mapping (default: In's zero value).
func (t *TaskBuilder[D, In, Out]) In(f func(d *D, c *Context) In) *TaskBuilder[D, In, Out] {
	t.in = f
	return t
}

// Out sets the output mapping (default: the output is dropped).
func (t *TaskBuilder[D, In, Out]) Out(f func(d *D, out Out)) *TaskBuilder[D, In, Out] {
	t.out = f
	return t
}

func (t *TaskBuilder[D, In, Out]) step() *flow.Step {
	s := &flow.Step{Name: t.name, Kind: flow.Task}
	in, out, fn := t.in, t.out, t.fn
	s.Prepare = func(c *Context, d any) (any, error) {
		var v In
		if in != nil {
			v = in(data[D](d), c)
		}
		return v, nil
	}
	s.Exec = func(ctx context.Context, c *Context, v any) (any, error) { return fn(ctx, c, v.(In)) }
	if out != nil {
		s.Apply = func(c *Context, d any, o any) error {
			out(data[D](d), o.(Out))
			return nil
		}
	}
	return s
}

// Task appends a typed step (see Task).
func (q *Seq[D]) Task(t TaskSpec[D]) *Seq[D] { return q.append(t.step()) }

// OnError sets the last step's error policy.
func (q *Seq[D]) OnError(p ErrorPolicy) *Seq[D] {
	if s := q.lastStep("OnError"); s != nil {
		s.Error = &p
	}
	return q
}

// CompensateWith sets the last step's compensation: it runs (with the
// data as it then is) when a saga holding the completed step compensates.
func (q *Seq[D]) CompensateWith(name string, fn func(ctx context.Context, c *Context, d *D) error) *Seq[D] {
	if s := q.lastStep("CompensateWith", flow.Task, flow.SubWorkflow); s != nil {
		s.Compensation = q.b.add(inPlace(name, fn)).ID
	}
	return q
}

// CompensateWithTask is CompensateWith with a typed step.
func (q *Seq[D]) CompensateWithTask(t TaskSpec[D]) *Seq[D] {
	if s := q.lastStep("CompensateWithTask", flow.Task, flow.SubWorkflow); s != nil {
		s.Compensation = q.b.add(t.step()).ID
	}
	return q
}

func cond[D any](f func(d *D) bool) func(*Context, any) (bool, error) {
	return func(_ *Context, d any) (bool, error) { return f(data[D](d)), nil }
}

// If runs body when cond holds (see Else).
func (q *Seq[D]) If(name string, c func(d *D) bool, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.If, Cond: cond(c), Branches: []int{q.body(body)}})
}

// Else sets the body the last If runs when its condition fails.
func (q *Seq[D]) Else(body func(*Seq[D])) *Seq[D] {
	if s := q.lastStep("Else", flow.If); s != nil {
		s.Branches = append(s.Branches[:1], q.body(body))
	}
	return q
}

// While runs body again and again while cond holds (checked before each
// run); c.Index is the iteration.
func (q *Seq[D]) While(name string, c func(d *D) bool, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.While, Cond: cond(c), Branches: []int{q.body(body)}})
}

// ForEach runs body once per element of the slice items returns (encoded
// as JSON; the body reads it with Item), one after another, or all at
// once when parallel.
func (q *Seq[D]) ForEach(name string, items func(d *D) any, parallel bool, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.ForEach, Parallel: parallel, Branches: []int{q.body(body)},
		Items: func(_ *Context, d any) ([]json.RawMessage, error) {
			b, err := json.Marshal(items(data[D](d)))
			if err != nil {
				return nil, err
			}
			var out []json.RawMessage
			if err := json.Unmarshal(b, &out); err != nil {
				return nil, fmt.Errorf("foreach items are not a list: %w", err)
			}
			return out, nil
		}})
}

// Parallel runs every branch at once and goes on when all have finished.
func (q *Seq[D]) Parallel(name string, branches ...func(*Seq[D])) *Seq[D] {
	s := &flow.Step{Name: name, Kind: flow.Parallel}
	for _, br := range branches {
		s.Branches = append(s.Branches, q.body(br))
	}
	return q.append(s)
}

// Decide runs the branch (see Branch) whose key sel returns; none
// matching, it goes on.
func (q *Seq[D]) Decide(name string, sel func(d *D) string) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.Decide,
		Select: func(_ *Context, d any) (string, error) { return sel(data[D](d)), nil }})
}

// Branch adds a branch to the last Decide.
func (q *Seq[D]) Branch(key string, body func(*Seq[D])) *Seq[D] {
	if s := q.lastStep("Branch", flow.Decide); s != nil {
		s.BranchKeys = append(s.BranchKeys, key)
		s.Branches = append(s.Branches, q.body(body))
	}
	return q
}

func duration[D any](f func(d *D) time.Duration) func(*Context, any) (time.Duration, error) {
	return func(_ *Context, d any) (time.Duration, error) { return f(data[D](d)), nil }
}

// Delay waits for the duration d returns (a durable timer).
func (q *Seq[D]) Delay(name string, d func(d *D) time.Duration) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.Delay, Duration: duration(d)})
}

// WaitFor waits for an event called event with the key key returns,
// published at or after the wait's effective time (EffectiveAt; default:
// the instance's creation time, so an event published before the wait
// is reached still counts). OnEvent maps the event into the data.
func (q *Seq[D]) WaitFor(name, event string, key func(d *D) string) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.WaitFor,
		Event: func(_ *Context, d any) (string, string, time.Time, error) {
			return event, key(data[D](d)), time.Time{}, nil
		}})
}

// EffectiveAt sets the last WaitFor's effective time.
func (q *Seq[D]) EffectiveAt(at func(d *D) time.Time) *Seq[D] {
	if s := q.lastStep("EffectiveAt", flow.WaitFor); s != nil {
		ev := s.Event
		s.Event = func(c *Context, d any) (string, string, time.Time, error) {
			n, k, _, err := ev(c, d)
			return n, k, at(data[D](d)), err
		}
	}
	return q
}

// OnEvent sets the last WaitFor's output mapping.
func (q *Seq[D]) OnEvent(f func(d *D, ev Event) error) *Seq[D] {
	if s := q.lastStep("OnEvent", flow.WaitFor); s != nil {
		s.OnEvent = func(_ *Context, d any, ev Event) error { return f(data[D](d), ev) }
	}
	return q
}

// Schedule runs body once, after the duration after returns, in the
// background: the steps after Schedule go on at once, and the instance
// completes only when body has run.
func (q *Seq[D]) Schedule(name string, after func(d *D) time.Duration, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.Schedule, Duration: duration(after), Branches: []int{q.body(body)}})
}

// Recur runs body every interval in the background until until holds
// (checked before each run).
func (q *Seq[D]) Recur(name string, every func(d *D) time.Duration, until func(d *D) bool, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.Recur, Duration: duration(every), Cond: cond(until), Branches: []int{q.body(body)}})
}

// SubWorkflow starts an instance of definition def (version 0: the
// latest) with the data input returns (encoded as JSON), waits for it to
// finish, and maps its final data back with output (may be nil). A child
// that does not complete fails the step.
func (q *Seq[D]) SubWorkflow(name, def string, version uint32, input func(d *D) any, output func(d *D, child json.RawMessage) error) *Seq[D] {
	s := &flow.Step{Name: name, Kind: flow.SubWorkflow,
		Sub: func(_ *Context, d any) (string, uint32, []byte, error) {
			var v any = map[string]any{}
			if input != nil {
				v = input(data[D](d))
			}
			b, err := json.Marshal(v)
			return def, version, b, err
		}}
	if output != nil {
		s.OnSub = func(_ *Context, d any, child []byte) error { return output(data[D](d), child) }
	}
	return q.append(s)
}

// Saga runs body as a saga: when a step inside it fails with the
// Compensate behaviour, the compensations of the steps completed inside
// it run, newest first, and the instance goes on after the saga (or, with
// Propagate, the saga itself fails).
func (q *Seq[D]) Saga(name string, body func(*Seq[D])) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.Saga, Branches: []int{q.body(body)}})
}

// Propagate makes the last Saga fail once compensated, so that an
// enclosing saga (or the instance) compensates too.
func (q *Seq[D]) Propagate() *Seq[D] {
	if s := q.lastStep("Propagate", flow.Saga); s != nil {
		s.Propagate = true
	}
	return q
}

// End completes the instance when reached (other branches are dropped).
func (q *Seq[D]) End(name string) *Seq[D] {
	return q.append(&flow.Step{Name: name, Kind: flow.End})
}
