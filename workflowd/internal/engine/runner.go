package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// runner executes one claimed instance. Its state (st, data, inflight,
// events) belongs to the goroutine running run; the lease fields (saved*,
// lease, kvRequested) are guarded by mu, shared with the renewal loop.
type runner struct {
	e   *Engine
	def *flow.Def
	id  string
	log *slog.Logger

	st       *workflowpb.InstanceRecord
	data     any
	inflight map[uint32]context.CancelFunc
	events   map[uint32]*flow.Event
	dirty    bool
	reclaim  bool
	// exclusive is the pointer of the in-place task running, if any:
	// meanwhile nothing else touches the data (typed tasks' results wait
	// in held).
	exclusive uint32
	held      []taskResult
	// consumed is the control request applied since the last write: the
	// stored record still carries it until the next write succeeds, and
	// it must not be taken again from there.
	consumed string
	kickc    chan struct{}
	results  chan taskResult
	tasks    sync.WaitGroup
	fenced   atomic.Bool
	epoch    uint64

	mu struct {
		sync.Mutex
		savedRaw    []byte
		savedRev    uint64
		savedStatus workflowpb.Status
		lease       int64
		// requested is a control request found in the KV by a renewal.
		requested, reason string
		fresh             bool
	}
}

type taskResult struct {
	ptr     uint32
	out     any
	err     error
	started time.Time
}

func newRunner(e *Engine, rec *workflowpb.InstanceRecord, raw []byte, d *flow.Def) *runner {
	r := &runner{e: e, def: d, id: rec.GetId(), st: rec, epoch: rec.GetEpoch(),
		log:      e.log.With(slog.String("instance", rec.GetId())),
		inflight: make(map[uint32]context.CancelFunc), events: make(map[uint32]*flow.Event),
		kickc: make(chan struct{}, 1), results: make(chan taskResult, e.cfg.MaxTasks+1)}
	r.mu.savedRaw, r.mu.savedRev, r.mu.savedStatus, r.mu.lease = raw, rec.GetRevision(), rec.GetStatus(), rec.GetLeaseUnixNano()
	return r
}

// run drives the instance until it parks, finishes, loses its lease or
// the engine stops (then it releases the instance).
func (r *runner) run(ctx context.Context) {
	rctx, cancel := context.WithCancel(ctx)
	var renewer sync.WaitGroup
	renewer.Add(1)
	go func() {
		defer renewer.Done()
		r.renewLoop(rctx, cancel)
	}()
	released := r.loop(rctx)
	for _, c := range r.inflight {
		c()
	}
	r.tasks.Wait()
	cancel()
	renewer.Wait()
	if !released && !r.fenced.Load() {
		// Stopping (or a write kept failing): hand the instance back so
		// that another workflowd takes it without waiting for the lease.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		r.persist(sctx, nil, true)
		scancel()
	}
	if r.reclaim {
		r.e.tryClaimAsync(r.id)
	}
}

// stopTasks cancels the tasks in flight and waits for them: their
// results no longer count, and no body touches the data any more.
func (r *runner) stopTasks() {
	for _, c := range r.inflight {
		c()
	}
	r.tasks.Wait()
	clear(r.inflight)
	r.exclusive, r.held = 0, nil
	for {
		select {
		case <-r.results:
		default:
			return
		}
	}
}

