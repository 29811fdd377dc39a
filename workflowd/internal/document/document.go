// Package document compiles workflow definitions written as YAML or JSON
// documents (`pleiades workflows define FILE`) into the engine's flow
// form, over built-in step types and expr-lang expressions.
//
// A document:
//
//	id: provision            # required
//	version: 1               # required, >= 1
//	description: ...
//	on_error: {behavior: retry, interval: 1s, backoff: 2, max_interval: 1m, max_attempts: 5, then: terminate}
//	steps:                   # a sequence; each step has a name and one kind
//	  - name: read config
//	    kv.get: {key: '"cfg/" + data.name', output: cfg}
//	  - name: charge
//	    http: {method: POST, url: '"http://127.0.0.1:9000/charge"', body: 'data.order', output: receipt}
//	    on_error: {behavior: retry, interval: 500ms, max_attempts: 3, then: compensate}
//	    compensate: {name: refund, http: {method: POST, url: '"http://127.0.0.1:9000/refund"'}}
//
// Step kinds (EXPR is an expr-lang expression over the environment below,
// PATH a dotted path into the instance's data):
//
//	set: {PATH: EXPR, ...}                        assign values
//	kv.get: {key: EXPR, output: PATH}             value as a string, null when absent
//	kv.put: {key: EXPR, value: EXPR}              strings as they are, other values as JSON
//	kv.cas: {key: EXPR, expect: EXPR, value: EXPR, output: PATH}   expect null: the key must be absent; output: whether it swapped
//	kv.delete: {key: EXPR}
//	http: {method: M, url: EXPR, body: EXPR, headers: {H: EXPR}, output: PATH, ok: [200, 201]}
//	                                              output is {status, body} (body parsed as JSON when it is);
//	                                              a status outside ok (default 2xx) fails the step;
//	                                              the Idempotency-Key header carries the step's key
//	delay: EXPR                                   a duration ("30s") or seconds
//	wait: {event: EXPR, key: EXPR, effective: EXPR, output: PATH}   effective: unix seconds or RFC 3339
//	publish: {event: EXPR, key: EXPR, data: EXPR}
//	workflow: {id: ID, version: N, input: EXPR, output: PATH}        a sub-workflow
//	fail: EXPR                                    fail with that message
//	noop: true
//	if: EXPR, then: [steps], else: [steps]
//	while: EXPR, do: [steps]
//	foreach: EXPR, parallel: BOOL, do: [steps]    item and index in the environment
//	parallel: [[steps], [steps], ...]
//	decide: EXPR, branches: {VALUE: [steps], ...}
//	schedule: EXPR, do: [steps]                   background, after the duration
//	recur: EXPR, until: EXPR, do: [steps]         background, every interval until until
//	saga: [steps], propagate: BOOL
//	end: true
//
// Every step may have on_error; task steps (set, kv.*, http, publish,
// fail, workflow) may have compensate (one step). The environment: data
// (the instance's data, a JSON object), item and index (ForEach; index is
// also a While's iteration), event ({name, key, data} in a wait's
// output), instance (the id), key (the step's idempotency key), attempt,
// step (the step's name) and epoch (the fencing epoch of the workflowd
// running it).
//
// Compile refuses a malformed document with the line of the offending
// node and the reason; expressions are compiled then, so a syntax error
// is found before anything is stored.
package document

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// MaxDocument is the largest document accepted.
const MaxDocument = 1 << 20

// Error is a compile error at a line of the document.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func errAt(n *yaml.Node, format string, args ...any) error {
	return &Error{Line: n.Line, Msg: fmt.Sprintf(format, args...)}
}

