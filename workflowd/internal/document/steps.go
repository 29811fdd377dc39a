package document

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// spec reads a kind's mapping: required and optional fields.
type spec struct {
	n      *yaml.Node
	name   string
	fields map[string]*yaml.Node
}

func readSpec(name string, n *yaml.Node, required []string, optional ...string) (*spec, error) {
	s := &spec{n: n, name: name, fields: map[string]*yaml.Node{}}
	ok := map[string]bool{}
	for _, f := range append(append([]string(nil), required...), optional...) {
		ok[f] = true
	}
	if err := fields(n, func(k string, v *yaml.Node) error {
		if !ok[k] {
			return errAt(v, "step %q: unknown field %q", name, k)
		}
		s.fields[k] = v
		return nil
	}); err != nil {
		return nil, err
	}
	for _, f := range required {
		if s.fields[f] == nil {
			return nil, errAt(n, "step %q: missing %q", name, f)
		}
	}
	return s, nil
}

func (s *spec) expr(k string) (program, bool, error) {
	v := s.fields[k]
	if v == nil {
		return program{}, false, nil
	}
	p, err := compileExpr(v)
	return p, true, err
}

func (s *spec) path(k string) (path, error) {
	v := s.fields[k]
	if v == nil {
		return nil, nil
	}
	return compilePath(v)
}

func (c *compiler) body(n *yaml.Node) (int, error) {
	if n == nil {
		return flow.None, nil
	}
	return c.seq(n)
}

