package document

import (
	"strconv"
	"strings"
	"testing"
)

func TestCompileRefusesMalformed(t *testing.T) {
	for _, tt := range []struct {
		name, doc string
		// line is the line the error must name (0: any), reason a part
		// of its message.
		line   int
		reason string
	}{
		{"empty", "", 0, "empty document"},
		{"not yaml", "id: [a\n", 0, "line"},
		{"not a mapping", "- a\n- b\n", 1, "mapping"},
		{"no id", "version: 1\nsteps: [{noop: true}]\n", 1, "missing id"},
		{"bad version", "id: x\nversion: zero\nsteps: [{noop: true}]\n", 2, "version"},
		{"unknown top field", "id: x\nversion: 1\nstep: []\n", 3, `unknown field "step"`},
		{"no steps", "id: x\nversion: 1\nsteps: []\n", 3, "no steps"},
		{"unknown kind", "id: x\nversion: 1\nsteps:\n  - name: a\n    sett: {a: '1'}\n", 4, "no kind"},
		{"two kinds", "id: x\nversion: 1\nsteps:\n  - noop: true\n    end: true\n", 5, "two kinds"},
		{"bad expression", "id: x\nversion: 1\nsteps:\n  - set: {a: '1 +'}\n", 4, "expression"},
		{"bad path", "id: x\nversion: 1\nsteps:\n  - kv.get: {key: '\"k\"', output: 'a..b'}\n", 4, "path"},
		{"missing field", "id: x\nversion: 1\nsteps:\n  - kv.put: {key: '\"k\"'}\n", 4, `missing "value"`},
		{"unknown step field", "id: x\nversion: 1\nsteps:\n  - noop: true\n    retry: 3\n", 5, `unknown field "retry"`},
		{"bad policy", "id: x\nversion: 1\nsteps:\n  - noop: true\n    on_error: {behavior: sometimes}\n", 5, "unknown error behaviour"},
		{"bad duration", "id: x\nversion: 1\non_error: {behavior: retry, interval: soon}\nsteps: [{noop: true}]\n", 3, "duration"},
		{"if without then", "id: x\nversion: 1\nsteps:\n  - if: 'true'\n", 4, "then"},
		{"compensate on control", "id: x\nversion: 1\nsteps:\n  - while: 'false'\n    do: [{noop: true}]\n    compensate: {noop: true}\n", 6, "compensate"},
		{"duplicate field", "id: x\nid: y\nversion: 1\nsteps: [{noop: true}]\n", 2, "duplicate"},
		{"nested error line", "id: x\nversion: 1\nsteps:\n  - if: 'true'\n    then:\n      - noop: true\n      - set: {a: ')'}\n", 7, "expression"},
	} {
		_, err := Compile([]byte(tt.doc))
		if err == nil {
			t.Errorf("%s: compiled; want an error", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: error %q; want it to mention %q", tt.name, err, tt.reason)
		}
		if tt.line > 0 && !strings.HasPrefix(err.Error(), "line "+strconv.Itoa(tt.line)+":") {
			t.Errorf("%s: error %q; want it at line %d", tt.name, err, tt.line)
		}
	}
}

func TestCompileJSON(t *testing.T) {
	d, err := Compile([]byte(`{"id": "j", "version": 2, "steps": [{"name": "a", "set": {"x": "1"}}, {"delay": "'1s'"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "j" || d.Version != 2 || len(d.Steps) != 3 {
		t.Errorf("compiled %s v%d with %d steps", d.ID, d.Version, len(d.Steps))
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"id: x\nversion: 1\nsteps:\n  - set: {a: '1'}\n",
		"id: x\nversion: 1\nsteps:\n  - if: 'data.a > 1'\n    then: [{noop: true}]\n    else: [{fail: '\"x\"'}]\n",
		"id: x\nversion: 1\nsteps:\n  - foreach: 'data.items'\n    parallel: true\n    do: [{kv.put: {key: 'item', value: 'index'}}]\n",
		"id: x\nversion: 1\nsteps:\n  - saga:\n      - noop: true\n        compensate: {noop: true}\n    propagate: true\n",
		`{"id": "j", "version": 2, "steps": [{"wait": {"event": "'e'", "key": "data.k", "output": "ev"}}]}`,
		"id: x\nversion: 1\nsteps:\n  - decide: 'data.k'\n    branches: {a: [{end: true}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := Compile(doc)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("compiled an invalid definition: %v", err)
		}
	})
}