// loop returns true when the instance was parked or finished (released).
func (r *runner) loop(ctx context.Context) bool {
	data, err := r.def.Codec.Decode(r.st.GetData())
	if err != nil {
		r.failInstance(fmt.Sprintf("stored data does not decode: %v", err))
	}
	r.data = data
	if r.st.Consumed == nil {
		r.st.Consumed = map[string]int64{}
	}
	r.checkEvents(ctx)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if r.fenced.Load() || ctx.Err() != nil {
			return false
		}
		r.mergeRequest()
		r.applyRequest()
		// Step results are written before any further step starts.
		// (A finished instance's last result is written with its end.)
		if r.dirty && !terminal(r.st.GetStatus()) && len(r.st.GetPointers()) > 0 && !r.persist(ctx, nil, false) {
			return false
		}
		// A control request found by that write applies before any
		// further step starts.
		r.applyRequest()
		switch {
		case terminal(r.st.GetStatus()):
			r.stopTasks()
			return r.finish(ctx)
		case r.st.GetStatus() == workflowpb.Status_STATUS_SUSPENDED:
			if len(r.inflight) == 0 {
				return r.park(ctx)
			}
		default:
			if !r.suspendPending() {
				r.advance(ctx)
			}
			if r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING && len(r.st.GetPointers()) == 0 && len(r.inflight) == 0 {
				r.st.Status = workflowpb.Status_STATUS_COMPLETED
				continue
			}
			if r.st.GetStatus() != workflowpb.Status_STATUS_RUNNING {
				continue
			}
		}
		if r.dirty && !r.persist(ctx, nil, false) {
			return false
		}
		wake := r.nextWake()
		if len(r.inflight) == 0 && r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING && len(r.events) == 0 {
			if wake == 0 || time.Duration(wake-r.e.now().UnixNano()) > r.e.cfg.HoldFor {
				return r.park(ctx)
			}
		}
		var tc <-chan time.Time
		if wake != 0 {
			d := time.Duration(wake - r.e.now().UnixNano())
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		select {
		case res := <-r.results:
			r.applyResult(res)
			for more := true; more; {
				select {
				case res := <-r.results:
					r.applyResult(res)
				default:
					more = false
				}
			}
		case <-r.kickc:
			r.refresh(ctx)
			r.checkEvents(ctx)
		case <-tc:
		case <-ctx.Done():
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Pointers.

func (r *runner) pointer(id uint32) *workflowpb.Pointer {
	if id == 0 {
		return nil
	}
	for _, p := range r.st.Pointers {
		if p.GetId() == id {
			return p
		}
	}
	return nil
}

func (r *runner) stepOf(p *workflowpb.Pointer) *flow.Step { return r.def.Steps[p.GetStep()] }

// addPointer adds a pointer at step under parent; count adds it to the
// parent's active children (false when it replaces a finished sibling).
func (r *runner) addPointer(step int, parent uint32, item []byte, index int32, count bool) *workflowpb.Pointer {
	if r.st.NextPointer == 0 {
		r.st.NextPointer = 1
	}
	p := &workflowpb.Pointer{Id: r.st.NextPointer, Step: uint32(step), Parent: parent, Item: item, Index: index, StartedUnixNano: r.e.now().UnixNano()}
	r.st.NextPointer++
	r.st.Pointers = append(r.st.Pointers, p)
	if count {
		if pp := r.pointer(parent); pp != nil {
			pp.ActiveChildren++
		}
	}
	r.dirty = true
	return p
}

func (r *runner) removePointer(id uint32) {
	r.st.Pointers = slices.DeleteFunc(r.st.Pointers, func(p *workflowpb.Pointer) bool { return p.GetId() == id })
	delete(r.events, id)
	r.dirty = true
}

// spawnBody starts body first under p; false when the body is empty.
func (r *runner) spawnBody(p *workflowpb.Pointer, first int, item []byte, index int32) bool {
	if first == flow.None {
		return false
	}
	r.addPointer(first, p.GetId(), item, index, true)
	p.State = workflowpb.PointerState_POINTER_STATE_WAITING_CHILDREN
	return true
}

// complete finishes p: its successor takes its place, or its parent
// learns that one more child is done.
func (r *runner) complete(p *workflowpb.Pointer) {
	s := r.stepOf(p)
	r.removePointer(p.GetId())
	if s.Kind == flow.Task && !p.GetCompensation() && s.Compensation != flow.None {
		if sg := r.enclosingSaga(p.GetParent()); sg != nil {
			sg.CompLog = append(sg.CompLog, &workflowpb.CompEntry{Step: uint32(s.ID), Item: p.GetItem(), Index: p.GetIndex(), Pointer: p.GetId()})
		}
	}
	if !p.GetBackground() && !p.GetCompensation() && s.Next != flow.None {
		r.addPointer(s.Next, p.GetParent(), p.GetItem(), p.GetIndex(), false)
		return
	}
	if pp := r.pointer(p.GetParent()); pp != nil {
		if pp.ActiveChildren > 0 {
			pp.ActiveChildren--
		}
		if pp.ActiveChildren == 0 && pp.GetState() == workflowpb.PointerState_POINTER_STATE_WAITING_CHILDREN {
			pp.State = workflowpb.PointerState_POINTER_STATE_CHILDREN_DONE
		}
	}
}

// enclosingSaga returns the nearest saga pointer at or above id that is
// not compensating.
func (r *runner) enclosingSaga(id uint32) *workflowpb.Pointer {
	for q := r.pointer(id); q != nil; q = r.pointer(q.GetParent()) {
		if r.stepOf(q).Kind == flow.Saga && q.GetState() != workflowpb.PointerState_POINTER_STATE_COMPENSATING {
			return q
		}
	}
	return nil
}

// dropDescendants removes every pointer below id, cancelling their tasks.
func (r *runner) dropDescendants(id uint32) {
	under := map[uint32]bool{id: true}
	for changed := true; changed; {
		changed = false
		for _, p := range r.st.Pointers {
			if !under[p.GetId()] && under[p.GetParent()] {
				under[p.GetId()] = true
				changed = true
			}
		}
	}
	for pid := range under {
		if pid == id {
			continue
		}
		if c, ok := r.inflight[pid]; ok {
			c()
		}
		r.removePointer(pid)
	}
}

func (r *runner) rootID() uint32 {
	for _, p := range r.st.Pointers {
		if int(p.GetStep()) == r.def.Root && p.GetParent() == 0 {
			return p.GetId()
		}
	}
	return 0
}

func (r *runner) nextWake() int64 {
	var w int64
	for _, p := range r.st.Pointers {
		if p.GetState() == workflowpb.PointerState_POINTER_STATE_SLEEPING && (w == 0 || p.GetWakeUnixNano() < w) {
			w = p.GetWakeUnixNano()
		}
	}
	return w
}

func (r *runner) stepContext(p *workflowpb.Pointer, s *flow.Step, now time.Time) *flow.Context {
	return &flow.Context{InstanceID: r.id, Definition: r.def.ID, Version: r.def.Version, Step: s.Name, Pointer: p.GetId(),
		Attempt: int(p.GetAttempt()) + 1, IdempotencyKey: r.id + "/" + strconv.FormatUint(uint64(p.GetId()), 10),
		Item: p.GetItem(), Index: int(p.GetIndex()), Epoch: r.epoch, Now: now, Services: services{e: r.e, def: r.def}}
}

// ---------------------------------------------------------------------------
// Advancing.

// advance moves every pointer that can move now, until none can.
func (r *runner) advance(ctx context.Context) {
	for r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING && ctx.Err() == nil && r.exclusive == 0 {
		progress := false
		now := r.e.now()
		for i := 0; i < len(r.st.Pointers) && !progress && r.exclusive == 0; i++ {
			p := r.st.Pointers[i]
			if _, busy := r.inflight[p.GetId()]; busy {
				continue
			}
			progress = r.move(ctx, p, now)
		}
		if !progress {
			return
		}
	}
}

func (r *runner) move(ctx context.Context, p *workflowpb.Pointer, now time.Time) bool {
	s := r.stepOf(p)
	switch p.GetState() {
	case workflowpb.PointerState_POINTER_STATE_PENDING:
		return r.start(ctx, p, s, now)
	case workflowpb.PointerState_POINTER_STATE_SLEEPING:
		if now.UnixNano() < p.GetWakeUnixNano() {
			return false
		}
		r.wake(ctx, p, s, now)
		return true
	case workflowpb.PointerState_POINTER_STATE_CHILDREN_DONE:
		r.childrenDone(p, s, now)
		return true
	case workflowpb.PointerState_POINTER_STATE_COMPENSATING:
		if p.GetActiveChildren() == 0 {
			r.nextCompensation(p)
			return true
		}
	case workflowpb.PointerState_POINTER_STATE_WAITING_EVENT:
		if ev := r.events[p.GetId()]; ev != nil {
			delete(r.events, p.GetId())
			r.deliver(p, s, ev, now)
			return true
		}
	}
	return false
}

// start runs a pending pointer's step. It returns false when nothing
// changed in the state (a task launched in the background, or no room).
func (r *runner) start(ctx context.Context, p *workflowpb.Pointer, s *flow.Step, now time.Time) bool {
	c := r.stepContext(p, s, now)
	fail := func(err error) bool {
		r.fail(p, s, err, now)
		return true
	}
	if s.Kind == flow.Task {
		// Launching changes nothing stored: the pointer stays pending
		// until its result is written.
		return r.launchTask(ctx, p, s, c)
	}
	r.dirty = true
	switch s.Kind {
	case flow.If:
		ok, err := s.Cond(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("condition: %w", err))
		}
		br := 0
		if !ok {
			br = 1
		}
		p.Branch = int32(br)
		if br >= len(s.Branches) || !r.spawnBody(p, s.Branches[br], p.GetItem(), p.GetIndex()) {
			r.complete(p)
		}
	case flow.While:
		r.iterate(p, s, c)
	case flow.ForEach:
		items, err := s.Items(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("items: %w", err))
		}
		if s.Parallel {
			if s.Branches[0] == flow.None || len(items) == 0 {
				r.complete(p)
				return true
			}
			for i, it := range items {
				r.addPointer(s.Branches[0], p.GetId(), it, int32(i), true)
			}
			p.State = workflowpb.PointerState_POINTER_STATE_WAITING_CHILDREN
			return true
		}
		p.Items = p.Items[:0]
		for _, it := range items {
			p.Items = append(p.Items, it)
		}
		p.Counter = 0
		r.nextItem(p, s)
	case flow.Parallel:
		n := 0
		for _, b := range s.Branches {
			if b != flow.None {
				r.addPointer(b, p.GetId(), p.GetItem(), p.GetIndex(), true)
				n++
			}
		}
		if n == 0 {
			r.complete(p)
		} else {
			p.State = workflowpb.PointerState_POINTER_STATE_WAITING_CHILDREN
		}
	case flow.Decide:
		k, err := s.Select(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("decide: %w", err))
		}
		i := slices.Index(s.BranchKeys, k)
		p.Branch = int32(i)
		if i < 0 || !r.spawnBody(p, s.Branches[i], p.GetItem(), p.GetIndex()) {
			r.complete(p)
		}
	case flow.Delay:
		d, err := s.Duration(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("duration: %w", err))
		}
		p.Error = ""
		p.State = workflowpb.PointerState_POINTER_STATE_SLEEPING
		p.WakeUnixNano = now.Add(max(d, 0)).UnixNano()
	case flow.WaitFor:
		name, k, asOf, err := s.Event(c, r.data)
		if err == nil && (name == "" || bytes.IndexByte([]byte(name), 0) >= 0 || bytes.IndexByte([]byte(k), 0) >= 0) {
			err = fmt.Errorf("bad event name %q or key %q", name, k)
		}
		if err != nil {
			return fail(fmt.Errorf("event: %w", err))
		}
		at := asOf.UnixNano()
		if asOf.IsZero() {
			at = r.st.GetCreatedUnixNano()
		}
		if last, ok := r.st.Consumed[subName(name, k)]; ok && last >= at {
			at = last + 1
		}
		p.State = workflowpb.PointerState_POINTER_STATE_WAITING_EVENT
		p.EventName, p.EventKey, p.EventAsOf, p.Error = name, k, at, ""
		r.lookEvent(ctx, p)
	case flow.Schedule, flow.Recur:
		d, err := s.Duration(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("interval: %w", err))
		}
		bg := r.addPointer(s.ID, r.rootID(), p.GetItem(), p.GetIndex(), true)
		bg.Background = true
		bg.State = workflowpb.PointerState_POINTER_STATE_SLEEPING
		bg.WakeUnixNano = now.Add(max(d, 0)).UnixNano()
		r.complete(p)
	case flow.SubWorkflow:
		def, ver, input, err := s.Sub(c, r.data)
		if err != nil {
			return fail(fmt.Errorf("sub-workflow input: %w", err))
		}
		if !r.def.Allows([]byte(def)) {
			return fail(fmt.Errorf("%w: sub-workflow %q is outside definition %q's key prefixes", ErrDenied, def, r.def.ID))
		}
		child, _, _, err := r.e.Start(ctx, def, StartOptions{Version: ver, Data: input, IdempotencyKey: "sub/" + c.IdempotencyKey, ParentID: r.id, ParentPointer: p.GetId()})
		if err != nil {
			return fail(fmt.Errorf("start sub-workflow %q: %w", def, err))
		}
		p.ChildInstance = child
		p.State = workflowpb.PointerState_POINTER_STATE_WAITING_EVENT
		p.EventName, p.EventKey, p.EventAsOf, p.Error = doneEvent, child, 0, ""
		r.lookEvent(ctx, p)
	case flow.Saga:
		if !r.spawnBody(p, s.Branches[0], p.GetItem(), p.GetIndex()) {
			r.complete(p)
		}
	case flow.End:
		r.history(p, s, "completed", now, "")
		r.dropAll()
		r.st.Status = workflowpb.Status_STATUS_COMPLETED
	}
	return true
}

