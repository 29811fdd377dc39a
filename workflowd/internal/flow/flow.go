// Package flow is the compiled form of a workflow definition that the
// engine runs: a flat table of steps linked by index, with the functions
// that evaluate conditions, map data and run step bodies over untyped
// instance data. Package workflow (the Go builder) and package document
// (YAML/JSON definitions) both compile to it; the engine knows nothing
// else about definitions.
//
// Data is whatever the definition's Codec decodes an instance's JSON into
// (a *D for a Go definition, a map[string]any for a document); every
// function below receives that value and type-asserts it.
package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// Kind is a step's kind.
type Kind uint8

// Step kinds.
const (
	// Task runs a body (Exec), with an optional compensation.
	Task Kind = iota
	// If runs Branches[0] when Cond holds, else Branches[1] (if any).
	If
	// While runs Branches[0] again while Cond holds.
	While
	// ForEach runs Branches[0] once per item of Items, one after another
	// or all at once (Parallel).
	ForEach
	// Parallel runs every branch at once and waits for all.
	Parallel
	// Decide runs the branch whose key Select returns (none: skip).
	Decide
	// Delay sleeps for Duration.
	Delay
	// WaitFor waits for an event (Event) and maps it (OnEvent).
	WaitFor
	// Schedule runs Branches[0] once, Duration from now, in the
	// background: the steps after it go on at once.
	Schedule
	// Recur runs Branches[0] every Duration in the background until Cond
	// holds (checked before each run).
	Recur
	// SubWorkflow starts an instance of another definition (Sub) and
	// waits for it to finish (OnSub maps its data back).
	SubWorkflow
	// Saga runs Branches[0]; a step failing inside it with the Compensate
	// policy compensates the saga's completed steps, newest first.
	Saga
	// End completes the instance at once.
	End
)