// build compiles one step of the given kind.
func (c *compiler) build(kind, name string, f map[string]*yaml.Node) (*flow.Step, error) {
	v := f[kind]
	switch kind {
	case "set":
		if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
			return nil, errAt(v, "step %q: set takes PATH: EXPR pairs", name)
		}
		type assign struct {
			p path
			e program
		}
		var as []assign
		if err := fields(v, func(k string, e *yaml.Node) error {
			p, err := compilePath(&yaml.Node{Kind: yaml.ScalarNode, Value: k, Line: e.Line})
			if err != nil {
				return err
			}
			pr, err := compileExpr(e)
			if err != nil {
				return err
			}
			as = append(as, assign{p, pr})
			return nil
		}); err != nil {
			return nil, err
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) {
			vals := make([]any, len(as))
			for i, a := range as {
				x, err := a.e.eval(cx, data)
				if err != nil {
					return nil, err
				}
				vals[i] = x
			}
			return vals, nil
		}, func(_ context.Context, _ *flow.Context, in any) (any, error) { return in, nil },
			func(_ *flow.Context, data, o any) error {
				for i, x := range o.([]any) {
					if err := as[i].p.set(data, x); err != nil {
						return err
					}
				}
				return nil
			})), nil
	case "kv.get":
		s, err := readSpec(name, v, []string{"key", "output"})
		if err != nil {
			return nil, err
		}
		key, _, err := s.expr("key")
		if err != nil {
			return nil, err
		}
		out, err := s.path("output")
		if err != nil {
			return nil, err
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) { return key.str(cx, data) },
			func(ctx context.Context, cx *flow.Context, in any) (any, error) {
				kv, err := kvOf(cx)
				if err != nil {
					return nil, err
				}
				b, ok, err := kv.Get(ctx, []byte(in.(string)))
				if err != nil || !ok {
					return nil, err
				}
				return string(b), nil
			}, func(_ *flow.Context, data, o any) error { return out.set(data, o) })), nil
	case "kv.put", "kv.cas":
		req := []string{"key", "value"}
		opt := []string{}
		if kind == "kv.cas" {
			req = append(req, "expect")
			opt = append(opt, "output")
		}
		s, err := readSpec(name, v, req, opt...)
		if err != nil {
			return nil, err
		}
		key, _, err := s.expr("key")
		if err != nil {
			return nil, err
		}
		val, _, err := s.expr("value")
		if err != nil {
			return nil, err
		}
		exp, hasExp, err := s.expr("expect")
		if err != nil {
			return nil, err
		}
		out, err := s.path("output")
		if err != nil {
			return nil, err
		}
		type kvIn struct {
			key, val, exp []byte
			absent        bool
		}
		var apply func(*flow.Context, any, any) error
		if out != nil {
			apply = func(_ *flow.Context, data, o any) error { return out.set(data, o) }
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) {
			k, err := key.str(cx, data)
			if err != nil {
				return nil, err
			}
			x, err := val.eval(cx, data)
			if err != nil {
				return nil, err
			}
			in := kvIn{key: []byte(k)}
			if in.val, err = bytesOf(x); err != nil {
				return nil, err
			}
			if hasExp {
				e, err := exp.eval(cx, data)
				if err != nil {
					return nil, err
				}
				if e == nil {
					in.absent = true
				} else if in.exp, err = bytesOf(e); err != nil {
					return nil, err
				}
			}
			return in, nil
		}, func(ctx context.Context, cx *flow.Context, a any) (any, error) {
			kv, err := kvOf(cx)
			if err != nil {
				return nil, err
			}
			in := a.(kvIn)
			if kind == "kv.put" {
				return nil, kv.Put(ctx, in.key, in.val)
			}
			return kv.CompareAndSwap(ctx, in.key, in.absent, in.exp, in.val)
		}, apply)), nil
	case "kv.delete":
		s, err := readSpec(name, v, []string{"key"})
		if err != nil {
			return nil, err
		}
		key, _, err := s.expr("key")
		if err != nil {
			return nil, err
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) { return key.str(cx, data) },
			func(ctx context.Context, cx *flow.Context, in any) (any, error) {
				kv, err := kvOf(cx)
				if err != nil {
					return nil, err
				}
				_, err = kv.Delete(ctx, []byte(in.(string)))
				return nil, err
			}, nil)), nil
	case "http":
		return c.httpStep(name, v)
	case "publish":
		s, err := readSpec(name, v, []string{"event"}, "key", "data")
		if err != nil {
			return nil, err
		}
		ev, _, err := s.expr("event")
		if err != nil {
			return nil, err
		}
		key, hasKey, err := s.expr("key")
		if err != nil {
			return nil, err
		}
		dat, hasData, err := s.expr("data")
		if err != nil {
			return nil, err
		}
		type pub struct {
			name, key string
			data      []byte
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) {
			var p pub
			var err error
			if p.name, err = ev.str(cx, data); err != nil {
				return nil, err
			}
			if hasKey {
				if p.key, err = key.str(cx, data); err != nil {
					return nil, err
				}
			}
			if hasData {
				x, err := dat.eval(cx, data)
				if err != nil {
					return nil, err
				}
				if p.data, err = bytesOf(x); err != nil {
					return nil, err
				}
			}
			return p, nil
		}, func(ctx context.Context, cx *flow.Context, a any) (any, error) {
			p := a.(pub)
			if cx.Services == nil {
				return nil, fmt.Errorf("no event publisher")
			}
			return nil, cx.Services.PublishEvent(ctx, p.name, p.key, p.data)
		}, nil)), nil
	case "fail":
		msg, err := compileExpr(v)
		if err != nil {
			return nil, err
		}
		return c.add(task(name, func(cx *flow.Context, data any) (any, error) { return msg.str(cx, data) },
			func(_ context.Context, _ *flow.Context, in any) (any, error) { return nil, fmt.Errorf("%s", in) }, nil)), nil
	case "noop":
		return c.add(task(name, func(*flow.Context, any) (any, error) { return nil, nil },
			func(context.Context, *flow.Context, any) (any, error) { return nil, nil }, nil)), nil
	case "delay":
		d, err := compileExpr(v)
		if err != nil {
			return nil, err
		}
		return c.add(&flow.Step{Name: name, Kind: flow.Delay, Duration: d.duration}), nil
	case "wait":
		s, err := readSpec(name, v, []string{"event"}, "key", "effective", "output")
		if err != nil {
			return nil, err
		}
		ev, _, err := s.expr("event")
		if err != nil {
			return nil, err
		}
		key, hasKey, err := s.expr("key")
		if err != nil {
			return nil, err
		}
		eff, hasEff, err := s.expr("effective")
		if err != nil {
			return nil, err
		}
		out, err := s.path("output")
		if err != nil {
			return nil, err
		}
		st := &flow.Step{Name: name, Kind: flow.WaitFor, Event: func(cx *flow.Context, data any) (string, string, time.Time, error) {
			n, err := ev.str(cx, data)
			if err != nil {
				return "", "", time.Time{}, err
			}
			var k string
			if hasKey {
				if k, err = key.str(cx, data); err != nil {
					return "", "", time.Time{}, err
				}
			}
			var at time.Time
			if hasEff {
				x, err := eff.eval(cx, data)
				if err != nil {
					return "", "", time.Time{}, err
				}
				switch t := x.(type) {
				case int:
					at = time.Unix(int64(t), 0)
				case float64:
					at = time.Unix(0, int64(t*1e9))
				case string:
					if at, err = time.Parse(time.RFC3339Nano, t); err != nil {
						return "", "", time.Time{}, err
					}
				default:
					return "", "", time.Time{}, fmt.Errorf("effective gave %T", x)
				}
			}
			return n, k, at, nil
		}}
		if out != nil {
			st.OnEvent = func(_ *flow.Context, data any, e flow.Event) error { return out.set(data, jsonOrString(e.Data)) }
		}
		return c.add(st), nil
	case "workflow":
		s, err := readSpec(name, v, []string{"id"}, "version", "input", "output")
		if err != nil {
			return nil, err
		}
		id, err := scalar(s.fields["id"])
		if err != nil {
			return nil, err
		}
		var ver uint64
		if n := s.fields["version"]; n != nil {
			if ver, err = strconv.ParseUint(n.Value, 10, 32); err != nil {
				return nil, errAt(n, "version must be an integer")
			}
		}
		in, hasIn, err := s.expr("input")
		if err != nil {
			return nil, err
		}
		out, err := s.path("output")
		if err != nil {
			return nil, err
		}
		st := &flow.Step{Name: name, Kind: flow.SubWorkflow, Sub: func(cx *flow.Context, data any) (string, uint32, []byte, error) {
			var x any = map[string]any{}
			if hasIn {
				var err error
				if x, err = in.eval(cx, data); err != nil {
					return "", 0, nil, err
				}
			}
			b, err := bytesOf(x)
			return id, uint32(ver), b, err
		}}
		if out != nil {
			st.OnSub = func(_ *flow.Context, data any, child []byte) error { return out.set(data, jsonOrString(child)) }
		}
		return c.add(st), nil
	case "if":
		cond, err := compileExpr(v)
		if err != nil {
			return nil, err
		}
		if f["then"] == nil {
			return nil, errAt(v, "step %q: if needs then", name)
		}
		st := c.add(&flow.Step{Name: name, Kind: flow.If, Cond: cond.boolean})
		t, err := c.body(f["then"])
		if err != nil {
			return nil, err
		}
		st.Branches = []int{t}
		if f["else"] != nil {
			e, err := c.body(f["else"])
			if err != nil {
				return nil, err
			}
			st.Branches = append(st.Branches, e)
		}
		return st, nil
	case "while", "foreach", "schedule", "recur":
		if f["do"] == nil {
			return nil, errAt(v, "step %q: %s needs do", name, kind)
		}
		e, err := compileExpr(v)
		if err != nil {
			return nil, err
		}
		st := c.add(&flow.Step{Name: name})
		switch kind {
		case "while":
			st.Kind, st.Cond = flow.While, e.boolean
		case "foreach":
			st.Kind = flow.ForEach
			if p := f["parallel"]; p != nil {
				if st.Parallel, err = boolean(p); err != nil {
					return nil, err
				}
			}
			st.Items = func(cx *flow.Context, data any) ([]json.RawMessage, error) {
				x, err := e.eval(cx, data)
				if err != nil {
					return nil, err
				}
				b, err := json.Marshal(x)
				if err != nil {
					return nil, err
				}
				var items []json.RawMessage
				if err := json.Unmarshal(b, &items); err != nil {
					return nil, fmt.Errorf("foreach gave %T, not a list", x)
				}
				return items, nil
			}
		case "schedule":
			st.Kind, st.Duration = flow.Schedule, e.duration
		case "recur":
			if f["until"] == nil {
				return nil, errAt(v, "step %q: recur needs until", name)
			}
			until, err := compileExpr(f["until"])
			if err != nil {
				return nil, err
			}
			st.Kind, st.Duration, st.Cond = flow.Recur, e.duration, until.boolean
		}
		b, err := c.body(f["do"])
		if err != nil {
			return nil, err
		}
		st.Branches = []int{b}
		return st, nil
	case "parallel":
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			return nil, errAt(v, "step %q: parallel takes a list of branches (lists of steps)", name)
		}
		st := c.add(&flow.Step{Name: name, Kind: flow.Parallel})
		for _, br := range v.Content {
			b, err := c.body(br)
			if err != nil {
				return nil, err
			}
			st.Branches = append(st.Branches, b)
		}
		return st, nil
	case "decide":
		sel, err := compileExpr(v)
		if err != nil {
			return nil, err
		}
		bn := f["branches"]
		if bn == nil {
			return nil, errAt(v, "step %q: decide needs branches", name)
		}
		st := c.add(&flow.Step{Name: name, Kind: flow.Decide, Select: sel.str})
		type br struct {
			k string
			n *yaml.Node
		}
		var brs []br
		if err := fields(bn, func(k string, n *yaml.Node) error { brs = append(brs, br{k, n}); return nil }); err != nil {
			return nil, err
		}
		for _, b := range brs {
			first, err := c.body(b.n)
			if err != nil {
				return nil, err
			}
			st.BranchKeys = append(st.BranchKeys, b.k)
			st.Branches = append(st.Branches, first)
		}
		return st, nil
	case "saga":
		st := c.add(&flow.Step{Name: name, Kind: flow.Saga})
		if p := f["propagate"]; p != nil {
			var err error
			if st.Propagate, err = boolean(p); err != nil {
				return nil, err
			}
		}
		b, err := c.body(v)
		if err != nil {
			return nil, err
		}
		st.Branches = []int{b}
		return st, nil
	case "end":
		return c.add(&flow.Step{Name: name, Kind: flow.End}), nil
	}
	return nil, errAt(v, "unknown kind %q", kind)
}