// launchTask runs a Task step: in place (now, on this goroutine) or in
// the background with its prepared input.
func (r *runner) launchTask(ctx context.Context, p *workflowpb.Pointer, s *flow.Step, c *flow.Context) bool {
	if !s.InPlace && len(r.inflight) >= r.e.cfg.MaxTasks {
		return false
	}
	if !r.ensureLease(ctx) {
		return false
	}
	if s.InPlace && r.exclusive != 0 {
		// It changes the data in place: one at a time.
		return false
	}
	r.e.emit(r.st, "step_started", s.Name, p.GetId(), p.GetAttempt()+1, "")
	started := r.e.now()
	if s.InPlace {
		// Persisting while it runs writes the data as it was before.
		r.encodeData()
		r.exclusive = p.GetId()
		r.spawnTask(ctx, p, s, c, r.data, started)
		return false
	}
	in, err := s.Prepare(c, r.data)
	if err != nil {
		r.fail(p, s, fmt.Errorf("input: %w", err), started)
		return true
	}
	r.spawnTask(ctx, p, s, c, in, started)
	return false
}

// spawnTask runs a task's body on its own goroutine; its result comes
// back on r.results.
func (r *runner) spawnTask(ctx context.Context, p *workflowpb.Pointer, s *flow.Step, c *flow.Context, in any, started time.Time) {
	tctx, cancel := context.WithCancel(ctx)
	r.inflight[p.GetId()] = cancel
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		defer cancel()
		out, err := s.Exec(tctx, c, in)
		// Never blocks: results has room for every task in flight, and a
		// task stays in flight (even cancelled) until its result is taken.
		r.results <- taskResult{ptr: c.Pointer, out: out, err: err, started: started}
	}()
}