var kindNames = [...]string{"task", "if", "while", "foreach", "parallel", "decide", "delay", "waitfor", "schedule", "recur", "subworkflow", "saga", "end"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// None marks a missing step link.
const None = -1

// Behavior is what happens when a step fails.
type Behavior uint8

// Error behaviours.
const (
	// Retry runs the step again after a backoff, up to MaxAttempts, then
	// does Then.
	Retry Behavior = iota
	// Suspend suspends the instance; Resume runs the step again.
	Suspend
	// Terminate fails the instance.
	Terminate
	// Compensate compensates the nearest enclosing saga (or, outside any
	// saga, the whole instance, which then ends compensated).
	Compensate
)

var behaviorNames = [...]string{"retry", "suspend", "terminate", "compensate"}

func (b Behavior) String() string {
	if int(b) < len(behaviorNames) {
		return behaviorNames[b]
	}
	return fmt.Sprintf("behavior(%d)", b)
}

// ParseBehavior parses a Behavior's name.
func ParseBehavior(s string) (Behavior, error) {
	for i, n := range behaviorNames {
		if n == s {
			return Behavior(i), nil
		}
	}
	return 0, fmt.Errorf("unknown error behaviour %q (want retry, suspend, terminate or compensate)", s)
}

// ErrorPolicy says what a failing step does.
type ErrorPolicy struct {
	Behavior Behavior
	// Interval is the first retry's wait; each further one is multiplied
	// by Backoff (>= 1) and capped at MaxInterval (0: no cap).
	Interval    time.Duration
	Backoff     float64
	MaxInterval time.Duration
	// MaxAttempts caps the attempts (the first included); 0 means no cap.
	MaxAttempts int
	// Then is the behaviour once the attempts run out (not Retry).
	Then Behavior
}

// DefaultErrorPolicy is a definition's policy unless it sets one: five
// attempts, 1s apart doubling to at most 1m, then fail the instance.
var DefaultErrorPolicy = ErrorPolicy{Behavior: Retry, Interval: time.Second, Backoff: 2, MaxInterval: time.Minute, MaxAttempts: 5, Then: Terminate}

// RetryDelay returns the wait before the attempt after failed attempt n
// (1-based).
func (p ErrorPolicy) RetryDelay(n int) time.Duration {
	d := p.Interval
	b := p.Backoff
	if b < 1 {
		b = 1
	}
	for i := 1; i < n; i++ {
		d = time.Duration(float64(d) * b)
		if p.MaxInterval > 0 && d >= p.MaxInterval {
			return p.MaxInterval
		}
	}
	if p.MaxInterval > 0 && d > p.MaxInterval {
		return p.MaxInterval
	}
	return d
}

// Validate checks the policy.
func (p ErrorPolicy) Validate() error {
	switch {
	case p.Behavior > Compensate:
		return fmt.Errorf("unknown behaviour %d", p.Behavior)
	case p.Behavior == Retry && p.Interval < 0:
		return errors.New("negative retry interval")
	case p.Behavior == Retry && p.MaxAttempts < 0:
		return errors.New("negative max attempts")
	case p.Then == Retry && p.Behavior == Retry && p.MaxAttempts > 0:
		return errors.New("retry's then must not be retry")
	}
	return nil
}

// Event is an event delivered to a WaitFor step.
type Event struct {
	ID        string
	Name, Key string
	Data      []byte
	Time      time.Time
}

// KV is the part of the KV client built-in steps use.
type KV interface {
	Get(ctx context.Context, key []byte) (value []byte, found bool, err error)
	Put(ctx context.Context, key, value []byte) error
	Delete(ctx context.Context, key []byte) (bool, error)
	// CompareAndSwap writes value when the current value is expected
	// (expectAbsent: when the key is absent); it reports whether it did.
	CompareAndSwap(ctx context.Context, key []byte, expectAbsent bool, expected, value []byte) (bool, error)
}

// Services are what a step body may use besides its input.
type Services interface {
	KV() KV
	HTTP() *http.Client
	// PublishEvent publishes an event (as the host API's PublishEvent).
	PublishEvent(ctx context.Context, name, key string, data []byte) error
}

// Context describes the execution of one step to its body and to the
// data mapping functions.
type Context struct {
	InstanceID string
	Definition string
	Version    uint32
	// Step is the step's name.
	Step string
	// Pointer is the execution pointer's id; it is unique within the
	// instance and the same across every attempt of this execution.
	Pointer uint32
	// Attempt is 1 on the first attempt.
	Attempt int
	// IdempotencyKey is "<instance>/<pointer>": the same on every attempt
	// and after a takeover by another workflowd, different for every
	// execution (a loop's next iteration gets a new one). A body with side
	// effects passes it on to make them effectively once.
	IdempotencyKey string
	// Item is the current ForEach item (JSON), nil outside one; Index is
	// its index, or a While loop's iteration.
	Item  json.RawMessage
	Index int
	// Event is the event a WaitFor step received (OnEvent only).
	Event *Event
	// Epoch is the fencing epoch of the workflowd running the step.
	Epoch uint64
	// Now is the step's start time.
	Now time.Time
	// Services is nil in tests that need none.
	Services Services
}

// Codec turns an instance's data between JSON and the definition's Go
// value.
type Codec interface {
	// Decode decodes a JSON object; empty input is the zero value.
	Decode([]byte) (any, error)
	Encode(any) ([]byte, error)
}

// Step is one compiled step.
type Step struct {
	ID   int
	Name string
	Kind Kind
	// Next is the step after this one in its chain, or None.
	Next int
	// Branches are the first steps of a container's bodies (None: empty).
	Branches []int
	// BranchKeys name a Decide's branches, in Branches' order.
	BranchKeys []string

	// Task: Prepare computes the input from the live data (nil: the body
	// gets the live data itself and runs exclusively: InPlace), Exec runs
	// the body, Apply maps its output into the live data (may be nil).
	Prepare func(c *Context, data any) (any, error)
	Exec    func(ctx context.Context, c *Context, in any) (any, error)
	Apply   func(c *Context, data any, out any) error
	InPlace bool
	// Compensation is the step compensating this one, or None.
	Compensation int

	Cond     func(c *Context, data any) (bool, error)
	Items    func(c *Context, data any) ([]json.RawMessage, error)
	Parallel bool
	Select   func(c *Context, data any) (string, error)
	Duration func(c *Context, data any) (time.Duration, error)
	// Event returns a WaitFor's event name, key and effective time (zero:
	// the instance's creation time).
	Event   func(c *Context, data any) (name, key string, asOf time.Time, err error)
	OnEvent func(c *Context, data any, ev Event) error
	// Sub returns a SubWorkflow's definition, version (0: latest) and
	// initial data; OnSub maps the child's final data back.
	Sub   func(c *Context, data any) (def string, version uint32, input []byte, err error)
	OnSub func(c *Context, data any, child []byte) error

	// Error overrides the definition's error policy (nil: use it).
	Error *ErrorPolicy
	// Propagate, on a Saga, fails the saga itself once its compensation
	// has run (so an enclosing saga compensates too).
	Propagate bool
}

// Def is a compiled definition.
type Def struct {
	ID          string
	Version     uint32
	Description string
	// Steps holds every step; Steps[Root] is the implicit root Saga whose
	// body is the definition's first step.
	Steps []*Step
	Root  int
	Error ErrorPolicy
	Codec Codec
	// Source is "go" or "document".
	Source string
	// KeyPrefixes are the key prefixes of the client certificate that
	// defined a document (none: no limit): its built-in kv steps touch
	// only keys under one of them, its publish steps only such event
	// names and its workflow steps only such definitions.
	KeyPrefixes [][]byte
}

// Allows reports whether name (a key, an event name or a definition id)
// lies under one of the definition's key prefixes.
func (d *Def) Allows(name []byte) bool {
	return tlsutil.ClientRole(d.KeyPrefixes...).AllowsKey(name)
}

// Policy returns the error policy of step s.
func (d *Def) Policy(s *Step) ErrorPolicy {
	if s.Error != nil {
		return *s.Error
	}
	return d.Error
}

// Validate checks the links and functions of every step.
func (d *Def) Validate() error {
	if d.ID == "" {
		return errors.New("definition has no id")
	}
	if d.Version == 0 {
		return fmt.Errorf("definition %q: version must be at least 1", d.ID)
	}
	if d.Codec == nil {
		return fmt.Errorf("definition %q: no data codec", d.ID)
	}
	if err := d.Error.Validate(); err != nil {
		return fmt.Errorf("definition %q: error policy: %w", d.ID, err)
	}
	link := func(s *Step, i int, what string) error {
		if i != None && (i < 0 || i >= len(d.Steps)) {
			return fmt.Errorf("step %q: %s links to step %d of %d", s.Name, what, i, len(d.Steps))
		}
		return nil
	}
	for i, s := range d.Steps {
		if s.ID != i {
			return fmt.Errorf("step %q has id %d at index %d", s.Name, s.ID, i)
		}
		if err := link(s, s.Next, "next"); err != nil {
			return err
		}
		if err := link(s, s.Compensation, "compensation"); err != nil {
			return err
		}
		for _, b := range s.Branches {
			if err := link(s, b, "branch"); err != nil {
				return err
			}
		}
		if s.Error != nil {
			if err := s.Error.Validate(); err != nil {
				return fmt.Errorf("step %q: error policy: %w", s.Name, err)
			}
		}
		var missing string
		switch s.Kind {
		case Task:
			if s.Exec == nil {
				missing = "body"
			}
		case If, While:
			if s.Cond == nil {
				missing = "condition"
			}
		case Recur:
			if s.Cond == nil || s.Duration == nil {
				missing = "condition or interval"
			}
		case ForEach:
			if s.Items == nil {
				missing = "items"
			}
		case Decide:
			if s.Select == nil || len(s.BranchKeys) != len(s.Branches) {
				missing = "selector or branch keys"
			}
		case Delay, Schedule:
			if s.Duration == nil {
				missing = "duration"
			}
		case WaitFor:
			if s.Event == nil {
				missing = "event"
			}
		case SubWorkflow:
			if s.Sub == nil {
				missing = "sub-workflow"
			}
		}
		if missing != "" {
			return fmt.Errorf("step %q (%s) has no %s", s.Name, s.Kind, missing)
		}
	}
	if d.Root < 0 || d.Root >= len(d.Steps) || d.Steps[d.Root].Kind != Saga {
		return fmt.Errorf("definition %q: root is not a saga", d.ID)
	}
	return nil
}

// Container reports whether steps of kind k have bodies.
func (k Kind) Container() bool {
	switch k {
	case If, While, ForEach, Parallel, Decide, Schedule, Recur, Saga:
		return true
	}
	return false
}

// JSONCodec is the Codec of a Go type D: data decodes into a *D.
type JSONCodec[D any] struct{}

// Decode implements Codec.
func (JSONCodec[D]) Decode(b []byte) (any, error) {
	d := new(D)
	if len(b) == 0 {
		return d, nil
	}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, err
	}
	return d, nil
}

// Encode implements Codec.
func (JSONCodec[D]) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// MapCodec is the Codec of document definitions: data decodes into a
// map[string]any (a JSON object).
type MapCodec struct{}

// Decode implements Codec.
func (MapCodec) Decode(b []byte) (any, error) {
	m := map[string]any{}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// Encode implements Codec.
func (MapCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }
