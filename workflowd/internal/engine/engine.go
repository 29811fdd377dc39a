package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// Config tunes the engine. Zero fields take the defaults named.
type Config struct {
	// NodeID identifies this workflowd as an owner. Required.
	NodeID uint64
	// LeaseDuration is how long a claim on an instance lasts without
	// renewal; a dead owner's instances are taken over after it. Default
	// 10s.
	LeaseDuration time.Duration
	// PollInterval is how often the runnable and timer indexes are
	// scanned for work (also the precision of parked timers). Default 1s.
	PollInterval time.Duration
	// HoldFor: an instance whose next timer is closer than this stays in
	// memory (leased) instead of being parked. Default 2s.
	HoldFor time.Duration
	// MaxRunning caps the instances this engine runs at once. Default 1024.
	MaxRunning int
	// MaxTasks caps the concurrent typed tasks of one instance. Default 16.
	MaxTasks int
	// HistoryLen is how many step records an instance keeps; 0 means the
	// default 16, negative none.
	HistoryLen int
	// ClockSkew is added to a lease's end before another owner takes it
	// (the cluster's max clock offset). Default 500ms.
	ClockSkew time.Duration
	// Retention is how long a finished instance (completed, terminated,
	// failed, compensated) is kept after its end; then it is deleted with
	// its index entries and idempotency key (a Start with that key makes
	// a new instance). Negative: kept for ever. Default 7 days.
	Retention time.Duration
	// EventRetention is how long a published event is kept after its
	// effective time; a wait reached later no longer finds it. Negative:
	// kept for ever. Default 7 days.
	EventRetention time.Duration
	// PurgeInterval is how often finished instances and old events are
	// looked for. Default 10m.
	PurgeInterval time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseDuration, 10*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.HoldFor, 2*time.Second)
	def(&c.ClockSkew, 500*time.Millisecond)
	def(&c.Retention, 7*24*time.Hour)
	def(&c.EventRetention, 7*24*time.Hour)
	def(&c.PurgeInterval, 10*time.Minute)
	if c.MaxRunning == 0 {
		c.MaxRunning = 1024
	}
	if c.MaxTasks == 0 {
		c.MaxTasks = 16
	}
	if c.HistoryLen == 0 {
		c.HistoryLen = 16
	}
	return c
}

// Deps are the engine's collaborators.
type Deps struct {
	// KV reaches the system keys (kvclient with Config.System). Required.
	KV KV
	// UserKV is what built-in steps use (user keys); nil: none.
	UserKV flow.KV
	// HTTP is the client of built-in HTTP steps; nil: http.DefaultClient
	// with a 30s timeout.
	HTTP *http.Client
	// Logger. Required.
	Logger *slog.Logger
	// Metrics; nil: unregistered.
	Metrics *Metrics
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Documents compiles a stored definition document; nil: document
	// definitions are refused.
	Documents func(doc []byte) (*flow.Def, error)
	// Knobs are test hooks; nil in production.
	Knobs *Knobs
}

// Knobs are test hooks.
type Knobs struct {
	// BeforePersist runs before every write of an owned record (step
	// results, parking, finishing).
	BeforePersist func(id string)
	// BeforeRenew runs before every lease renewal.
	BeforeRenew func(id string)
	// BeforeDropIndex runs when a claim found a stopped instance in the
	// runnable or timer index, before it drops the stale entries.
	BeforeDropIndex func(id string)
}

// Sentinel errors, mapped to bus codes by the server.
var (
	ErrNotFound     = errors.New("workflow: not found")
	ErrInvalid      = errors.New("workflow: invalid argument")
	ErrPrecondition = errors.New("workflow: failed precondition")
	ErrStopped      = errors.New("workflow: engine stopped")
	// ErrDenied refuses what lies outside the caller's key prefixes.
	ErrDenied = errors.New("workflow: permission denied")
)

// Engine runs workflow instances stored in the KV.
type Engine struct {
	cfg     Config
	kv      KV
	userKV  flow.KV
	http    *http.Client
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time
	docs    func([]byte) (*flow.Def, error)
	knobs   Knobs
	session uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		stopped bool
		started bool
		defs    map[string]map[uint32]*flow.Def // Go definitions and loaded documents
		running map[string]*runner
		// skip holds instances found owned by another workflowd, until
		// their lease ends.
		skip map[string]time.Time
		subs map[*Subscription]struct{}
		// latest caches the latest stored version of each document
		// definition (see definition).
		latest map[string]latestDef
	}
}

type latestDef struct {
	version uint32
	at      time.Time
}

// New returns an unstarted engine.
func New(cfg Config, deps Deps) (*Engine, error) {
	if cfg.NodeID == 0 {
		return nil, errors.New("engine: NodeID is required")
	}
	if deps.KV == nil || deps.Logger == nil {
		return nil, errors.New("engine: Deps.KV and Logger are required")
	}
	cfg = cfg.withDefaults()
	e := &Engine{cfg: cfg, kv: deps.KV, userKV: deps.UserKV, http: deps.HTTP, log: deps.Logger, m: deps.Metrics,
		now: deps.Now, docs: deps.Documents, session: mrand.Uint64() | 1}
	if e.now == nil {
		e.now = time.Now
	}
	if e.http == nil {
		e.http = &http.Client{Timeout: 30 * time.Second}
	}
	if e.m == nil {
		e.m = NewMetrics(nil)
	}
	if deps.Knobs != nil {
		e.knobs = *deps.Knobs
	}
	e.mu.defs = make(map[string]map[uint32]*flow.Def)
	e.mu.running = make(map[string]*runner)
	e.mu.skip = make(map[string]time.Time)
	e.mu.subs = make(map[*Subscription]struct{})
	e.mu.latest = make(map[string]latestDef)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Register adds a Go definition. Registering the same id and version
// twice fails.
func (e *Engine) Register(d *flow.Def) error {
	if err := d.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	vs := e.mu.defs[d.ID]
	if vs == nil {
		vs = make(map[uint32]*flow.Def)
		e.mu.defs[d.ID] = vs
	}
	if _, ok := vs[d.Version]; ok {
		return fmt.Errorf("engine: definition %q v%d already registered", d.ID, d.Version)
	}
	vs[d.Version] = d
	return nil
}

// StartWorkers starts the pollers of the runnable and timer indexes and
// the purger of finished instances and old events.
func (e *Engine) StartWorkers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.started || e.mu.stopped {
		return
	}
	e.mu.started = true
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.pollLoop()
	}()
	go func() {
		defer e.wg.Done()
		e.purgeLoop()
	}()
}