func (r *runner) applyResult(res taskResult) {
	if r.exclusive != 0 && res.ptr != r.exclusive {
		r.held = append(r.held, res)
		return
	}
	cancel, ok := r.inflight[res.ptr]
	if !ok {
		return
	}
	cancel()
	delete(r.inflight, res.ptr)
	if r.exclusive == res.ptr {
		r.exclusive = 0
		defer func() {
			held := r.held
			r.held = nil
			for _, h := range held {
				r.applyResult(h)
			}
		}()
	}
	p := r.pointer(res.ptr)
	if p == nil {
		return // dropped by a compensation or a termination
	}
	s := r.stepOf(p)
	r.taskDone(p, s, r.stepContext(p, s, res.started), res.out, res.err, res.started)
}

func (r *runner) taskDone(p *workflowpb.Pointer, s *flow.Step, c *flow.Context, out any, err error, started time.Time) {
	r.dirty = true
	now := r.e.now()
	r.e.m.stepLatency.Observe(now.Sub(started).Seconds())
	if err == nil && s.Apply != nil {
		if aerr := s.Apply(c, r.data, out); aerr != nil {
			err = fmt.Errorf("output: %w", aerr)
		}
	}
	if err != nil {
		r.fail(p, s, err, started)
		return
	}
	r.e.m.steps.Inc()
	r.st.StepsCompleted++
	r.history(p, s, "completed", started, "")
	r.e.emit(r.st, "step_completed", s.Name, p.GetId(), p.GetAttempt()+1, "")
	r.complete(p)
}

// wake handles a pointer whose timer is due.
func (r *runner) wake(ctx context.Context, p *workflowpb.Pointer, s *flow.Step, now time.Time) {
	r.dirty = true
	if !p.GetBackground() {
		if s.Kind == flow.Delay && p.GetError() == "" {
			r.complete(p)
			return
		}
		// A retry's wait is over.
		p.State = workflowpb.PointerState_POINTER_STATE_PENDING
		return
	}
	p.Error = ""
	switch s.Kind {
	case flow.Schedule:
		if !r.spawnBody(p, s.Branches[0], p.GetItem(), p.GetIndex()) {
			r.complete(p)
		}
	case flow.Recur:
		c := r.stepContext(p, s, now)
		done, err := s.Cond(c, r.data)
		if err != nil {
			r.fail(p, s, fmt.Errorf("until: %w", err), now)
			return
		}
		if done {
			r.complete(p)
			return
		}
		p.Counter++
		if !r.spawnBody(p, s.Branches[0], p.GetItem(), p.GetCounter()) {
			r.childrenDone(p, s, now)
		}
	}
}