func (c *compiler) httpStep(name string, v *yaml.Node) (*flow.Step, error) {
	s, err := readSpec(name, v, []string{"url"}, "method", "body", "headers", "output", "ok")
	if err != nil {
		return nil, err
	}
	method := http.MethodGet
	if m := s.fields["method"]; m != nil {
		if method, err = scalar(m); err != nil {
			return nil, err
		}
	}
	url, _, err := s.expr("url")
	if err != nil {
		return nil, err
	}
	body, hasBody, err := s.expr("body")
	if err != nil {
		return nil, err
	}
	headers := map[string]program{}
	if h := s.fields["headers"]; h != nil {
		if err := fields(h, func(k string, n *yaml.Node) error {
			p, err := compileExpr(n)
			headers[k] = p
			return err
		}); err != nil {
			return nil, err
		}
	}
	var okCodes []int
	if n := s.fields["ok"]; n != nil {
		if err := n.Decode(&okCodes); err != nil || len(okCodes) == 0 {
			return nil, errAt(n, "step %q: ok is a list of HTTP status codes", name)
		}
	}
	out, err := s.path("output")
	if err != nil {
		return nil, err
	}
	type req struct {
		url     string
		body    []byte
		headers map[string]string
	}
	var apply func(*flow.Context, any, any) error
	if out != nil {
		apply = func(_ *flow.Context, data, o any) error { return out.set(data, o) }
	}
	return c.add(task(name, func(cx *flow.Context, data any) (any, error) {
		var r req
		var err error
		if r.url, err = url.str(cx, data); err != nil {
			return nil, err
		}
		if hasBody {
			x, err := body.eval(cx, data)
			if err != nil {
				return nil, err
			}
			if r.body, err = bytesOf(x); err != nil {
				return nil, err
			}
		}
		r.headers = map[string]string{}
		for k, p := range headers {
			if r.headers[k], err = p.str(cx, data); err != nil {
				return nil, err
			}
		}
		return r, nil
	}, func(ctx context.Context, cx *flow.Context, a any) (any, error) {
		r := a.(req)
		hr, err := http.NewRequestWithContext(ctx, method, r.url, bytes.NewReader(r.body))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Idempotency-Key", cx.IdempotencyKey)
		if r.body != nil {
			hr.Header.Set("Content-Type", "application/json")
		}
		for k, v := range r.headers {
			hr.Header.Set(k, v)
		}
		client := http.DefaultClient
		if cx.Services != nil && cx.Services.HTTP() != nil {
			client = cx.Services.HTTP()
		}
		resp, err := client.Do(hr)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return nil, err
		}
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		if okCodes != nil {
			ok = false
			for _, c := range okCodes {
				ok = ok || c == resp.StatusCode
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s %s: status %d: %.200s", method, r.url, resp.StatusCode, b)
		}
		return map[string]any{"status": resp.StatusCode, "body": jsonOrString(b)}, nil
	}, apply)), nil
}
