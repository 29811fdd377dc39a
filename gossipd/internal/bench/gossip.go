// Package bench is the membership benchmark of gossipd-bench (`pleiades
// bench gossip` runs it): the same scenario run by gossipd's SWIM +
// Lifeguard engine (package swim, the code the daemon runs) and by
// hashicorp/memberlist, N members each, in this process, over one
// in-memory datagram network (with reliable streams) in real time that
// injects the same loss, crashes and stalls into both.
//
// Scenario, per implementation: start N members and join them to the
// first; measure idle bytes per member per second; Runs times change one
// member's metadata and time until every member has it; run FaultTime
// under Loss datagram loss while a random member stalls (receives and
// sends nothing) for StallFor every StallEvery, counting suspicions and
// dead declarations about members that never failed; then Runs times
// crash a fresh member and time until every live member declares it
// dead.
//
// Both sides run the same protocol timers (Options.Protocol, mapped onto
// memberlist.Config), and memberlist's acks carry a payload of the size of
// gossipd's Vivaldi coordinate, as Serf's coordinates do. Bytes are protocol payload as handed to the network
// (datagrams plus stream bytes); gossipd over QUIC adds per-datagram
// framing not counted here (see gossipd/BENCHMARKS.md).
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
)

// Options configure a run.
type Options struct {
	// Nodes is the cluster size. Default 32.
	Nodes int
	// Runs is the number of detection and dissemination trials. Default 5.
	Runs int
	// Protocol holds the timers both implementations use. Default
	// swim.DefaultLANConfig() (memberlist's LAN profile).
	Protocol swim.Config
	// Idle is the window for idle bandwidth. Default 30 s (one push-pull
	// interval).
	Idle time.Duration
	// FaultTime is the length of the loss-and-stall phase. Default 60 s.
	FaultTime time.Duration
	// Loss is the datagram loss of the fault phase. Default 0.05.
	Loss float64
	// StallFor and StallEvery: one random member stalls for StallFor every
	// StallEvery during the fault phase. Defaults 2 s and 5 s.
	StallFor, StallEvery time.Duration
	// Impls lists the implementations to run: "gossipd", "memberlist".
	// Default both.
	Impls []string
	// Seed makes member choices repeatable. Default 1.
	Seed uint64
	// Progress, if set, receives a line per phase.
	Progress func(string)
}

// Defaults of the duration options.
const (
	DefaultIdle       = 30 * time.Second
	DefaultFaultTime  = 60 * time.Second
	DefaultStallFor   = 2 * time.Second
	DefaultStallEvery = 5 * time.Second
)

// Check fills in defaults and reports the first invalid option.
func (o *Options) Check() error { return o.defaults() }