// iterate runs a While's next iteration or completes it.
func (r *runner) iterate(p *workflowpb.Pointer, s *flow.Step, c *flow.Context) {
	ok, err := s.Cond(c, r.data)
	if err != nil {
		r.fail(p, s, fmt.Errorf("condition: %w", err), c.Now)
		return
	}
	if !ok {
		r.complete(p)
		return
	}
	idx := p.GetCounter()
	p.Counter++
	if !r.spawnBody(p, s.Branches[0], p.GetItem(), idx) {
		// An empty body would spin: treat the loop as done.
		r.complete(p)
	}
}

func (r *runner) nextItem(p *workflowpb.Pointer, s *flow.Step) {
	i := p.GetCounter()
	if int(i) >= len(p.GetItems()) || s.Branches[0] == flow.None {
		p.Items = nil
		r.complete(p)
		return
	}
	r.spawnBody(p, s.Branches[0], p.GetItems()[i], i)
}

// childrenDone resumes a container whose current bodies have finished.
func (r *runner) childrenDone(p *workflowpb.Pointer, s *flow.Step, now time.Time) {
	r.dirty = true
	p.State = workflowpb.PointerState_POINTER_STATE_PENDING
	switch s.Kind {
	case flow.While:
		r.iterate(p, s, r.stepContext(p, s, now))
	case flow.ForEach:
		if s.Parallel {
			r.complete(p)
			return
		}
		p.Counter++
		r.nextItem(p, s)
	case flow.Recur:
		d, err := s.Duration(r.stepContext(p, s, now), r.data)
		if err != nil {
			r.fail(p, s, fmt.Errorf("interval: %w", err), now)
			return
		}
		p.State = workflowpb.PointerState_POINTER_STATE_SLEEPING
		p.WakeUnixNano = now.Add(max(d, 0)).UnixNano()
	case flow.Saga:
		if outer := r.enclosingSaga(p.GetParent()); outer != nil {
			outer.CompLog = append(outer.CompLog, p.GetCompLog()...)
		}
		p.CompLog = nil
		r.complete(p)
	default:
		r.complete(p)
	}
}

// deliver hands an event to a waiting pointer.
func (r *runner) deliver(p *workflowpb.Pointer, s *flow.Step, ev *flow.Event, now time.Time) {
	r.dirty = true
	c := r.stepContext(p, s, now)
	c.Event = ev
	if s.Kind == flow.SubWorkflow {
		var child workflowpb.Instance
		if err := proto.Unmarshal(ev.Data, &child); err != nil {
			r.fail(p, s, fmt.Errorf("sub-workflow result: %w", err), now)
			return
		}
		if child.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			p.State = workflowpb.PointerState_POINTER_STATE_PENDING
			r.fail(p, s, fmt.Errorf("sub-workflow %s ended %s: %s", child.GetId(), statusName(child.GetStatus()), child.GetError()), now)
			return
		}
		if s.OnSub != nil {
			if err := s.OnSub(c, r.data, child.GetData()); err != nil {
				r.fail(p, s, fmt.Errorf("sub-workflow output: %w", err), now)
				return
			}
		}
	} else {
		if s.OnEvent != nil {
			if err := s.OnEvent(c, r.data, *ev); err != nil {
				p.State = workflowpb.PointerState_POINTER_STATE_PENDING
				r.fail(p, s, fmt.Errorf("event output: %w", err), now)
				return
			}
		}
		r.st.Consumed[subName(ev.Name, ev.Key)] = ev.Time.UnixNano()
	}
	r.st.StepsCompleted++
	r.history(p, s, "completed", now, "")
	r.e.emit(r.st, "step_completed", s.Name, p.GetId(), p.GetAttempt()+1, "")
	r.complete(p)
}

// lookEvent looks for an event already published for a waiting pointer.
func (r *runner) lookEvent(ctx context.Context, p *workflowpb.Pointer) {
	ev, err := r.e.findEvent(ctx, p.GetEventName(), p.GetEventKey(), p.GetEventAsOf())
	if err != nil {
		r.log.Warn("look for event", slog.String("event", p.GetEventName()), slog.Any("err", err))
		return
	}
	if ev != nil {
		r.events[p.GetId()] = ev
	}
}

func (r *runner) checkEvents(ctx context.Context) {
	for _, p := range r.st.GetPointers() {
		if p.GetState() == workflowpb.PointerState_POINTER_STATE_WAITING_EVENT && r.events[p.GetId()] == nil {
			r.lookEvent(ctx, p)
		}
	}
}

// ---------------------------------------------------------------------------
// Failures and compensation.

func (r *runner) fail(p *workflowpb.Pointer, s *flow.Step, err error, started time.Time) {
	r.dirty = true
	now := r.e.now()
	p.Attempt++
	p.Error = err.Error()
	pol := r.def.Policy(s)
	b := pol.Behavior
	r.e.m.failures.Inc()
	if b == flow.Retry {
		if pol.MaxAttempts == 0 || int(p.GetAttempt()) < pol.MaxAttempts {
			r.e.m.retries.Inc()
			r.history(p, s, "retrying", started, p.Error)
			r.e.emit(r.st, "step_failed", s.Name, p.GetId(), p.GetAttempt(), p.Error)
			p.State = workflowpb.PointerState_POINTER_STATE_SLEEPING
			p.WakeUnixNano = now.Add(pol.RetryDelay(int(p.GetAttempt()))).UnixNano()
			return
		}
		b = pol.Then
	}
	r.history(p, s, "failed", started, p.Error)
	r.e.emit(r.st, "step_failed", s.Name, p.GetId(), p.GetAttempt(), p.Error)
	msg := fmt.Sprintf("step %q: %s", s.Name, p.Error)
	if p.GetCompensation() {
		r.failInstance("compensation " + msg)
		return
	}
	switch b {
	case flow.Suspend:
		p.State = workflowpb.PointerState_POINTER_STATE_PENDING
		p.Attempt = 0
		r.st.Status = workflowpb.Status_STATUS_SUSPENDED
		r.st.Error = msg
		r.e.m.transition("suspended")
		r.e.emit(r.st, "suspended", s.Name, p.GetId(), 0, msg)
	case flow.Compensate:
		r.st.Error = msg
		sg := r.enclosingSaga(p.GetParent())
		if s.Kind == flow.Saga {
			sg = r.enclosingSaga(p.GetParent())
		}
		if sg == nil {
			r.failInstance(msg)
			return
		}
		r.compensate(sg)
	default:
		r.failInstance(msg)
	}
}