// Stop stops the pollers and every runner (each releases its instance so
// another workflowd takes it at once), and waits for them until ctx ends.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	e.mu.stopped = true
	for s := range e.mu.subs {
		s.closeLocked()
	}
	e.mu.Unlock()
	e.cancel()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("engine: stop: %w", ctx.Err())
	}
}

// Running returns how many instances this engine runs now.
func (e *Engine) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.mu.running)
}

// definition resolves id and version (0: latest) among Go definitions
// and stored documents.
func (e *Engine) definition(ctx context.Context, id string, version uint32) (*flow.Def, error) {
	e.mu.Lock()
	vs := e.mu.defs[id]
	var best *flow.Def
	if version != 0 {
		best = vs[version]
	} else {
		for _, d := range vs {
			if best == nil || d.Version > best.Version {
				best = d
			}
		}
	}
	if version == 0 && e.docs != nil {
		// The latest stored document version, as last looked up: another
		// workflowd's new version is seen within a PollInterval.
		if l, ok := e.mu.latest[id]; ok && e.now().Sub(l.at) < e.cfg.PollInterval {
			if d := vs[l.version]; d != nil && (best == nil || d.Version >= best.Version) {
				best = d
				e.mu.Unlock()
				return best, nil
			}
		}
	}
	e.mu.Unlock()
	if best != nil && (version != 0 || best.Source == "go") {
		if version != 0 || e.docs == nil {
			return best, nil
		}
	}
	if e.docs == nil {
		if best != nil {
			return best, nil
		}
		return nil, fmt.Errorf("%w: definition %q version %d", ErrNotFound, id, version)
	}
	// Documents: the stored versions (the latest may be newer than any
	// loaded one).
	var rec *workflowpb.DefinitionRecord
	if version != 0 {
		v, ok, err := e.kv.Get(ctx, defKey(id, version))
		if err != nil {
			return nil, err
		}
		if ok {
			rec = &workflowpb.DefinitionRecord{}
			if err := proto.Unmarshal(v.Value, rec); err != nil {
				return nil, fmt.Errorf("definition %q v%d: %w", id, version, err)
			}
		}
	} else {
		s, end := span(defPrefix(id))
		kvs, err := e.kv.Scan(ctx, s, end, kvclient.ScanOptions{Limit: 1, Reverse: true}).Collect()
		if err != nil {
			return nil, err
		}
		if len(kvs) == 1 {
			rec = &workflowpb.DefinitionRecord{}
			if err := proto.Unmarshal(kvs[0].Value, rec); err != nil {
				return nil, fmt.Errorf("definition %q: %w", id, err)
			}
		}
	}
	if rec == nil {
		if best != nil {
			return best, nil
		}
		if version == 0 {
			return nil, fmt.Errorf("%w: definition %q", ErrNotFound, id)
		}
		return nil, fmt.Errorf("%w: definition %q version %d", ErrNotFound, id, version)
	}
	if best != nil && best.Version >= rec.GetVersion() {
		if version == 0 {
			e.mu.Lock()
			e.mu.latest[id] = latestDef{version: best.Version, at: e.now()}
			e.mu.Unlock()
		}
		return best, nil
	}
	d, err := e.docs(rec.GetDocument())
	if err != nil {
		return nil, fmt.Errorf("stored definition %q v%d: %w", id, rec.GetVersion(), err)
	}
	d.KeyPrefixes = rec.GetKeyPrefixes()
	e.mu.Lock()
	if version == 0 {
		e.mu.latest[id] = latestDef{version: d.Version, at: e.now()}
	}
	vs = e.mu.defs[id]
	if vs == nil {
		vs = make(map[uint32]*flow.Def)
		e.mu.defs[id] = vs
	}
	if cur, ok := vs[d.Version]; ok {
		d = cur
	} else {
		vs[d.Version] = d
	}
	e.mu.Unlock()
	return d, nil
}