func (o *Options) defaults() error {
	if o.Nodes == 0 {
		o.Nodes = 32
	}
	if o.Runs == 0 {
		o.Runs = 5
	}
	if o.Protocol == (swim.Config{}) {
		o.Protocol = swim.DefaultLANConfig()
	}
	if o.Idle == 0 {
		o.Idle = DefaultIdle
	}
	if o.FaultTime == 0 {
		o.FaultTime = DefaultFaultTime
	}
	if o.StallFor == 0 {
		o.StallFor = DefaultStallFor
	}
	if o.StallEvery == 0 {
		o.StallEvery = DefaultStallEvery
	}
	if len(o.Impls) == 0 {
		o.Impls = []string{"gossipd", "memberlist"}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	switch {
	case o.Nodes < 3:
		return fmt.Errorf("bench gossip: nodes %d: want at least 3", o.Nodes)
	case o.Runs < 1 || o.Runs > o.Nodes-2:
		return fmt.Errorf("bench gossip: runs %d: want 1 to nodes-2 (%d), each detection trial kills a member", o.Runs, o.Nodes-2)
	case o.Loss < 0 || o.Loss >= 1:
		return fmt.Errorf("bench gossip: loss %v: want 0 <= loss < 1", o.Loss)
	case o.Idle < 0 || o.FaultTime < 0 || o.StallFor < 0 || o.StallEvery <= 0:
		return errors.New("bench gossip: durations must not be negative, stall-every must be positive")
	}
	for _, im := range o.Impls {
		if im != "gossipd" && im != "memberlist" {
			return fmt.Errorf("bench gossip: unknown implementation %q (want gossipd or memberlist)", im)
		}
	}
	return o.Protocol.Validate()
}

// Stats summarise trial durations, in milliseconds.
type Stats struct {
	Trials   int     `json:"trials"`
	Missed   int     `json:"missed"` // trials that did not complete within the limit
	MedianMS float64 `json:"median_ms"`
	P99MS    float64 `json:"p99_ms"`
	MaxMS    float64 `json:"max_ms"`
}

func summarize(ds []time.Duration, missed int) Stats {
	s := Stats{Trials: len(ds) + missed, Missed: missed}
	if len(ds) == 0 {
		return s
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(p*float64(len(ds)) + 0.5)
		i = min(max(i-1, 0), len(ds)-1)
		return float64(ds[i]) / 1e6
	}
	s.MedianMS = float64(ds[(len(ds)-1)/2]+ds[len(ds)/2]) / 2e6
	s.P99MS = q(0.99)
	s.MaxMS = float64(ds[len(ds)-1]) / 1e6
	return s
}

// Figures are one implementation's results.
type Figures struct {
	Impl string `json:"impl"`
	// JoinMS is the time until every member saw every member alive.
	JoinMS float64 `json:"join_ms"`
	// DetectFirst and DetectAll: crash until the first / the last live
	// member declares the crashed member dead.
	DetectFirst Stats `json:"detect_first"`
	DetectAll   Stats `json:"detect_all"`
	// Dissemination: metadata change until every live member has it.
	Dissemination Stats `json:"dissemination"`
	// FalseSuspicions counts suspicion episodes (distinct member and
	// incarnation) about members that never crashed, in the fault phase;
	// FalseDeaths counts dead declarations about them (one per observer).
	FalseSuspicions int `json:"false_suspicions"`
	FalseDeaths     int `json:"false_deaths"`
	// Stalls is the number of stalls injected in the fault phase.
	Stalls int `json:"stalls"`
	// IdleBytesPerNodeSec and FaultBytesPerNodeSec: bytes sent per member
	// per second, idle and during the fault phase.
	IdleBytesPerNodeSec  float64 `json:"idle_bytes_per_node_sec"`
	FaultBytesPerNodeSec float64 `json:"fault_bytes_per_node_sec"`
	// IdlePacketsPerNodeSec is datagrams sent per member per second, idle.
	IdlePacketsPerNodeSec float64 `json:"idle_packets_per_node_sec"`
}

// Result is the whole run.
type Result struct {
	Nodes      int       `json:"nodes"`
	Runs       int       `json:"runs"`
	ProbeMS    float64   `json:"probe_interval_ms"`
	Loss       float64   `json:"loss"`
	FaultSec   float64   `json:"fault_sec"`
	StallSec   float64   `json:"stall_sec"`
	Gossipd    *Figures  `json:"gossipd,omitempty"`
	Memberlist *Figures  `json:"memberlist,omitempty"`
	Started    time.Time `json:"started"`
}

type evKind int

const (
	evSuspect evKind = iota
	evDead
	evUpdate
)

type obsEvent struct {
	at                time.Time
	observer, subject int
	kind              evKind
	inc               uint64
	meta              string
}

// observer collects both implementations' events.
type observer struct {
	mu     sync.Mutex
	events []obsEvent
}

func (o *observer) record(observer, subject int, k evKind, inc uint64, meta string) {
	o.mu.Lock()
	o.events = append(o.events, obsEvent{at: time.Now(), observer: observer, subject: subject, kind: k, inc: inc, meta: meta})
	o.mu.Unlock()
}

func (o *observer) since(t time.Time) []obsEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []obsEvent
	for _, e := range o.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// cluster is one implementation under test.
type cluster interface {
	name() string
	start(n int) error
	endpoint(i int) *endpoint
	aliveSeen(i int) int
	setMeta(i int, v string) error
	kill(i int)
	remove(i int)
	close()
}

// Run runs the scenario for each implementation in turn.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Nodes: o.Nodes, Runs: o.Runs, ProbeMS: float64(o.Protocol.ProbeInterval) / 1e6, Loss: o.Loss,
		FaultSec: o.FaultTime.Seconds(), StallSec: o.StallFor.Seconds(), Started: time.Now().UTC()}
	for _, im := range o.Impls {
		f, err := runOne(ctx, o, im)
		if err != nil {
			return nil, err
		}
		if im == "gossipd" {
			res.Gossipd = f
		} else {
			res.Memberlist = f
		}
	}
	return res, nil
}