func (r *runner) failInstance(msg string) {
	r.dropAll()
	r.st.Status = workflowpb.Status_STATUS_FAILED
	r.st.Error = msg
	r.dirty = true
}

func (r *runner) dropAll() {
	for _, c := range r.inflight {
		c()
	}
	r.st.Pointers = nil
	clear(r.events)
	r.dirty = true
}

func (r *runner) compensate(sg *workflowpb.Pointer) {
	r.dropDescendants(sg.GetId())
	sg.State = workflowpb.PointerState_POINTER_STATE_COMPENSATING
	sg.ActiveChildren = 0
	q := slices.Clone(sg.GetCompLog())
	slices.Reverse(q)
	sg.CompQueue, sg.CompLog = q, nil
	r.nextCompensation(sg)
}

func (r *runner) nextCompensation(sg *workflowpb.Pointer) {
	r.dirty = true
	if len(sg.GetCompQueue()) == 0 {
		r.sagaCompensated(sg)
		return
	}
	e := sg.CompQueue[0]
	sg.CompQueue = sg.CompQueue[1:]
	q := r.addPointer(r.def.Steps[e.GetStep()].Compensation, sg.GetId(), e.GetItem(), e.GetIndex(), true)
	q.Compensation = true
}

func (r *runner) sagaCompensated(sg *workflowpb.Pointer) {
	s := r.stepOf(sg)
	r.e.emit(r.st, "compensated", s.Name, sg.GetId(), 0, r.st.GetError())
	if int(sg.GetStep()) == r.def.Root && sg.GetParent() == 0 {
		r.dropAll()
		r.st.Status = workflowpb.Status_STATUS_COMPENSATED
		return
	}
	if s.Propagate {
		outer := r.enclosingSaga(sg.GetParent())
		if outer == nil {
			r.failInstance(r.st.GetError())
			return
		}
		r.compensate(outer)
		return
	}
	sg.State = workflowpb.PointerState_POINTER_STATE_PENDING
	r.complete(sg)
}

func (r *runner) history(p *workflowpb.Pointer, s *flow.Step, outcome string, started time.Time, errMsg string) {
	if r.e.cfg.HistoryLen < 0 {
		return
	}
	h := &workflowpb.StepRecord{Pointer: p.GetId(), Step: s.Name, Outcome: outcome, Attempt: p.GetAttempt(),
		StartedUnixNano: started.UnixNano(), EndedUnixNano: r.e.now().UnixNano(), Error: errMsg, Epoch: r.epoch}
	if outcome == "completed" {
		h.Attempt++
	}
	r.st.History = append(r.st.History, h)
	if n := len(r.st.History) - r.e.cfg.HistoryLen; n > 0 {
		r.st.History = slices.Delete(r.st.History, 0, n)
	}
}

// ---------------------------------------------------------------------------
// Control requests.

// mergeRequest takes a control request a renewal found in the KV.
func (r *runner) mergeRequest() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.fresh {
		r.takeRequest(r.mu.requested, r.mu.reason)
		r.mu.fresh = false
	}
}

// takeRequest adopts the control request found in the stored record,
// unless it is the one already applied and not yet written.
func (r *runner) takeRequest(req, reason string) {
	if req != "" && req == r.consumed {
		return
	}
	r.st.Requested, r.st.RequestedReason = req, reason
}

func (r *runner) applyRequest() {
	req := r.st.GetRequested()
	if req == "" || r.suspendPending() {
		return
	}
	r.st.Requested = ""
	r.consumed = req
	r.dirty = true
	switch req {
	case "suspend":
		if r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING {
			r.st.Status = workflowpb.Status_STATUS_SUSPENDED
			r.e.m.transition("suspended")
			r.e.emit(r.st, "suspended", "", 0, 0, "")
		}
	case "resume":
		if r.st.GetStatus() == workflowpb.Status_STATUS_SUSPENDED {
			r.st.Status = workflowpb.Status_STATUS_RUNNING
			r.st.Error = ""
			r.e.m.transition("resumed")
			r.e.emit(r.st, "resumed", "", 0, 0, "")
		}
	case "terminate":
		if !terminal(r.st.GetStatus()) {
			r.dropAll()
			r.st.Status = workflowpb.Status_STATUS_TERMINATED
			r.st.Error = r.st.GetRequestedReason()
		}
	}
	r.st.RequestedReason = ""
}

// suspendPending reports whether a suspend request waits for the steps
// in flight: it applies once they have finished (their results written
// with the suspension), and no further step starts meanwhile.
func (r *runner) suspendPending() bool {
	return r.st.GetRequested() == "suspend" && r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING && len(r.inflight) > 0
}

