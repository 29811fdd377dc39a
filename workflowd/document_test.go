package workflowd_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd"
)

// TestDocumentControlFlow runs a document definition of each control-flow
// kind through the host API.
func TestDocumentControlFlow(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name, doc, data string
		want            workflowpb.Status
		check           func(t *testing.T, d map[string]any)
	}{
		{"sequence and set", `
steps:
  - set: {a: '1'}
  - set: {b: 'data.a + 1', c.d: '"deep"'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["b"] != 2.0 || d["c"].(map[string]any)["d"] != "deep" {
				t.Errorf("data %v", d)
			}
		}},
		{"if else", `
steps:
  - if: 'data.n > 5'
    then: [{set: {r: '"big"'}}]
    else: [{set: {r: '"small"'}}]
`, `{"n": 2}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["r"] != "small" {
				t.Errorf("r = %v", d["r"])
			}
		}},
		{"while", `
steps:
  - set: {n: '0', seen: '[]'}
  - while: 'data.n < 3'
    do:
      - set: {n: 'data.n + 1', seen: 'concat(data.seen, [index])'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["n"] != 3.0 || fmt.Sprint(d["seen"]) != "[0 1 2]" {
				t.Errorf("data %v", d)
			}
		}},
		{"foreach sequential", `
steps:
  - set: {out: '""'}
  - foreach: 'data.items'
    do:
      - set: {out: 'data.out + item'}
`, `{"items": ["a", "b", "c"]}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["out"] != "abc" {
				t.Errorf("out = %v", d["out"])
			}
		}},
		{"foreach parallel", `
steps:
  - foreach: 'data.items'
    parallel: true
    do:
      - set: {'r.x': 'item'}
      - kv.put: {key: '"fe/" + item', value: 'index'}
`, `{"items": ["p", "q"]}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			for _, k := range []string{"fe/p", "fe/q"} {
				if _, ok := f.fc.Value(k); !ok {
					t.Errorf("key %s not written", k)
				}
			}
		}},
		{"parallel", `
steps:
  - parallel:
      - [{set: {x: '1'}}]
      - [{set: {y: '2'}}, {set: {z: 'data.y + 1'}}]
  - set: {sum: 'data.x + data.y + data.z'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["sum"] != 6.0 {
				t.Errorf("sum = %v", d["sum"])
			}
		}},
		{"decide", `
steps:
  - decide: 'data.kind'
    branches:
      a: [{set: {r: '"A"'}}]
      b: [{set: {r: '"B"'}}]
`, `{"kind": "b"}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["r"] != "B" {
				t.Errorf("r = %v", d["r"])
			}
		}},
		{"delay", `
steps:
  - delay: '"50ms"'
  - set: {done: 'true'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["done"] != true {
				t.Errorf("data %v", d)
			}
		}},
		{"schedule", `
steps:
  - schedule: '"30ms"'
    do: [{set: {scheduled: 'true'}}]
  - set: {main: 'true'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["scheduled"] != true || d["main"] != true {
				t.Errorf("data %v", d)
			}
		}},
		{"recur", `
steps:
  - set: {n: '0'}
  - recur: '"20ms"'
    until: 'data.n >= 2'
    do: [{set: {n: 'data.n + 1'}}]
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["n"] != 2.0 {
				t.Errorf("n = %v", d["n"])
			}
		}},
		{"kv get put cas delete", `
steps:
  - kv.put: {key: '"doc/k"', value: '"v1"'}
  - kv.get: {key: '"doc/k"', output: got}
  - kv.cas: {key: '"doc/k"', expect: '"v1"', value: '{"n": 2}', output: swapped}
  - kv.cas: {key: '"doc/k"', expect: '"v1"', value: '"v3"', output: swapped2}
  - kv.cas: {key: '"doc/new"', expect: 'nil', value: '"x"', output: created}
  - kv.delete: {key: '"doc/new"'}
  - kv.get: {key: '"doc/new"', output: gone}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["got"] != "v1" || d["swapped"] != true || d["swapped2"] != false || d["created"] != true || d["gone"] != nil {
				t.Errorf("data %v", d)
			}
			if v, _ := f.fc.Value("doc/k"); v != `{"n":2}` {
				t.Errorf("doc/k = %q", v)
			}
		}},
		{"saga", `
steps:
  - saga:
      - set: {log: '["a"]'}
        compensate: {set: {log: 'concat(data.log, ["undo a"])'}}
      - set: {log: 'concat(data.log, ["b"])'}
        compensate: {set: {log: 'concat(data.log, ["undo b"])'}}
      - fail: '"no"'
        on_error: compensate
  - set: {log: 'concat(data.log, ["after"])'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if fmt.Sprint(d["log"]) != "[a b undo b undo a after]" {
				t.Errorf("log %v", d["log"])
			}
		}},
		{"retry exhausted", `
on_error: {behavior: retry, interval: 5ms, max_attempts: 2, then: terminate}
steps:
  - fail: '"attempt " + string(attempt)'
`, `{}`, workflowpb.Status_STATUS_FAILED, nil},
		{"end", `
steps:
  - set: {a: '1'}
  - end: true
  - set: {b: '1'}
`, `{}`, workflowpb.Status_STATUS_COMPLETED, func(t *testing.T, d map[string]any) {
			if d["b"] != nil {
				t.Errorf("step after end ran: %v", d)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := strings.ReplaceAll(tt.name, " ", "-")
			f.define(fmt.Sprintf("id: %q\nversion: 1\n%s", id, tt.doc))
			in := f.wait(f.start(id, tt.data), tt.want)
			if tt.check != nil {
				tt.check(t, data(t, in))
			}
			if tt.want == workflowpb.Status_STATUS_FAILED && in.GetError() == "" {
				t.Error("failed without an error")
			}
		})
	}
}