func runOne(ctx context.Context, o Options, impl string) (*Figures, error) {
	net := newNetwork(o.Seed)
	defer net.close()
	obs := &observer{}
	var c cluster
	if impl == "gossipd" {
		c = newSwimCluster(o.Protocol, net, obs, o.Seed)
	} else {
		c = newMLCluster(o.Protocol, net, obs)
	}
	defer c.close()
	r := &runner{o: o, c: c, obs: obs, net: net, rng: rand.New(rand.NewPCG(o.Seed, 0x62656e)), live: map[int]bool{}}
	for i := range o.Nodes {
		r.live[i] = true
	}
	return r.run(ctx)
}

type runner struct {
	o    Options
	c    cluster
	obs  *observer
	net  *network
	rng  *rand.Rand
	live map[int]bool
}

func (r *runner) progress(format string, args ...any) {
	if r.o.Progress != nil {
		r.o.Progress(r.c.name() + ": " + fmt.Sprintf(format, args...))
	}
}

// waitFor polls cond every 10 ms until it holds, limit passes or ctx
// ends.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) (time.Duration, bool, error) {
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start), true, nil
		}
		if time.Since(start) > limit {
			return time.Since(start), false, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-tick.C:
		}
	}
}

func (r *runner) liveList() []int {
	var out []int
	for i := range r.o.Nodes {
		if r.live[i] {
			out = append(out, i)
		}
	}
	return out
}

func (r *runner) converged() bool {
	n := len(r.liveList())
	for _, i := range r.liveList() {
		if r.c.aliveSeen(i) != n {
			return false
		}
	}
	return true
}

func (r *runner) sentBytes() (bytes, packets int64) {
	for _, i := range r.liveList() {
		ep := r.c.endpoint(i)
		bytes += ep.sentBytes.Load()
		packets += ep.sentPackets.Load()
	}
	return bytes, packets
}

