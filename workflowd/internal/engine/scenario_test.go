package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
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