// Define compiles and stores a definition document. The same document
// stored again is a no-op (unchanged); a different one under a stored id
// and version is refused (versions are immutable). prefixes are the
// definer's key prefixes (none: no limit): the definition's id must lie
// under one of them, and they limit what its steps touch (flow.Def's
// KeyPrefixes).
func (e *Engine) Define(ctx context.Context, doc []byte, prefixes [][]byte) (*flow.Def, bool, error) {
	if e.docs == nil {
		return nil, false, fmt.Errorf("%w: this workflowd takes no definition documents", ErrInvalid)
	}
	d, err := e.docs(doc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d.KeyPrefixes = prefixes
	if !d.Allows([]byte(d.ID)) {
		return nil, false, fmt.Errorf("%w: definition id %q is outside the certificate's key prefixes", ErrDenied, d.ID)
	}
	e.mu.Lock()
	goDef := e.mu.defs[d.ID][d.Version]
	e.mu.Unlock()
	if goDef != nil && goDef.Source == "go" {
		return nil, false, fmt.Errorf("%w: definition %q v%d is built into workflowd", ErrPrecondition, d.ID, d.Version)
	}
	rec := &workflowpb.DefinitionRecord{Id: d.ID, Version: d.Version, Document: doc, DefinedUnixNano: e.now().UnixNano(), KeyPrefixes: prefixes}
	b, err := proto.Marshal(rec)
	if err != nil {
		return nil, false, err
	}
	k := defKey(d.ID, d.Version)
	res, err := e.kv.CompareAndSwap(ctx, kvclient.CAS{Key: k, ExpectAbsent: true, NewValue: b})
	if err != nil {
		return nil, false, err
	}
	if !res.Succeeded {
		old := &workflowpb.DefinitionRecord{}
		if err := proto.Unmarshal(res.Current.Value, old); err == nil && bytes.Equal(old.GetDocument(), doc) {
			return d, true, nil
		}
		return nil, false, fmt.Errorf("%w: definition %q v%d is already stored with another document (bump the version)", ErrPrecondition, d.ID, d.Version)
	}
	// Known here at once: a Start right after uses it.
	e.mu.Lock()
	if e.mu.defs[d.ID] == nil {
		e.mu.defs[d.ID] = make(map[uint32]*flow.Def)
	}
	if _, ok := e.mu.defs[d.ID][d.Version]; !ok {
		e.mu.defs[d.ID][d.Version] = d
	}
	if l, ok := e.mu.latest[d.ID]; !ok || l.version <= d.Version {
		e.mu.latest[d.ID] = latestDef{version: d.Version, at: e.now()}
	}
	e.mu.Unlock()
	return d, false, nil
}

// Definitions lists the Go definitions and the stored documents.
func (e *Engine) Definitions(ctx context.Context) ([]*workflowpb.DefinitionInfo, error) {
	seen := map[string]bool{}
	var out []*workflowpb.DefinitionInfo
	e.mu.Lock()
	for _, vs := range e.mu.defs {
		for _, d := range vs {
			if d.Source == "go" {
				out = append(out, info(d))
				seen[fmt.Sprintf("%s/%d", d.ID, d.Version)] = true
			}
		}
	}
	e.mu.Unlock()
	s, end := span(key(nsDef))
	it := e.kv.Scan(ctx, s, end, kvclient.ScanOptions{})
	for it.Next() {
		rec := &workflowpb.DefinitionRecord{}
		if err := proto.Unmarshal(it.KV().Value, rec); err != nil {
			continue
		}
		if seen[fmt.Sprintf("%s/%d", rec.GetId(), rec.GetVersion())] {
			continue
		}
		i := &workflowpb.DefinitionInfo{Id: rec.GetId(), Version: rec.GetVersion(), Source: "document"}
		if e.docs != nil {
			if d, err := e.docs(rec.GetDocument()); err == nil {
				i = info(d)
			}
		}
		out = append(out, i)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetId() != out[j].GetId() {
			return out[i].GetId() < out[j].GetId()
		}
		return out[i].GetVersion() < out[j].GetVersion()
	})
	return out, nil
}

func info(d *flow.Def) *workflowpb.DefinitionInfo {
	return &workflowpb.DefinitionInfo{Id: d.ID, Version: d.Version, Source: d.Source, Description: d.Description, Steps: uint32(len(d.Steps) - 1)}
}