func (r *runner) run(ctx context.Context) (*Figures, error) {
	f := &Figures{Impl: r.c.name()}
	start := time.Now()
	if err := r.c.start(r.o.Nodes); err != nil {
		return nil, err
	}
	took, ok, err := waitFor(ctx, 2*time.Minute, r.converged)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("bench gossip: %s: %d members did not converge within %v", r.c.name(), r.o.Nodes, took)
	}
	f.JoinMS = float64(time.Since(start)) / 1e6
	r.progress("%d members converged in %v", r.o.Nodes, time.Since(start).Round(time.Millisecond))

	// Idle bandwidth.
	if r.o.Idle > 0 {
		b0, p0 := r.sentBytes()
		if err := sleepCtx(ctx, r.o.Idle); err != nil {
			return nil, err
		}
		b1, p1 := r.sentBytes()
		denom := float64(r.o.Nodes) * r.o.Idle.Seconds()
		f.IdleBytesPerNodeSec = float64(b1-b0) / denom
		f.IdlePacketsPerNodeSec = float64(p1-p0) / denom
		r.progress("idle %.0f B/member/s", f.IdleBytesPerNodeSec)
	}

	// Dissemination of a metadata change.
	var dis []time.Duration
	missed := 0
	for trial := range r.o.Runs {
		live := r.liveList()
		origin := live[r.rng.IntN(len(live))]
		v := fmt.Sprintf("v%d", trial+1)
		t0 := time.Now()
		if err := r.c.setMeta(origin, v); err != nil {
			return nil, err
		}
		took, ok, err := waitFor(ctx, 2*r.o.Protocol.PushPullInterval+5*time.Second, func() bool {
			got := map[int]bool{}
			for _, e := range r.obs.since(t0) {
				if e.kind == evUpdate && e.subject == origin && e.meta == v {
					got[e.observer] = true
				}
			}
			return len(got) >= len(live)-1
		})
		if err != nil {
			return nil, err
		}
		if ok {
			dis = append(dis, took)
		} else {
			missed++
		}
	}
	f.Dissemination = summarize(dis, missed)
	r.progress("dissemination median %.0f ms", f.Dissemination.MedianMS)

	// Loss and stalls: nobody fails, so every suspicion and death is false.
	if r.o.FaultTime > 0 {
		t0 := time.Now()
		b0, _ := r.sentBytes()
		r.net.setLoss(r.o.Loss)
		end := t0.Add(r.o.FaultTime)
		for time.Now().Before(end) {
			live := r.liveList()
			if r.o.StallFor > 0 {
				r.c.endpoint(live[r.rng.IntN(len(live))]).stall(r.o.StallFor)
				f.Stalls++
			}
			if err := sleepCtx(ctx, min(r.o.StallEvery, time.Until(end))); err != nil {
				return nil, err
			}
		}
		r.net.setLoss(0)
		b1, _ := r.sentBytes()
		f.FaultBytesPerNodeSec = float64(b1-b0) / (float64(r.o.Nodes) * time.Since(t0).Seconds())
		// Let stalls end and refutations spread before counting.
		if err := sleepCtx(ctx, r.o.StallFor+time.Second); err != nil {
			return nil, err
		}
		episodes := map[[2]uint64]bool{}
		for _, e := range r.obs.since(t0) {
			switch e.kind {
			case evSuspect:
				episodes[[2]uint64{uint64(e.subject), e.inc}] = true
			case evDead:
				f.FalseDeaths++
			}
		}
		f.FalseSuspicions = len(episodes)
		r.progress("fault phase: %d false suspicions, %d false deaths", f.FalseSuspicions, f.FalseDeaths)
		// Give flapped members time to come back before detection trials.
		if _, _, err := waitFor(ctx, 2*r.o.Protocol.PushPullInterval, r.converged); err != nil {
			return nil, err
		}
	}

	// Failure detection: crash a fresh member per trial.
	var first, all []time.Duration
	missedFirst, missedAll := 0, 0
	limit := r.detectLimit()
	for range r.o.Runs {
		live := r.liveList()
		victim := live[1+r.rng.IntN(len(live)-1)] // never the seed member
		t0 := time.Now()
		r.c.kill(victim)
		r.live[victim] = false
		observers := r.liveList()
		var tFirst time.Duration
		took, ok, err := waitFor(ctx, limit, func() bool {
			seen := map[int]bool{}
			for _, e := range r.obs.since(t0) {
				if e.kind == evDead && e.subject == victim && r.live[e.observer] {
					seen[e.observer] = true
					if tFirst == 0 {
						tFirst = e.at.Sub(t0)
					}
				}
			}
			return len(seen) == len(observers)
		})
		if err != nil {
			return nil, err
		}
		if tFirst > 0 {
			first = append(first, tFirst)
		} else {
			missedFirst++
		}
		if ok {
			all = append(all, took)
		} else {
			missedAll++
		}
		r.c.remove(victim)
	}
	f.DetectFirst = summarize(first, missedFirst)
	f.DetectAll = summarize(all, missedAll)
	r.progress("detection (all) median %.0f ms, max %.0f ms", f.DetectAll.MedianMS, f.DetectAll.MaxMS)
	return f, nil
}

// detectLimit bounds one detection trial: a full probe round at the
// worst health multiplier plus the longest suspicion timeout, with room.
func (r *runner) detectLimit() time.Duration {
	p := r.o.Protocol
	susp := time.Duration(p.SuspicionMaxTimeoutMult*p.SuspicionMult) * p.ProbeInterval * 3
	return 2*time.Duration(r.o.Nodes)*p.ProbeInterval + susp
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