// refresh reads the record after a kick: a control request may be there.
func (r *runner) refresh(ctx context.Context) {
	v, found, err := r.e.kv.Get(ctx, instanceKey(r.id))
	if err != nil || !found {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if bytes.Equal(v.Value, r.mu.savedRaw) {
		return
	}
	cur, err := decodeRecord(v.Value)
	if err != nil {
		return
	}
	if cur.GetEpoch() != r.epoch || cur.GetOwner() != r.e.cfg.NodeID {
		r.lostLocked(cur)
		return
	}
	if cur.GetRevision() <= r.mu.savedRev {
		// Read before a renewal that wrote meanwhile: older than what
		// this runner knows.
		return
	}
	r.mu.savedRaw, r.mu.savedRev, r.mu.lease = v.Value, cur.GetRevision(), cur.GetLeaseUnixNano()
	r.mu.requested, r.mu.reason, r.mu.fresh = cur.GetRequested(), cur.GetRequestedReason(), true
}

func (r *runner) lostLocked(cur *workflowpb.InstanceRecord) {
	if r.fenced.CompareAndSwap(false, true) {
		r.e.m.fenced.Inc()
		r.log.Warn("lease lost: instance taken by another workflowd", slog.Uint64("epoch", r.epoch),
			slog.Uint64("new_epoch", cur.GetEpoch()), slog.Uint64("new_owner", cur.GetOwner()))
	}
}

// ---------------------------------------------------------------------------
// Persistence.

// persist writes the state with a compare-and-swap on the last written
// bytes (in one batch with extra's index changes and the list index move
// of a status change). release gives up the lease. It returns false when
// the instance was lost or the write kept failing.
func (r *runner) persist(ctx context.Context, extra func(*kvclient.Batch), release bool) bool {
	if r.fenced.Load() {
		return false
	}
	if r.e.knobs.BeforePersist != nil {
		r.e.knobs.BeforePersist(r.id)
	}
	if r.exclusive == 0 {
		r.encodeData()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		now := r.e.now()
		r.st.UpdatedUnixNano = now.UnixNano()
		r.st.Revision = r.mu.savedRev + 1
		r.st.Epoch = r.epoch
		if release {
			r.st.Owner, r.st.OwnerSession, r.st.LeaseUnixNano = 0, 0, 0
		} else {
			if time.Duration(r.mu.lease-now.UnixNano()) < r.e.cfg.LeaseDuration/2 {
				r.mu.lease = now.Add(r.e.cfg.LeaseDuration).UnixNano()
			}
			r.st.Owner, r.st.OwnerSession, r.st.LeaseUnixNano = r.e.cfg.NodeID, r.e.session, r.mu.lease
		}
		raw, err := proto.Marshal(r.st)
		if err != nil {
			r.log.Error("encode instance record", slog.Any("err", err))
			return false
		}
		old := r.mu.savedStatus
		b := kvclient.NewBatch()
		if extra != nil {
			extra(b)
		}
		if old != r.st.GetStatus() {
			b.Delete(listKey(old, r.id)).Put(listKey(r.st.GetStatus(), r.id), summary(r.st))
		}
		writeRecord(b, r.id, r.mu.savedRev, raw, r.st.GetRevision())
		res, err := r.e.kv.Batch(ctx, b)
		ok := err == nil && res.Succeeded
		if ok {
			r.saved(raw)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		cur, found, gerr := r.e.kv.Get(ctx, instanceKey(r.id))
		if gerr != nil {
			if attempt >= 10 {
				r.log.Warn("persist: giving up", slog.Any("err", errors.Join(err, gerr)))
				return false
			}
			r.sleep(ctx, attempt)
			continue
		}
		if casApplied(cur, found, raw) {
			r.saved(raw)
			return true
		}
		if !found {
			r.log.Warn("persist: instance record vanished")
			r.fenced.Store(true)
			return false
		}
		rec, derr := decodeRecord(cur.Value)
		if derr != nil {
			r.log.Error("persist: stored record does not decode", slog.Any("err", derr))
			return false
		}
		if rec.GetEpoch() != r.epoch || rec.GetOwner() != r.e.cfg.NodeID {
			r.lostLocked(rec)
			return false
		}
		// Same epoch: a control request was written; merge it and retry.
		r.mu.savedRaw, r.mu.savedRev = cur.Value, rec.GetRevision()
		r.takeRequest(rec.GetRequested(), rec.GetRequestedReason())
		if err != nil && attempt >= 10 {
			return false
		}
		if attempt >= 50 {
			return false
		}
	}
}

// encodeData writes the live data into the record.
func (r *runner) encodeData() {
	data, err := r.def.Codec.Encode(r.data)
	if err != nil {
		r.failInstance(fmt.Sprintf("data does not encode: %v", err))
		return
	}
	r.st.Data = data
}

func (r *runner) saved(raw []byte) {
	r.mu.savedRaw, r.mu.savedRev, r.mu.savedStatus = raw, r.st.GetRevision(), r.st.GetStatus()
	r.mu.fresh = false
	r.dirty = false
	r.consumed = ""
}

func (r *runner) sleep(ctx context.Context, attempt int) {
	t := time.NewTimer(time.Duration(10<<min(attempt, 6)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ensureLease renews the lease before a step starts when less than a
// quarter of it is left.
func (r *runner) ensureLease(ctx context.Context) bool {
	r.mu.Lock()
	left := time.Duration(r.mu.lease - r.e.now().UnixNano())
	r.mu.Unlock()
	if left > r.e.cfg.LeaseDuration/4 {
		return true
	}
	return r.renew(ctx)
}

// renewLoop extends the lease while the instance runs. It exits with
// ctx; on a lost lease it cancels the runner.
func (r *runner) renewLoop(ctx context.Context, cancel context.CancelFunc) {
	t := time.NewTicker(r.e.cfg.LeaseDuration / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		left := time.Duration(r.mu.lease - r.e.now().UnixNano())
		r.mu.Unlock()
		if left > r.e.cfg.LeaseDuration/2 {
			continue
		}
		if !r.renew(ctx) && r.fenced.Load() {
			cancel()
			return
		}
	}
}

// renew rewrites the last written record with a later lease end.
func (r *runner) renew(ctx context.Context) bool {
	if r.e.knobs.BeforeRenew != nil {
		r.e.knobs.BeforeRenew(r.id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; attempt < 5; attempt++ {
		if r.fenced.Load() {
			return false
		}
		rec, err := decodeRecord(r.mu.savedRaw)
		if err != nil {
			return false
		}
		lease := r.e.now().Add(r.e.cfg.LeaseDuration).UnixNano()
		rec.LeaseUnixNano, rec.Revision = lease, r.mu.savedRev+1
		raw, err := proto.Marshal(rec)
		if err != nil {
			return false
		}
		res, err := r.e.kv.Batch(ctx, writeRecord(kvclient.NewBatch(), r.id, r.mu.savedRev, raw, rec.GetRevision()))
		if err == nil && res.Succeeded {
			r.mu.savedRaw, r.mu.savedRev, r.mu.lease = raw, rec.GetRevision(), lease
			return true
		}
		cur, found, gerr := r.e.kv.Get(ctx, instanceKey(r.id))
		if gerr != nil || ctx.Err() != nil {
			continue
		}
		if casApplied(cur, found, raw) {
			r.mu.savedRaw, r.mu.savedRev, r.mu.lease = raw, rec.GetRevision(), lease
			return true
		}
		if !found {
			r.fenced.Store(true)
			return false
		}
		c, derr := decodeRecord(cur.Value)
		if derr != nil {
			return false
		}
		if c.GetEpoch() != r.epoch || c.GetOwner() != r.e.cfg.NodeID {
			r.lostLocked(c)
			return false
		}
		r.mu.savedRaw, r.mu.savedRev = cur.Value, c.GetRevision()
		r.mu.requested, r.mu.reason, r.mu.fresh = c.GetRequested(), c.GetRequestedReason(), true
		select {
		case r.kickc <- struct{}{}:
		default:
		}
	}
	return false
}

// park writes the state with the lease given up and the instance in the
// timer and subscription indexes it now needs.
func (r *runner) park(ctx context.Context) bool {
	wake := r.nextWake()
	if r.st.GetStatus() != workflowpb.Status_STATUS_RUNNING {
		wake = 0
	}
	subs := map[string]bool{}
	for _, p := range r.st.GetPointers() {
		if p.GetState() == workflowpb.PointerState_POINTER_STATE_WAITING_EVENT {
			subs[subName(p.GetEventName(), p.GetEventKey())] = true
		}
	}
	oldDue, oldSubs := r.st.GetDueUnixNano(), r.st.GetSubscriptions()
	var newSubs []string
	for s := range subs {
		newSubs = append(newSubs, s)
	}
	sort.Strings(newSubs)
	r.st.DueUnixNano, r.st.Subscriptions = wake, newSubs
	ok := r.persist(ctx, func(b *kvclient.Batch) {
		// A control request that came during this write (it is merged
		// into the record) is applied by whoever claims the instance:
		// it stays runnable.
		if r.st.GetRequested() != "" {
			b.Put(runKey(r.id), nil)
		} else {
			b.Delete(runKey(r.id))
		}
		if oldDue != 0 && oldDue != wake {
			b.Delete(dueKey(oldDue, r.id))
		}
		if wake != 0 && wake != oldDue {
			b.Put(dueKey(wake, r.id), nil)
		}
		for _, s := range oldSubs {
			if !subs[s] {
				n, k := splitSub(s)
				b.Delete(subKey(n, k, r.id))
			}
		}
		old := map[string]bool{}
		for _, s := range oldSubs {
			old[s] = true
		}
		for _, s := range newSubs {
			if !old[s] {
				n, k := splitSub(s)
				b.Put(subKey(n, k, r.id), nil)
			}
		}
	}, true)
	if !ok {
		r.st.DueUnixNano, r.st.Subscriptions = oldDue, oldSubs
		return false
	}
	if r.st.GetRequested() != "" {
		r.reclaim = true
		return true
	}
	// An event published while we were writing found no subscription:
	// look once more, now that the subscriptions are written.
	if r.st.GetStatus() == workflowpb.Status_STATUS_RUNNING {
		for _, p := range r.st.GetPointers() {
			if p.GetState() != workflowpb.PointerState_POINTER_STATE_WAITING_EVENT {
				continue
			}
			if ev, err := r.e.findEvent(ctx, p.GetEventName(), p.GetEventKey(), p.GetEventAsOf()); err != nil || ev != nil {
				if _, err := r.e.kv.Put(ctx, runKey(r.id), nil); err == nil {
					r.reclaim = true
				}
				break
			}
		}
	}
	return true
}

// finish writes a finished instance and clears its index entries.
func (r *runner) finish(ctx context.Context) bool {
	st := r.st.GetStatus()
	r.dropAll()
	if !r.persist(ctx, endInstance(r.st, r.e.now()), true) {
		return false
	}
	name := statusName(st)
	r.e.m.transition(name)
	r.e.emit(r.st, name, "", 0, 0, r.st.GetError())
	r.e.notifyParent(ctx, r.st)
	return true
}