// newID returns a time-ordered instance id: 16 hex digits of unix nanos
// and 8 random ones.
func (e *Engine) newID() string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(e.now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// StartOptions are Start's optional inputs.
type StartOptions struct {
	Version        uint32
	Data           []byte
	IdempotencyKey string
	// ParentID and ParentPointer mark a sub-workflow.
	ParentID      string
	ParentPointer uint32
}

// Start creates an instance of definition def and runs it here when this
// engine has room. It returns the instance id and whether the
// idempotency key named an existing instance.
func (e *Engine) Start(ctx context.Context, defID string, o StartOptions) (string, uint32, bool, error) {
	if defID == "" {
		return "", 0, false, fmt.Errorf("%w: no definition", ErrInvalid)
	}
	d, err := e.definition(ctx, defID, o.Version)
	if err != nil {
		return "", 0, false, err
	}
	data := o.Data
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	if t := bytes.TrimSpace(data); t[0] != '{' {
		return "", 0, false, fmt.Errorf("%w: data must be a JSON object", ErrInvalid)
	}
	v, err := d.Codec.Decode(data)
	if err != nil {
		return "", 0, false, fmt.Errorf("%w: data does not fit definition %q: %w", ErrInvalid, d.ID, err)
	}
	if data, err = d.Codec.Encode(v); err != nil {
		return "", 0, false, fmt.Errorf("%w: data: %w", ErrInvalid, err)
	}
	now := e.now()
	id := e.newID()
	rec := &workflowpb.InstanceRecord{
		Id: id, Definition: d.ID, Version: d.Version, Status: workflowpb.Status_STATUS_RUNNING, Data: data,
		NextPointer: 3, Revision: 1, CreatedUnixNano: now.UnixNano(), UpdatedUnixNano: now.UnixNano(),
		IdempotencyKey: o.IdempotencyKey, ParentId: o.ParentID, ParentPointer: o.ParentPointer,
		// The root saga already runs its body: the first step is pending.
		Pointers: []*workflowpb.Pointer{
			{Id: 1, Step: uint32(d.Root), State: workflowpb.PointerState_POINTER_STATE_WAITING_CHILDREN, ActiveChildren: 1, StartedUnixNano: now.UnixNano()},
			{Id: 2, Step: uint32(d.Steps[d.Root].Branches[0]), Parent: 1, StartedUnixNano: now.UnixNano()},
		},
	}
	local := e.reserve(id)
	if local {
		rec.Owner, rec.OwnerSession, rec.Epoch = e.cfg.NodeID, e.session, 1
		rec.LeaseUnixNano = now.Add(e.cfg.LeaseDuration).UnixNano()
	}
	raw, err := proto.Marshal(rec)
	if err != nil {
		e.unreserve(id)
		return "", 0, false, err
	}
	b := kvclient.NewBatch()
	if o.IdempotencyKey != "" {
		b.CompareAndSwap(kvclient.CAS{Key: idemKey(o.IdempotencyKey), ExpectAbsent: true, NewValue: []byte(id)})
	}
	writeRecord(b, id, 0, raw, rec.GetRevision()).
		Put(runKey(id), nil).
		Put(listKey(rec.Status, id), summary(rec))
	res, err := e.kv.Batch(ctx, b)
	if err != nil {
		// The batch may have applied with its answer lost: look.
		if cur, found, gerr := e.kv.Get(ctx, instanceKey(id)); gerr == nil && casApplied(cur, found, raw) {
			err, res.Succeeded = nil, true
		} else {
			e.unreserve(id)
			return "", 0, false, fmt.Errorf("start: %w", err)
		}
	}
	if !res.Succeeded {
		e.unreserve(id)
		if o.IdempotencyKey == "" {
			return "", 0, false, fmt.Errorf("start: instance id %s collided", id)
		}
		cur, found, err := e.kv.Get(ctx, idemKey(o.IdempotencyKey))
		if err != nil || !found {
			return "", 0, false, fmt.Errorf("start: idempotency key %q: %v", o.IdempotencyKey, err)
		}
		existing := string(cur.Value)
		ver := uint32(0)
		if r, _, err := e.load(ctx, existing); err == nil {
			ver = r.GetVersion()
		}
		return existing, ver, true, nil
	}
	e.m.started.Inc()
	e.emit(rec, "started", "", 0, 0, "")
	if local {
		e.launch(rec, raw, d, false)
	}
	return id, d.Version, false, nil
}

func summary(rec *workflowpb.InstanceRecord) []byte {
	b, _ := proto.Marshal(&workflowpb.InstanceSummary{Id: rec.GetId(), Definition: rec.GetDefinition(), Version: rec.GetVersion(),
		Status: rec.GetStatus(), CreatedUnixNano: rec.GetCreatedUnixNano(), EndedUnixNano: rec.GetEndedUnixNano()})
	return b
}

// reserve claims a local runner slot for id.
func (e *Engine) reserve(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.stopped || len(e.mu.running) >= e.cfg.MaxRunning {
		return false
	}
	if _, ok := e.mu.running[id]; ok {
		return false
	}
	e.mu.running[id] = nil
	return true
}

func (e *Engine) unreserve(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.mu.running[id]; ok && r == nil {
		delete(e.mu.running, id)
	}
}

// load reads an instance record and its bytes.
func (e *Engine) load(ctx context.Context, id string) (*workflowpb.InstanceRecord, []byte, error) {
	v, found, err := e.kv.Get(ctx, instanceKey(id))
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, nil, fmt.Errorf("%w: instance %q", ErrNotFound, id)
	}
	rec, err := decodeRecord(v.Value)
	if err != nil {
		return nil, nil, err
	}
	return rec, v.Value, nil
}

// Get returns an instance's record.
func (e *Engine) Get(ctx context.Context, id string) (*workflowpb.InstanceRecord, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: no instance id", ErrInvalid)
	}
	rec, _, err := e.load(ctx, id)
	return rec, err
}

// ListFilter selects instances.
type ListFilter struct {
	Status               workflowpb.Status
	Definition           string
	CreatedAfter, Before int64
	Limit                int
	PageToken            string
}

var listOrder = []workflowpb.Status{workflowpb.Status_STATUS_RUNNING, workflowpb.Status_STATUS_SUSPENDED, workflowpb.Status_STATUS_COMPLETED,
	workflowpb.Status_STATUS_TERMINATED, workflowpb.Status_STATUS_FAILED, workflowpb.Status_STATUS_COMPENSATED}