// TestDocumentEventsHTTPAndSubWorkflow: wait, publish, http and workflow
// steps.
func TestDocumentEventsHTTPAndSubWorkflow(t *testing.T) {
	// The test's HTTP server is on loopback, which HTTP steps may not
	// reach by default.
	f := newFixture(t, func(c *workflowd.Config) { c.HTTPDeny = nil })
	var mu sync.Mutex
	var keys []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		if r.URL.Path == "/fail" {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"ok": true, "path": "`+r.URL.Path+`"}`)
	}))
	defer hs.Close()
	f.define(`
id: child
version: 1
steps:
  - wait: {event: '"go"', key: 'data.k', output: ev}
  - publish: {event: '"child-done"', key: 'data.k', data: 'data.ev'}
`)
	f.define(fmt.Sprintf(`
id: parent
version: 1
steps:
  - http: {method: POST, url: '"%s/charge"', body: '{"id": data.k}', output: resp}
  - workflow: {id: child, input: '{"k": data.k}', output: child}
  - wait: {event: '"child-done"', key: 'data.k', output: echoed}
  - http: {url: '"%s/fail"'}
    on_error: {behavior: retry, interval: 5ms, max_attempts: 2, then: suspend}
`, hs.URL, hs.URL))
	id := f.start("parent", `{"k": "p1"}`)
	waitFor(t, "child waiting", func() bool {
		r, err := f.c.List(t.Context(), &workflowpb.ListRequest{Definition: "child", Status: workflowpb.Status_STATUS_RUNNING})
		if err != nil || len(r.GetInstances()) != 1 {
			return false
		}
		in, err := f.c.Get(t.Context(), r.GetInstances()[0].GetId())
		return err == nil && len(in.GetWaiting()) == 1
	})
	if _, err := f.c.PublishEvent(t.Context(), &workflowpb.PublishEventRequest{Name: "go", Key: "p1", Data: []byte(`{"x": 1}`)}); err != nil {
		t.Fatal(err)
	}
	in := f.wait(id, workflowpb.Status_STATUS_SUSPENDED)
	d := data(t, in)
	resp := d["resp"].(map[string]any)
	if resp["status"] != 200.0 || resp["body"].(map[string]any)["path"] != "/charge" {
		t.Errorf("resp %v", resp)
	}
	if fmt.Sprint(d["child"]) != "map[ev:map[x:1] k:p1]" || fmt.Sprint(d["echoed"]) != "map[x:1]" {
		t.Errorf("child %v, echoed %v", d["child"], d["echoed"])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[2] || keys[0] == keys[1] {
		t.Errorf("idempotency keys %q; want one for the charge, the same for both attempts of the failing call", keys)
	}
}

// TestHTTPStepEgress: by default an HTTP step may not reach the host's own
// addresses (loopback: the daemons' admin endpoints) nor link-local ones
// (cloud metadata), by address or by a name resolving to one; the step
// fails with the reason and the server is never called.
func TestHTTPStepEgress(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer hs.Close()
	port := hs.URL[strings.LastIndex(hs.URL, ":")+1:]
	for i, url := range []string{hs.URL, "http://localhost:" + port, "http://169.254.169.254/latest/meta-data/"} {
		id := fmt.Sprintf("egress%d", i)
		f.define(fmt.Sprintf(`
id: %s
version: 1
on_error: {behavior: terminate}
steps:
  - http: {url: '%q'}
`, id, url))
		in := f.wait(f.start(id, `{}`), workflowpb.Status_STATUS_FAILED)
		if !strings.Contains(in.GetError(), "denied network") {
			t.Errorf("%s: error %q; want the egress refusal", url, in.GetError())
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the loopback server was called %d times", n)
	}
}

func TestParseNets(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		err  bool
	}{
		{"", "[]", false},
		{"none", "[]", false},
		{"10.0.0.0/8, 192.168.1.7 ,fd00::/8", "[10.0.0.0/8 192.168.1.7/32 fd00::/8]", false},
		{"10.1.2.3/8", "[10.0.0.0/8]", false},
		{"10.0.0.0/33", "", true},
		{"example.com", "", true},
	} {
		got, err := workflowd.ParseNets(tt.in)
		if (err != nil) != tt.err || (!tt.err && fmt.Sprint(got) != tt.want) {
			t.Errorf("ParseNets(%q) = %v, %v; want %s (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestDocumentVersions: an instance finishes on the version it started
// with; a stored version is immutable; the latest is the default.
func TestDocumentVersions(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	v1 := "id: ver\nversion: 1\nsteps:\n  - wait: {event: '\"go\"', key: 'instance'}\n  - set: {v: '1'}\n"
	f.define(v1)
	old := f.start("ver", `{}`)
	waitFor(t, "v1 instance waiting", func() bool {
		in, _ := f.c.Get(ctx, old)
		return len(in.GetWaiting()) == 1
	})
	r, err := f.c.Define(ctx, []byte(v1))
	if err != nil || !r.GetUnchanged() {
		t.Errorf("defining v1 again = %v, %v; want unchanged", r, err)
	}
	if _, err := f.c.Define(ctx, []byte("id: ver\nversion: 1\nsteps:\n  - set: {v: '9'}\n")); !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Errorf("another document as v1: %v; want a precondition error", err)
	}
	f.define("id: ver\nversion: 2\nsteps:\n  - set: {v: '2'}\n")
	nu, err := f.c.Start(ctx, &workflowpb.StartRequest{Definition: "ver"})
	if err != nil || nu.GetVersion() != 2 {
		t.Fatalf("start after v2 = %v, %v; want version 2", nu, err)
	}
	if d := data(t, f.wait(nu.GetInstanceId(), workflowpb.Status_STATUS_COMPLETED)); d["v"] != 2.0 {
		t.Errorf("v2 instance data %v", d)
	}
	if _, err := f.c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "go", Key: old}); err != nil {
		t.Fatal(err)
	}
	in := f.wait(old, workflowpb.Status_STATUS_COMPLETED)
	if d := data(t, in); in.GetVersion() != 1 || d["v"] != 1.0 {
		t.Errorf("v1 instance: version %d, data %v; want v1's steps", in.GetVersion(), d)
	}
}
