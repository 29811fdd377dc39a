package workflow_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

type order struct {
	ID    string
	Paid  bool
	Items []string
}

func nop(context.Context, *workflow.Context, *order) error { return nil }

// TestBuildRefuses: a definition built wrong is refused by Build with an
// error naming what is wrong (and MustBuild panics with it).
func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name  string
		build func() *workflow.Builder[order]
		want  string
	}{
		{"no steps", func() *workflow.Builder[order] { return workflow.New[order]("o", 1) }, "no steps"},
		{"version 0", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 0)
			b.Then("a", nop)
			return b
		}, "version must be at least 1"},
		{"no id", func() *workflow.Builder[order] {
			b := workflow.New[order]("", 1)
			b.Then("a", nop)
			return b
		}, "no id"},
		{"modifier before any step", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.OnError(workflow.RetryPolicy(time.Second, 2, 3, workflow.Terminate)).Then("a", nop)
			return b
		}, "OnError before any step"},
		{"Else after a task", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.Then("a", nop).Else(func(s *workflow.Seq[order]) { s.Then("b", nop) })
			return b
		}, `Else after step "a"`},
		{"Branch without Decide", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.Then("a", nop).Branch("x", nil)
			return b
		}, `Branch after step "a"`},
		{"OnEvent after a task", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.Then("a", nop).OnEvent(func(*order, workflow.Event) error { return nil })
			return b
		}, `OnEvent after step "a"`},
		{"compensation of an If", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.If("i", func(d *order) bool { return d.Paid }, func(s *workflow.Seq[order]) { s.Then("b", nop) }).CompensateWith("c", nop)
			return b
		}, `CompensateWith after step "i"`},
		{"bad error policy", func() *workflow.Builder[order] {
			b := workflow.New[order]("o", 1)
			b.Then("a", nop).OnError(workflow.RetryPolicy(-time.Second, 2, 3, workflow.Terminate))
			return b
		}, `step "a": error policy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.build().Build()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, %v; want an error containing %q", d, err, tt.want)
			}
			defer func() {
				if r := recover(); r == nil {
					t.Error("MustBuild did not panic")
				}
			}()
			tt.build().MustBuild()
		})
	}
}

// TestBuildShape: Build links the steps as written: the main sequence in
// order under a root saga, bodies as branches, modifiers on the step
// before them.
func TestBuildShape(t *testing.T) {
	b := workflow.New[order]("order", 2).Description("an order")
	b.Then("reserve", nop).CompensateWith("release", nop).
		If("paid?", func(d *order) bool { return d.Paid }, func(s *workflow.Seq[order]) { s.Then("ship", nop) }).
		Else(func(s *workflow.Seq[order]) { s.Then("remind", nop).Then("cancel", nop) }).
		Decide("kind", func(d *order) string { return d.ID }).
		Branch("a", func(s *workflow.Seq[order]) { s.Then("pa", nop) }).
		Branch("b", nil).
		WaitFor("paid", "payment", func(d *order) string { return d.ID }).
		OnEvent(func(d *order, _ workflow.Event) error { d.Paid = true; return nil }).
		Then("done", nop).OnError(workflow.RetryPolicy(time.Millisecond, 2, 5, workflow.Suspend))
	d, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != "order" || d.Version() != 2 {
		t.Errorf("ID, Version = %s, %d", d.ID(), d.Version())
	}
	def := d.Compiled()
	if def.Description != "an order" || def.Source != "go" {
		t.Errorf("description %q, source %q", def.Description, def.Source)
	}
	byName := map[string]*flow.Step{}
	for _, s := range def.Steps {
		byName[s.Name] = s
	}
	name := func(i int) string {
		if i == flow.None {
			return "-"
		}
		return def.Steps[i].Name
	}
	// The main sequence, from the root saga.
	var main []string
	for i := def.Steps[def.Root].Branches[0]; i != flow.None; i = def.Steps[i].Next {
		main = append(main, name(i))
	}
	if got, want := strings.Join(main, " "), "reserve paid? kind paid done"; got != want {
		t.Errorf("main sequence %q; want %q", got, want)
	}
	checks := []struct{ what, got, want string }{
		{"reserve's compensation", name(byName["reserve"].Compensation), "release"},
		{"If's then", name(byName["paid?"].Branches[0]), "ship"},
		{"If's else", name(byName["paid?"].Branches[1]), "remind"},
		{"else body", name(byName["remind"].Next), "cancel"},
		{"Decide's keys", strings.Join(byName["kind"].BranchKeys, ","), "a,b"},
		{"Decide's branch a", name(byName["kind"].Branches[0]), "pa"},
		{"Decide's branch b", name(byName["kind"].Branches[1]), "-"},
		{"done's policy", byName["done"].Error.Then.String(), workflow.Suspend.String()},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q; want %q", c.what, c.got, c.want)
		}
	}
	if byName["paid"].OnEvent == nil {
		t.Error("OnEvent not set on the WaitFor")
	}
}