// List pages through the list index: by status (in listOrder when none
// is asked), then by id (creation time). Every scan of a call, one per
// status, reads at one snapshot (snapshot), so the page is the index as
// it was at one moment: an instance whose status changes during the call
// is listed once, under its status at that moment. The next page's token
// carries that snapshot's timestamp, so the pages of one listing are one
// snapshot too: an instance is on exactly one of them, however its status
// changes in between (its status then is the one shown, however old). A
// token older than the KV's version retention window (a few hours) is
// refused with ErrPrecondition: list again from the first page. A token
// without a timestamp (made by an older workflowd) pages on from a new
// snapshot.
func (e *Engine) List(ctx context.Context, f ListFilter) ([]*workflowpb.InstanceSummary, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	statuses := listOrder
	if f.Status != workflowpb.Status_STATUS_UNSPECIFIED {
		if _, ok := workflowpb.Status_name[int32(f.Status)]; !ok {
			return nil, "", fmt.Errorf("%w: status %d", ErrInvalid, f.Status)
		}
		statuses = []workflowpb.Status{f.Status}
	}
	var (
		resume []byte
		at     hlc.Timestamp
	)
	if f.PageToken != "" {
		k, ts, err := parsePageToken(f.PageToken)
		if err != nil {
			return nil, "", err
		}
		resume, at = key(nsList, k), ts
	}
	if at.IsZero() {
		var err error
		if at, err = e.snapshot(ctx); err != nil {
			return nil, "", err
		}
	}
	var out []*workflowpb.InstanceSummary
	for _, st := range statuses {
		start, end := span(key(nsList, []byte{byte(st), '/'}))
		if f.CreatedAfter > 0 {
			if s := key(nsList, []byte{byte(st), '/'}, []byte(fmt.Sprintf("%016x", f.CreatedAfter))); bytes.Compare(s, start) > 0 {
				start = s
			}
		}
		if f.Before > 0 {
			if e2 := key(nsList, []byte{byte(st), '/'}, []byte(fmt.Sprintf("%016x", f.Before))); bytes.Compare(e2, end) < 0 {
				end = e2
			}
		}
		if resume != nil {
			if bytes.Compare(resume, end) >= 0 {
				continue
			}
			if bytes.Compare(resume, start) > 0 {
				start = resume
			}
		}
		it := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{PageSize: f.Limit + 1, ReadAt: at})
		for it.Next() {
			kv := it.KV()
			if len(out) == f.Limit {
				return out, pageToken(kv.Key[len(key(nsList)):], at), nil
			}
			s := &workflowpb.InstanceSummary{}
			if err := proto.Unmarshal(kv.Value, s); err != nil {
				continue
			}
			if f.Definition != "" && s.GetDefinition() != f.Definition {
				continue
			}
			out = append(out, s)
		}
		if err := it.Err(); err != nil {
			if kvclient.IsCompacted(err) && f.PageToken != "" {
				return nil, "", fmt.Errorf("%w: page token expired (its snapshot is older than the KV's version retention); list again from the first page: %w", ErrPrecondition, err)
			}
			return nil, "", err
		}
	}
	return out, "", nil
}

// pageToken is List's next page token: the list key (after "ls/") to go
// on from, in hex, and "@" the snapshot's timestamp (hlc bytes, hex).
func pageToken(k []byte, at hlc.Timestamp) string {
	return hex.EncodeToString(k) + "@" + hex.EncodeToString(at.AppendBytes(nil))
}

// maxTokenAhead is how far ahead of this host's clock a page token's
// timestamp may be: above any clock offset the cluster tolerates.
const maxTokenAhead = time.Minute

// parsePageToken decodes a pageToken; at is zero for a token without one.
func parsePageToken(tok string) (k []byte, at hlc.Timestamp, err error) {
	ks, ats, hasAt := strings.Cut(tok, "@")
	k, err = hex.DecodeString(ks)
	if err != nil || len(k) < 2 {
		return nil, hlc.Timestamp{}, fmt.Errorf("%w: bad page token", ErrInvalid)
	}
	if hasAt {
		b, err := hex.DecodeString(ats)
		if err == nil {
			at, err = hlc.DecodeBytes(b)
		}
		if err != nil || at.IsZero() {
			return nil, hlc.Timestamp{}, fmt.Errorf("%w: bad page token", ErrInvalid)
		}
		// A token is made from a write's timestamp: one far ahead of this
		// host's clock was not made here, and a read at it would not be
		// one snapshot (writes still to come would land below it).
		if time.Unix(0, at.WallTime).After(time.Now().Add(maxTokenAhead)) {
			return nil, hlc.Timestamp{}, fmt.Errorf("%w: bad page token (its timestamp is in the future)", ErrInvalid)
		}
	}
	return k, at, nil
}

// snapshot returns a timestamp to read the list index at, as it is now:
// that of a write of the snapshot key. Every workflow key is in the meta
// range, whose writes apply in log order at rising timestamps (each above
// every earlier one), so every write acknowledged before this one is at
// or below it and every later one above it: reads at it see exactly the
// state after this write, however long after it they run (within the
// version retention window). A timestamp from a clock would not do: a
// write in flight, or from a leader whose clock is behind, may still
// land below it, and one read at it before that write and one after
// would then disagree. The cost is one small write per List (first page)
// and Counts call.
func (e *Engine) snapshot(ctx context.Context) (hlc.Timestamp, error) {
	ts, err := e.kv.Put(ctx, key(nsSnap), binary.BigEndian.AppendUint64(nil, e.cfg.NodeID))
	if err != nil {
		return hlc.Timestamp{}, fmt.Errorf("list snapshot: %w", err)
	}
	return ts, nil
}

