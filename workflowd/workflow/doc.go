// Package workflow builds workflow definitions in Go for workflowd.
//
//	type Order struct {
//		ID      string
//		Charged bool
//		Items   []string
//	}
//
//	b := workflow.New[Order]("order", 1)
//	b.Then("reserve", reserve).CompensateWith("release", release).
//		Task(workflow.Task[Order]("charge", charge).
//			In(func(d *Order, c *workflow.Context) ChargeIn { return ChargeIn{Order: d.ID, Key: c.IdempotencyKey} }).
//			Out(func(d *Order, r ChargeOut) { d.Charged = r.OK })).
//		OnError(workflow.RetryPolicy(time.Second, 2, 5, workflow.Compensate)).
//		ForEach("ship", func(d *Order) any { return d.Items }, true, func(s *workflow.Seq[Order]) {
//			s.Then("ship one", shipOne) // workflow.Item[string](c) is the item
//		}).
//		WaitFor("delivered", "delivered", func(d *Order) string { return d.ID }).
//		OnEvent(func(d *Order, ev workflow.Event) error { ... })
//	def, err := b.Build()
//	srv.Register(def) // workflowd.Server
//
// An instance's data is a D, stored as JSON in the KV after every step.
// Then steps change it in place and run one at a time; Task steps take a
// typed input mapped from it and give a typed output mapped back, and run
// concurrently with the instance's other branches (Parallel, parallel
// ForEach). Control flow: If/Else, While, ForEach (sequential or
// parallel), Parallel, Decide/Branch, Delay, WaitFor (event name, key,
// effective time), Schedule and Recur (background blocks), SubWorkflow,
// Saga (per-step CompensateWith, Propagate for nesting) and End.
//
// Errors: a step's OnError policy (else the definition's
// DefaultErrorPolicy, else DefaultErrorPolicy: five attempts 1s apart
// doubling, then fail) retries with an interval, backoff and maximum
// number of attempts, then suspends, fails (Terminate) or compensates.
//
// Steps run at least once: a workflowd that dies mid-step leaves the step
// to be run again by whoever takes the instance over. Context's
// IdempotencyKey is the same on every run of one execution, so a body
// can make its side effects effectively once.
//
// Versions: register every version still running; an instance finishes
// on the version it started with.
package workflow