// Compile parses and compiles a document.
func Compile(doc []byte) (*flow.Def, error) {
	if len(doc) > MaxDocument {
		return nil, &Error{Msg: fmt.Sprintf("document of %d bytes exceeds %d", len(doc), MaxDocument)}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Msg: "empty document"}
		}
		return nil, &Error{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errAt(&root, "a definition is a mapping with id, version and steps")
	}
	c := &compiler{def: &flow.Def{Error: flow.DefaultErrorPolicy, Codec: flow.MapCodec{}, Source: "document"}, names: map[string]int{}}
	m := root.Content[0]
	var stepsNode *yaml.Node
	err := fields(m, func(k string, v *yaml.Node) error {
		switch k {
		case "id":
			s, err := scalar(v)
			if err != nil {
				return err
			}
			if s == "" || strings.ContainsAny(s, "\x00") {
				return errAt(v, "id must be a non-empty string")
			}
			c.def.ID = s
		case "version":
			n, err := strconv.ParseUint(v.Value, 10, 32)
			if err != nil || v.Kind != yaml.ScalarNode || n == 0 {
				return errAt(v, "version must be an integer >= 1")
			}
			c.def.Version = uint32(n)
		case "description":
			s, err := scalar(v)
			if err != nil {
				return err
			}
			c.def.Description = s
		case "on_error":
			p, err := policy(v)
			if err != nil {
				return err
			}
			c.def.Error = *p
		case "steps":
			stepsNode = v
		default:
			return errAt(v, "unknown field %q (want id, version, description, on_error, steps)", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case c.def.ID == "":
		return nil, errAt(m, "missing id")
	case c.def.Version == 0:
		return nil, errAt(m, "missing version")
	case stepsNode == nil:
		return nil, errAt(m, "missing steps")
	}
	first, err := c.seq(stepsNode)
	if err != nil {
		return nil, err
	}
	if first == flow.None {
		return nil, errAt(stepsNode, "no steps")
	}
	c.def.Root = c.add(&flow.Step{Name: "(root)", Kind: flow.Saga, Branches: []int{first}}).ID
	if err := c.def.Validate(); err != nil {
		return nil, &Error{Msg: err.Error()}
	}
	return c.def, nil
}

type compiler struct {
	def   *flow.Def
	names map[string]int
}

func (c *compiler) add(s *flow.Step) *flow.Step {
	s.ID = len(c.def.Steps)
	s.Next, s.Compensation = flow.None, flow.None
	c.def.Steps = append(c.def.Steps, s)
	return s
}

// fields walks a mapping's keys in order, refusing duplicates.
func fields(m *yaml.Node, f func(k string, v *yaml.Node) error) error {
	if m.Kind != yaml.MappingNode {
		return errAt(m, "expected a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode {
			return errAt(k, "keys must be strings")
		}
		if seen[k.Value] {
			return errAt(k, "duplicate field %q", k.Value)
		}
		seen[k.Value] = true
		if err := f(k.Value, m.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func scalar(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", errAt(v, "expected a single value")
	}
	return v.Value, nil
}

func boolean(v *yaml.Node) (bool, error) {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
		return false, errAt(v, "expected true or false")
	}
	return b, nil
}

func duration(v *yaml.Node) (time.Duration, error) {
	s, err := scalar(v)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errAt(v, "bad duration %q", s)
	}
	return d, nil
}

func behavior(v *yaml.Node) (flow.Behavior, error) {
	s, err := scalar(v)
	if err != nil {
		return 0, err
	}
	b, err := flow.ParseBehavior(s)
	if err != nil {
		return 0, errAt(v, "%v", err)
	}
	return b, nil
}

func policy(v *yaml.Node) (*flow.ErrorPolicy, error) {
	p := flow.ErrorPolicy{Interval: time.Second, Backoff: 1, Then: flow.Terminate}
	if v.Kind == yaml.ScalarNode {
		b, err := behavior(v)
		if err != nil {
			return nil, err
		}
		p.Behavior = b
		return &p, nil
	}
	err := fields(v, func(k string, n *yaml.Node) error {
		var err error
		switch k {
		case "behavior":
			p.Behavior, err = behavior(n)
		case "then":
			p.Then, err = behavior(n)
		case "interval":
			p.Interval, err = duration(n)
		case "max_interval":
			p.MaxInterval, err = duration(n)
		case "backoff":
			p.Backoff, err = strconv.ParseFloat(n.Value, 64)
			if err != nil || p.Backoff < 1 {
				err = errAt(n, "backoff must be a number >= 1")
			}
		case "max_attempts":
			p.MaxAttempts, err = strconv.Atoi(n.Value)
			if err != nil || p.MaxAttempts < 0 {
				err = errAt(n, "max_attempts must be an integer >= 0")
			}
		default:
			err = errAt(n, "unknown on_error field %q", k)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, errAt(v, "on_error: %v", err)
	}
	return &p, nil
}

// seq compiles a list of steps and returns its first step's id.
func (c *compiler) seq(n *yaml.Node) (int, error) {
	if n.Kind != yaml.SequenceNode {
		return 0, errAt(n, "expected a list of steps")
	}
	first, last := flow.None, flow.None
	for _, sn := range n.Content {
		s, err := c.step(sn)
		if err != nil {
			return 0, err
		}
		if first == flow.None {
			first = s.ID
		} else {
			c.def.Steps[last].Next = s.ID
		}
		last = s.ID
	}
	return first, nil
}

var kinds = []string{"set", "kv.get", "kv.put", "kv.cas", "kv.delete", "http", "delay", "wait", "publish", "workflow", "fail", "noop",
	"if", "while", "foreach", "parallel", "decide", "schedule", "recur", "saga", "end"}

// extra fields a kind allows besides name, on_error and compensate.
var extras = map[string][]string{"if": {"then", "else"}, "while": {"do"}, "foreach": {"do", "parallel"}, "decide": {"branches"},
	"schedule": {"do"}, "recur": {"do", "until"}, "saga": {"propagate"}}

func (c *compiler) step(n *yaml.Node) (*flow.Step, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "a step is a mapping with a name and one kind (%s)", strings.Join(kinds, ", "))
	}
	f := map[string]*yaml.Node{}
	if err := fields(n, func(k string, v *yaml.Node) error { f[k] = v; return nil }); err != nil {
		return nil, err
	}
	var kind string
	for _, k := range kinds {
		if k == "parallel" && f["foreach"] != nil {
			continue // a ForEach's option
		}
		if f[k] != nil {
			if kind != "" {
				return nil, errAt(f[k], "step has two kinds, %s and %s", kind, k)
			}
			kind = k
		}
	}
	if kind == "" {
		return nil, errAt(n, "step has no kind (one of %s)", strings.Join(kinds, ", "))
	}
	name := kind
	if v := f["name"]; v != nil {
		s, err := scalar(v)
		if err != nil {
			return nil, err
		}
		name = s
	}
	allowed := map[string]bool{kind: true, "name": true, "on_error": true, "compensate": true}
	for _, e := range extras[kind] {
		allowed[e] = true
	}
	for k, v := range f {
		if !allowed[k] {
			return nil, errAt(v, "step %q (%s): unknown field %q", name, kind, k)
		}
	}
	s, err := c.build(kind, name, f)
	if err != nil {
		return nil, err
	}
	if v := f["on_error"]; v != nil {
		if s.Error, err = policy(v); err != nil {
			return nil, err
		}
	}
	if v := f["compensate"]; v != nil {
		if s.Kind != flow.Task && s.Kind != flow.SubWorkflow {
			return nil, errAt(v, "step %q: only task steps take compensate", name)
		}
		cs, err := c.step(v)
		if err != nil {
			return nil, err
		}
		if cs.Kind != flow.Task {
			return nil, errAt(v, "step %q: a compensation is one task step", name)
		}
		s.Compensation = cs.ID
	}
	return s, nil
}

// env is the environment expressions see.
func env(c *flow.Context, data any) map[string]any {
	m := map[string]any{"data": data, "index": 0, "item": nil, "event": nil, "instance": "", "key": "", "attempt": 0, "epoch": 0, "step": ""}
	if c == nil {
		return m
	}
	m["index"], m["instance"], m["key"], m["attempt"] = c.Index, c.InstanceID, c.IdempotencyKey, c.Attempt
	m["epoch"], m["step"] = int(c.Epoch), c.Step
	if c.Item != nil {
		var it any
		if json.Unmarshal(c.Item, &it) == nil {
			m["item"] = it
		}
	}
	if c.Event != nil {
		m["event"] = map[string]any{"name": c.Event.Name, "key": c.Event.Key, "data": jsonOrString(c.Event.Data)}
	}
	return m
}

type program struct{ p *vm.Program }

func compileExpr(n *yaml.Node) (program, error) {
	s, err := scalar(n)
	if err != nil {
		return program{}, err
	}
	if strings.TrimSpace(s) == "" {
		return program{}, errAt(n, "empty expression")
	}
	p, err := expr.Compile(s, expr.AllowUndefinedVariables())
	if err != nil {
		return program{}, errAt(n, "expression %q: %s", s, firstLine(err.Error()))
	}
	return program{p}, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (p program) eval(c *flow.Context, data any) (any, error) {
	return expr.Run(p.p, env(c, data))
}

func (p program) str(c *flow.Context, data any) (string, error) {
	v, err := p.eval(c, data)
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case nil:
		return "", nil
	}
	return fmt.Sprint(v), nil
}

func (p program) boolean(c *flow.Context, data any) (bool, error) {
	v, err := p.eval(c, data)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition gave %T, not a boolean", v)
	}
	return b, nil
}

func (p program) duration(c *flow.Context, data any) (time.Duration, error) {
	v, err := p.eval(c, data)
	if err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case string:
		return time.ParseDuration(x)
	case int:
		return time.Duration(x) * time.Second, nil
	case float64:
		return time.Duration(x * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("duration gave %T", v)
}

// bytesOf encodes a value for the KV or an HTTP body: strings as they
// are, anything else as JSON.
func bytesOf(v any) ([]byte, error) {
	if s, ok := v.(string); ok {
		return []byte(s), nil
	}
	return json.Marshal(v)
}

func jsonOrString(b []byte) any {
	var v any
	if json.Unmarshal(b, &v) == nil {
		return v
	}
	return string(b)
}

// path is a dotted path into the data.
type path []string

func compilePath(n *yaml.Node) (path, error) {
	s, err := scalar(n)
	if err != nil {
		return nil, err
	}
	p := strings.Split(s, ".")
	for _, e := range p {
		if e == "" {
			return nil, errAt(n, "bad data path %q", s)
		}
	}
	return p, nil
}

func (p path) set(data any, v any) error {
	m, ok := data.(map[string]any)
	if !ok {
		return errors.New("data is not an object")
	}
	for _, k := range p[:len(p)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	// Numbers go through JSON as float64; keep the data JSON-shaped.
	if b, err := json.Marshal(v); err == nil {
		var norm any
		if json.Unmarshal(b, &norm) == nil {
			v = norm
		}
	}
	m[p[len(p)-1]] = v
	return nil
}

// task makes a flow task whose input is prepared by in (on the live
// data), run by run, and applied by out (may be nil).
func task(name string, in func(c *flow.Context, data any) (any, error), run func(ctx context.Context, c *flow.Context, in any) (any, error), out func(c *flow.Context, data, o any) error) *flow.Step {
	s := &flow.Step{Name: name, Kind: flow.Task, Prepare: in, Exec: run}
	if out != nil {
		s.Apply = out
	}
	return s
}

func kvOf(c *flow.Context) (flow.KV, error) {
	if c.Services == nil || c.Services.KV() == nil {
		return nil, errors.New("no KV available to this workflowd")
	}
	return c.Services.KV(), nil
}

// KV adapts a kvclient.Client (user keys) to the built-in steps.
type KV struct{ C *kvclient.Client }

// Get implements flow.KV.
func (k KV) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, ok, err := k.C.Get(ctx, key)
	return v.Value, ok, err
}

// Put implements flow.KV.
func (k KV) Put(ctx context.Context, key, value []byte) error {
	_, err := k.C.Put(ctx, key, value)
	return err
}

// Delete implements flow.KV.
func (k KV) Delete(ctx context.Context, key []byte) (bool, error) { return k.C.Delete(ctx, key) }

// CompareAndSwap implements flow.KV.
func (k KV) CompareAndSwap(ctx context.Context, key []byte, expectAbsent bool, expected, value []byte) (bool, error) {
	r, err := k.C.CompareAndSwap(ctx, kvclient.CAS{Key: key, ExpectAbsent: expectAbsent, Expected: expected, NewValue: value})
	return r.Succeeded, err
}