// Counts returns the number of instances by status (a keys-only scan of
// the list index), all read at one snapshot (see List): each instance is
// counted once, under its status at that moment.
func (e *Engine) Counts(ctx context.Context) (map[workflowpb.Status]int, error) {
	at, err := e.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	out := map[workflowpb.Status]int{}
	for _, st := range listOrder {
		start, end := span(key(nsList, []byte{byte(st), '/'}))
		it := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{KeysOnly: true, PageSize: 1000, ReadAt: at})
		for it.Next() {
			out[st]++
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func terminal(s workflowpb.Status) bool {
	switch s {
	case workflowpb.Status_STATUS_COMPLETED, workflowpb.Status_STATUS_TERMINATED, workflowpb.Status_STATUS_FAILED, workflowpb.Status_STATUS_COMPENSATED:
		return true
	}
	return false
}

// owned reports whether a live owner holds rec's lease.
func (e *Engine) owned(rec *workflowpb.InstanceRecord, now time.Time) bool {
	return rec.GetOwner() != 0 && now.UnixNano() < rec.GetLeaseUnixNano()+e.cfg.ClockSkew.Nanoseconds()
}

// Control applies suspend, resume or terminate. A parked instance changes
// at once; an owned one gets the request, which its owner applies.
func (e *Engine) Control(ctx context.Context, id, op, reason string) (workflowpb.Status, error) {
	for attempt := 0; ; attempt++ {
		rec, _, err := e.load(ctx, id)
		if err != nil {
			return 0, err
		}
		st := rec.GetStatus()
		switch op {
		case "suspend":
			if st != workflowpb.Status_STATUS_RUNNING {
				return st, fmt.Errorf("%w: instance %s is %s, not running", ErrPrecondition, id, statusName(st))
			}
		case "resume":
			if st != workflowpb.Status_STATUS_SUSPENDED {
				return st, fmt.Errorf("%w: instance %s is %s, not suspended", ErrPrecondition, id, statusName(st))
			}
		case "terminate":
			if terminal(st) {
				return st, fmt.Errorf("%w: instance %s has already finished (%s)", ErrPrecondition, id, statusName(st))
			}
		default:
			return st, fmt.Errorf("%w: unknown operation %q", ErrInvalid, op)
		}
		nu := proto.Clone(rec).(*workflowpb.InstanceRecord)
		nu.Revision++
		nu.UpdatedUnixNano = e.now().UnixNano()
		b := kvclient.NewBatch()
		var newStatus workflowpb.Status
		if e.owned(rec, e.now()) {
			nu.Requested, nu.RequestedReason = op, reason
			newStatus = st
		} else {
			switch op {
			case "suspend":
				nu.Status = workflowpb.Status_STATUS_SUSPENDED
				b.Delete(runKey(id))
				if rec.GetDueUnixNano() != 0 {
					b.Delete(dueKey(rec.GetDueUnixNano(), id))
					nu.DueUnixNano = 0
				}
			case "resume":
				nu.Status = workflowpb.Status_STATUS_RUNNING
				nu.Error = ""
				b.Put(runKey(id), nil)
			case "terminate":
				nu.Status = workflowpb.Status_STATUS_TERMINATED
				nu.Error = reason
				endInstance(nu, e.now())(b)
			}
			nu.Owner, nu.OwnerSession, nu.LeaseUnixNano = 0, 0, 0
			if nu.Status != st {
				b.Delete(listKey(st, id)).Put(listKey(nu.Status, id), summary(nu))
			}
			newStatus = nu.Status
		}
		nraw, err := proto.Marshal(nu)
		if err != nil {
			return 0, err
		}
		writeRecord(b, id, rec.GetRevision(), nraw, nu.GetRevision())
		res, err := e.kv.Batch(ctx, b)
		if err == nil && res.Succeeded {
			if newStatus != st {
				e.afterControl(ctx, nu, op)
			} else {
				e.kick(id)
			}
			return newStatus, nil
		}
		if err != nil {
			if cur, found, gerr := e.kv.Get(ctx, instanceKey(id)); gerr == nil && casApplied(cur, found, nraw) {
				if newStatus != st {
					e.afterControl(ctx, nu, op)
				}
				return newStatus, nil
			}
			if attempt >= 5 {
				return 0, err
			}
		}
		if attempt >= 20 {
			return 0, fmt.Errorf("control %s of %s: the instance keeps changing", op, id)
		}
	}
}

func statusName(s workflowpb.Status) string {
	n := workflowpb.Status_name[int32(s)]
	if len(n) > len("STATUS_") {
		n = n[len("STATUS_"):]
	}
	return bytesToLower(n)
}

func bytesToLower(s string) string { return string(bytes.ToLower([]byte(s))) }

// afterControl emits events and wakes what a parked control change needs.
func (e *Engine) afterControl(ctx context.Context, rec *workflowpb.InstanceRecord, op string) {
	switch op {
	case "suspend":
		e.m.transition("suspended")
		e.emit(rec, "suspended", "", 0, 0, "")
	case "resume":
		e.m.transition("resumed")
		e.emit(rec, "resumed", "", 0, 0, "")
		e.tryClaim(ctx, rec.GetId())
	case "terminate":
		e.m.transition("terminated")
		e.emit(rec, "terminated", "", 0, 0, rec.GetError())
		e.notifyParent(ctx, rec)
	}
}

// endInstance clears a finished instance's pointers and index fields and
// returns what deletes its index entries.
func endInstance(rec *workflowpb.InstanceRecord, now time.Time) func(*kvclient.Batch) {
	id := rec.GetId()
	dels := [][]byte{runKey(id)}
	if rec.GetDueUnixNano() != 0 {
		dels = append(dels, dueKey(rec.GetDueUnixNano(), id))
	}
	for _, s := range rec.GetSubscriptions() {
		n, k := splitSub(s)
		dels = append(dels, subKey(n, k, id))
	}
	rec.DueUnixNano, rec.Subscriptions, rec.Pointers = 0, nil, nil
	rec.EndedUnixNano = now.UnixNano()
	rec.Requested, rec.RequestedReason = "", ""
	return func(b *kvclient.Batch) {
		for _, k := range dels {
			b.Delete(k)
		}
	}
}

// doneEvent is the internal event a finished child instance publishes
// for its parent's SubWorkflow step (key: the child's id).
const doneEvent = "wf.done"

// notifyParent tells a sub-workflow's parent that it finished.
func (e *Engine) notifyParent(ctx context.Context, rec *workflowpb.InstanceRecord) {
	if rec.GetParentId() == "" {
		return
	}
	b, _ := proto.Marshal(&workflowpb.Instance{Id: rec.GetId(), Status: rec.GetStatus(), Data: rec.GetData(), Error: rec.GetError()})
	if _, _, err := e.PublishEvent(ctx, doneEvent, rec.GetId(), b, time.Unix(0, rec.GetCreatedUnixNano()), ""); err != nil {
		// The parent's wait finds the child finished when it next looks.
		e.log.Warn("notify parent", slog.String("instance", rec.GetId()), slog.String("parent", rec.GetParentId()), slog.Any("err", err))
	}
}

// PublishEvent stores an event and makes the instances waiting for its
// name and key runnable. With instanceID, the instance must exist and
// not be finished.
func (e *Engine) PublishEvent(ctx context.Context, name, k string, data []byte, at time.Time, instanceID string) (string, int, error) {
	if name == "" || bytes.IndexByte([]byte(name), 0) >= 0 || bytes.IndexByte([]byte(k), 0) >= 0 {
		return "", 0, fmt.Errorf("%w: event name must be non-empty, and name and key free of 0x00", ErrInvalid)
	}
	if instanceID != "" {
		rec, _, err := e.load(ctx, instanceID)
		if err != nil {
			return "", 0, err
		}
		if terminal(rec.GetStatus()) {
			return "", 0, fmt.Errorf("%w: instance %s has finished (%s): it takes no events", ErrPrecondition, instanceID, statusName(rec.GetStatus()))
		}
	}
	if at.IsZero() {
		at = e.now()
	}
	var eid [8]byte
	_, _ = rand.Read(eid[:])
	ev := &workflowpb.EventRecord{Id: hex.EncodeToString(eid[:]), Name: name, Key: k, Data: data, EffectiveUnixNano: at.UnixNano()}
	b, err := proto.Marshal(ev)
	if err != nil {
		return "", 0, err
	}
	if _, err := e.kv.Put(ctx, eventKey(name, k, at.UnixNano(), eid[:]), b); err != nil {
		return "", 0, fmt.Errorf("publish event: %w", err)
	}
	e.m.events.Inc()
	woken, err := e.wakeSubscribers(ctx, name, k)
	return ev.GetId(), woken, err
}

// wakeSubscribers marks the instances subscribed to (name, key) runnable.
func (e *Engine) wakeSubscribers(ctx context.Context, name, k string) (int, error) {
	start, end := span(subPrefix(name, k))
	kvs, err := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{KeysOnly: true}).Collect()
	if err != nil {
		return 0, fmt.Errorf("publish event: subscriptions: %w", err)
	}
	if len(kvs) == 0 {
		return 0, nil
	}
	b := kvclient.NewBatch()
	ids := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		id := idFromKey(kv.Key, start)
		ids = append(ids, id)
		b.Put(runKey(id), nil)
	}
	if _, err := e.kv.Batch(ctx, b); err != nil {
		return 0, fmt.Errorf("publish event: wake: %w", err)
	}
	for _, id := range ids {
		if !e.kick(id) {
			e.tryClaimAsync(id)
		}
	}
	return len(ids), nil
}

// findEvent returns the first event for (name, key) at or after asOf.
func (e *Engine) findEvent(ctx context.Context, name, k string, asOf int64) (*flow.Event, error) {
	p := eventPrefix(name, k)
	start := append(bytes.Clone(p), be64(asOf)...)
	_, end := span(p)
	kvs, err := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{Limit: 1}).Collect()
	if err != nil || len(kvs) == 0 {
		return nil, err
	}
	rec := &workflowpb.EventRecord{}
	if err := proto.Unmarshal(kvs[0].Value, rec); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return &flow.Event{ID: rec.GetId(), Name: rec.GetName(), Key: rec.GetKey(), Data: rec.GetData(), Time: time.Unix(0, rec.GetEffectiveUnixNano())}, nil
}

// kick wakes id's local runner, if any.
func (e *Engine) kick(id string) bool {
	e.mu.Lock()
	r := e.mu.running[id]
	e.mu.Unlock()
	if r == nil {
		return false
	}
	select {
	case r.kickc <- struct{}{}:
	default:
	}
	return true
}

func (e *Engine) tryClaimAsync(id string) {
	e.mu.Lock()
	if e.mu.stopped {
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		e.tryClaim(e.ctx, id)
	}()
}

// tryClaim takes id if it has work and no live owner, and runs it.
func (e *Engine) tryClaim(ctx context.Context, id string) {
	if e.kick(id) {
		return
	}
	e.mu.Lock()
	if until, ok := e.mu.skip[id]; ok && e.now().Before(until) {
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	if !e.reserve(id) {
		return
	}
	launched := false
	defer func() {
		if !launched {
			e.unreserve(id)
		}
	}()
	for attempt := 0; attempt < 3; attempt++ {
		rec, _, err := e.load(ctx, id)
		if errors.Is(err, ErrNotFound) {
			_, _ = e.kv.Delete(ctx, runKey(id))
			return
		}
		if err != nil {
			return
		}
		now := e.now()
		if rec.GetStatus() != workflowpb.Status_STATUS_RUNNING && rec.GetRequested() == "" {
			// Stale index entries of a stopped instance, dropped only if
			// the record is still the one read: a resume written since
			// has put the runnable entry back, and it must stay.
			if e.knobs.BeforeDropIndex != nil {
				e.knobs.BeforeDropIndex(id)
			}
			rev := fenceValue(rec.GetRevision())
			b := kvclient.NewBatch().CompareAndSwap(kvclient.CAS{Key: fenceKey(id), Expected: rev, NewValue: rev}).Delete(runKey(id))
			if rec.GetDueUnixNano() != 0 {
				b.Delete(dueKey(rec.GetDueUnixNano(), id))
			}
			if res, err := e.kv.Batch(ctx, b); err == nil && !res.Succeeded {
				continue // changed meanwhile: look again
			}
			return
		}
		// Our own node's claim is ours to take back: no runner of this
		// engine has it (reserve succeeded), and a previous process of
		// this node is gone (one workflowd per node id).
		mine := rec.GetOwner() == e.cfg.NodeID
		if e.owned(rec, now) && !mine {
			e.mu.Lock()
			e.mu.skip[id] = time.Unix(0, rec.GetLeaseUnixNano()+e.cfg.ClockSkew.Nanoseconds())
			e.mu.Unlock()
			return
		}
		d, err := e.definition(ctx, rec.GetDefinition(), rec.GetVersion())
		if err != nil {
			e.log.Warn("instance of unknown definition", slog.String("instance", id), slog.String("definition", rec.GetDefinition()), slog.Any("err", err))
			e.mu.Lock()
			e.mu.skip[id] = now.Add(10 * e.cfg.PollInterval)
			e.mu.Unlock()
			return
		}
		takeover := rec.GetOwner() != 0 && (rec.GetOwner() != e.cfg.NodeID || rec.GetOwnerSession() != e.session)
		nu := proto.Clone(rec).(*workflowpb.InstanceRecord)
		nu.Owner, nu.OwnerSession = e.cfg.NodeID, e.session
		nu.Epoch++
		nu.Revision++
		nu.LeaseUnixNano = now.Add(e.cfg.LeaseDuration).UnixNano()
		nraw, err := proto.Marshal(nu)
		if err != nil {
			return
		}
		res, err := e.kv.Batch(ctx, writeRecord(kvclient.NewBatch(), id, rec.GetRevision(), nraw, nu.GetRevision()))
		if err != nil {
			cur, found, gerr := e.kv.Get(ctx, instanceKey(id))
			if gerr != nil || !casApplied(cur, found, nraw) {
				return
			}
		} else if !res.Succeeded {
			continue
		}
		if takeover {
			e.m.takeovers.Inc()
			e.log.Info("took over instance", slog.String("instance", id), slog.Uint64("previous_owner", rec.GetOwner()), slog.Uint64("epoch", nu.GetEpoch()))
		}
		launched = true
		e.launch(nu, nraw, d, true)
		return
	}
}

// launch starts the runner of a claimed instance (its slot reserved).
func (e *Engine) launch(rec *workflowpb.InstanceRecord, raw []byte, d *flow.Def, claimed bool) {
	r := newRunner(e, rec, raw, d)
	e.mu.Lock()
	if e.mu.stopped {
		delete(e.mu.running, rec.GetId())
		e.mu.Unlock()
		return
	}
	e.mu.running[rec.GetId()] = r
	delete(e.mu.skip, rec.GetId())
	e.wg.Add(1)
	e.mu.Unlock()
	e.m.owned.Inc()
	go func() {
		defer e.wg.Done()
		defer e.m.owned.Dec()
		r.run(e.ctx)
		e.mu.Lock()
		if e.mu.running[rec.GetId()] == r {
			delete(e.mu.running, rec.GetId())
		}
		e.mu.Unlock()
	}()
}

// pollLoop scans the runnable and timer indexes every PollInterval. It
// exits when the engine stops.
func (e *Engine) pollLoop() {
	t := time.NewTicker(e.cfg.PollInterval)
	defer t.Stop()
	for {
		e.poll(e.ctx)
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Engine) poll(ctx context.Context) {
	var ids []string
	start, end := span(key(nsRun))
	it := e.kv.Scan(ctx, start, end, kvclient.ScanOptions{KeysOnly: true, Limit: e.cfg.MaxRunning})
	for it.Next() {
		ids = append(ids, idFromKey(it.KV().Key, start))
	}
	if it.Err() != nil {
		return
	}
	dstart, _ := span(key(nsDue))
	dend := key(nsDue, be64(e.now().UnixNano()+1))
	it = e.kv.Scan(ctx, dstart, dend, kvclient.ScanOptions{KeysOnly: true, Limit: e.cfg.MaxRunning})
	for it.Next() {
		ids = append(ids, idFromKey(it.KV().Key, dstart)[8:])
	}
	if it.Err() != nil {
		return
	}
	// Spread the claims of several workflowds over the list.
	mrand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	now := e.now()
	e.mu.Lock()
	for id, until := range e.mu.skip {
		if now.After(until) {
			delete(e.mu.skip, id)
		}
	}
	e.mu.Unlock()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		if e.kick(id) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e.tryClaim(ctx, id)
		}()
	}
	wg.Wait()
}

// ActiveSteps names the steps rec's pointers are at (pending, sleeping or
// waiting), as "step" or "step (waiting)".
func (e *Engine) ActiveSteps(ctx context.Context, rec *workflowpb.InstanceRecord) []string {
	d, _ := e.definition(ctx, rec.GetDefinition(), rec.GetVersion())
	var out []string
	for _, p := range rec.GetPointers() {
		name := fmt.Sprintf("step %d", p.GetStep())
		if d != nil && int(p.GetStep()) < len(d.Steps) {
			s := d.Steps[p.GetStep()]
			if s.Kind.Container() {
				continue
			}
			name = s.Name
		}
		switch p.GetState() {
		case workflowpb.PointerState_POINTER_STATE_SLEEPING:
			name += " (sleeping)"
		case workflowpb.PointerState_POINTER_STATE_WAITING_EVENT:
			name += " (waiting)"
		}
		out = append(out, name)
	}
	return out
}
