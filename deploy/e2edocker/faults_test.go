//go:build e2edocker

package e2edocker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2edocker: %s not found; the fault suite needs a docker engine and docker-compose\n", tool)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// Timing of the faults.
const (
	killDown   = 5 * time.Second  // a killed raftd or host stays down
	cutFor     = 10 * time.Second // a host stays disconnected
	frozenFor  = 10 * time.Second // a host stays paused
	settle     = 5 * time.Second  // load between two faults
	opTimeout  = 20 * time.Second // bound on one client operation, retries included
	regKeys    = 6                // register keys per fault phase
	regWorkers = 6
)

// figure is what one fault measured.
type figure struct {
	fault string
	host  int
	// stall is the longest time without an acknowledged write from the
	// fault until the host caught up.
	stall time.Duration
	// heal is how long the heal itself took (a whole host restarts with
	// one docker-compose start: each daemon once those it needs are
	// healthy).
	heal time.Duration
	// served is the time from the heal (restart, reconnect, unpause)
	// until the host's raftd answered a linearizable read.
	served time.Duration
	// caughtUp is the time from the heal until every replica of the host
	// applied its leader's commit index.
	caughtUp time.Duration
}

// TestFaultsAcrossContainers is the suite (see the package comment).
func TestFaultsAcrossContainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	project := os.Getenv("E2E_DOCKER_PROJECT")
	if project == "" {
		project = "pleiades-e2e-" + strconv.Itoa(os.Getpid())
	}
	third := 20 + os.Getpid()%200
	if v := os.Getenv("E2E_DOCKER_SUBNET_BYTE"); v != "" {
		third, _ = strconv.Atoi(v)
	}
	c := &cluster{project: project, hosts: 3, subnet: fmt.Sprintf("172.28.%d.", third), tag: "latest"}
	if v := os.Getenv("E2E_DOCKER_TAG"); v != "" {
		c.tag = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		c.remove(t)
	})
	if err := c.generate(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}

	// Cold start: every daemon healthy and the cluster initialized.
	t0 := time.Now()
	if _, err := c.compose(ctx, "up", "-d"); err != nil {
		t.Fatal(err)
	}
	upReturned := time.Since(t0)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	err := c.waitHealthy(wctx, 1, 2, 3)
	healthy := time.Since(t0)
	if err == nil {
		err = c.waitExited(wctx, "init")
	}
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	initialized := time.Since(t0)
	t.Logf("cold start: docker-compose up -d returned after %v; every daemon healthy after %v; init done after %v",
		upReturned.Round(time.Millisecond), healthy.Round(time.Millisecond), initialized.Round(time.Millisecond))

	certs := t.TempDir()
	if err := c.certs(ctx, certs); err != nil {
		t.Fatal(err)
	}
	probe := newProbe(t, ctx, certs)
	cl, err := kvclient.New(ctx, kvclient.Config{Addrs: c.raftAddrs(), CertsDir: certs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = cl.Close(sctx)
	}()

	// Writes and reads through every host.
	for k := 1; k <= c.hosts; k++ {
		key := fmt.Sprintf("through-host%d", k)
		if err := probe.put(ctx, c.raftAddr(k), key, "v"+strconv.Itoa(k)); err != nil {
			t.Fatalf("put through host%d: %v", k, err)
		}
		for j := 1; j <= c.hosts; j++ {
			if v, err := probe.get(ctx, c.raftAddr(j), key); err != nil || v != "v"+strconv.Itoa(k) {
				t.Fatalf("get %s through host%d = %q, %v", key, j, v, err)
			}
		}
	}

	h := newHistory()
	ld := startLoad(cl, h)
	faults := []struct {
		name   string
		inject func(ctx context.Context, k int) error
		hold   time.Duration
		heal   func(ctx context.Context, k int) error
		// restarted are the services the heal starts again: when each
		// started and was healthy is logged.
		restarted func(k int) []string
	}{
		{"docker kill raftd", func(ctx context.Context, k int) error { return c.kill(ctx, fmt.Sprintf("host%d-raftd", k)) }, killDown,
			func(ctx context.Context, k int) error { return c.start(ctx, fmt.Sprintf("host%d-raftd", k)) },
			func(k int) []string { return []string{fmt.Sprintf("host%d-raftd", k)} }},
		{"docker kill every container of a host", c.killHost, killDown, c.startHost, func(k int) []string { return hostServices(k)[1:] }},
		{"docker network disconnect", c.disconnect, cutFor, c.connect, nil},
		{"docker pause", c.pause, frozenFor, c.unpause, nil},
	}
	var figures []figure
	for i, f := range faults {
		ld.phase.Store(int64(i + 1))
		time.Sleep(settle)
		victim, err := c.leaderHost(ctx, cl, []byte(ld.key(i+1, 0)))
		if err != nil {
			t.Fatalf("before %s: %v", f.name, err)
		}
		t.Logf("%s: host%d (leader of the load's range)", f.name, victim)
		var watched func(time.Time, ...string) string
		if f.restarted != nil {
			if watched, err = c.startWatch(ctx); err != nil {
				t.Fatal(err)
			}
		}
		injected := time.Now()
		if err := f.inject(ctx, victim); err != nil {
			t.Fatalf("%s host%d: %v", f.name, victim, err)
		}
		time.Sleep(f.hold)
		healed := time.Now()
		if err := f.heal(ctx, victim); err != nil {
			t.Fatalf("heal %s host%d: %v", f.name, victim, err)
		}
		fig := figure{fault: f.name, host: victim, heal: time.Since(healed)}
		sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
		err = probe.waitServes(sctx, c.raftAddr(victim))
		fig.served = time.Since(healed)
		if err == nil {
			err = c.waitCaughtUp(sctx, cl, victim)
		}
		fig.caughtUp = time.Since(healed)
		scancel()
		if err != nil {
			t.Fatalf("after %s host%d: %v", f.name, victim, err)
		}
		fig.stall = h.longestStall(injected, time.Now())
		figures = append(figures, fig)
		t.Logf("%s host%d: writes stalled at most %v; the heal took %v, the host served %v and caught up %v after it began",
			f.name, victim, fig.stall.Round(time.Millisecond), fig.heal.Round(time.Millisecond), fig.served.Round(time.Millisecond), fig.caughtUp.Round(time.Millisecond))
		if watched != nil {
			t.Logf("%s host%d, from the heal: %s", f.name, victim, watched(healed, f.restarted(victim)...))
		}
	}
	time.Sleep(settle)
	ld.halt()

	// Final reads of every register, recorded in the history, then the
	// checks.
	for phase := 1; phase <= len(faults); phase++ {
		for i := range regKeys {
			key := ld.key(phase, i)
			call := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, opTimeout)
			v, found, err := cl.Get(rctx, []byte(key))
			rcancel()
			if err != nil {
				t.Fatalf("final read of %s: %v", key, err)
			}
			h.add(regWorkers+100, kvclienttest.Op{Kind: kvclienttest.OpGet, Key: key}, kvclienttest.Outcome{Found: found, Value: string(v.Value)}, call, time.Now())
		}
	}
	lost := ld.lostWrites(ctx, cl)
	gets, puts, cas, unknown := h.Counts()
	acked, unknownOnce := ld.onceCounts()
	t.Logf("history: %d gets, %d puts, %d compare-and-swaps (%d with unknown outcome) on %d keys; %d write-once keys acknowledged (%d unknown)",
		gets, puts, cas, unknown, len(faults)*regKeys, acked, unknownOnce)
	res, bad := h.Check(10 * time.Minute)
	t.Logf("linearizability per key (porcupine): %s", res)
	for _, f := range figures {
		t.Logf("figure: %-40s host%d  stall %8v  heal %8v  served %8v  caught up %8v", f.fault, f.host,
			f.stall.Round(time.Millisecond), f.heal.Round(time.Millisecond), f.served.Round(time.Millisecond), f.caughtUp.Round(time.Millisecond))
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("the linearizability check timed out: no violation found in the time given")
	default:
		path := os.Getenv("E2E_DOCKER_VISUALIZATION")
		if path == "" {
			path = os.TempDir() + "/pleiades-e2e-docker-history.html"
		}
		if err := h.Visualize(path, 10*time.Minute); err == nil {
			t.Logf("history visualization: %s", path)
		}
		for _, key := range bad {
			f, err := os.CreateTemp("", "pleiades-e2e-docker-"+key+"-*.txt")
			if err == nil {
				_ = h.Dump(f, key)
				f.Close()
				t.Logf("key %s is not linearizable: its operations are in %s", key, f.Name())
			}
		}
		t.Errorf("the history is not linearizable (keys %v; see the visualization)", bad)
	}
	if puts < 200 || gets < 200 || cas < 50 {
		t.Errorf("history too small to mean much: %d gets, %d puts, %d compare-and-swaps", gets, puts, cas)
	}
}

// load runs register workers on the current phase's keys and write-once
// writers, recording into a history, until halt.
type load struct {
	h     *history
	phase atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	// acked and unknown are the write-once keys by outcome.
	acked, unknown map[string]string
}

func (l *load) key(phase, i int) string { return fmt.Sprintf("reg-%d-%d", phase, i) }

func startLoad(cl *kvclient.Client, h *history) *load {
	l := &load{h: h, stop: make(chan struct{}), acked: map[string]string{}, unknown: map[string]string{}}
	l.phase.Store(0)
	for w := range regWorkers {
		l.wg.Go(func() { l.registers(cl, w) })
	}
	for w := range 2 {
		l.wg.Go(func() { l.writeOnce(cl, w) })
	}
	return l
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// registers runs gets, puts and compare-and-swaps on random keys of the
// current phase.
func (l *load) registers(cl *kvclient.Client, w int) {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	// seen is the value last seen per key: a CAS expects it.
	type register struct {
		found bool
		value string
	}
	seen := map[string]*register{}
	for seq := 0; !l.stopped(); seq++ {
		key := l.key(int(l.phase.Load()), rng.IntN(regKeys))
		in := kvclienttest.Op{Key: key}
		switch r := rng.IntN(100); {
		case r < 40:
			in.Kind = kvclienttest.OpGet
		case r < 80:
			in.Kind, in.Value = kvclienttest.OpPut, fmt.Sprintf("w%d-%d", w, seq)
		default:
			in.Kind, in.Value = kvclienttest.OpCAS, fmt.Sprintf("w%d-%d", w, seq)
			if s := seen[key]; s != nil && s.found {
				in.Expected = s.value
			} else {
				in.ExpectAbsent = true
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		call := time.Now()
		var out kvclienttest.Outcome
		var err error
		switch in.Kind {
		case kvclienttest.OpGet:
			var v kvclient.Value
			v, out.Found, err = cl.Get(ctx, []byte(key))
			out.Value = string(v.Value)
		case kvclienttest.OpPut:
			_, err = cl.Put(ctx, []byte(key), []byte(in.Value))
		case kvclienttest.OpCAS:
			var res kvclient.CASResult
			res, err = cl.CompareAndSwap(ctx, kvclient.CAS{Key: []byte(key), ExpectAbsent: in.ExpectAbsent, Expected: []byte(in.Expected), NewValue: []byte(in.Value)})
			out.Succeeded = res.Succeeded
			if err == nil && !res.Succeeded {
				out.Found, out.Value = res.CurrentFound, string(res.Current.Value)
			}
		}
		ret := time.Now()
		cancel()
		if err != nil {
			if in.Kind == kvclienttest.OpGet {
				continue // a failed read has no effect
			}
			out = kvclienttest.Outcome{Unknown: true}
		}
		l.h.add(w, in, out, call, ret)
		switch {
		case out.Unknown:
			delete(seen, key)
		case in.Kind == kvclienttest.OpPut || out.Succeeded:
			seen[key] = &register{found: true, value: in.Value}
		default:
			seen[key] = &register{found: out.Found, value: out.Value}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// writeOnce puts fresh keys, each written once, and remembers which were
// acknowledged: every one must be readable at the end.
func (l *load) writeOnce(cl *kvclient.Client, w int) {
	for seq := 0; !l.stopped(); seq++ {
		key, val := fmt.Sprintf("once-%d-%06d", w, seq), strconv.Itoa(seq)
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		_, err := cl.Put(ctx, []byte(key), []byte(val))
		cancel()
		l.mu.Lock()
		if err != nil {
			l.unknown[key] = val
		} else {
			l.acked[key] = val
		}
		l.mu.Unlock()
		if err == nil {
			l.h.ack(time.Now())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) onceCounts() (acked, unknown int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), len(l.unknown)
}

// lostWrites reads back every acknowledged write-once key and returns
// those missing or changed.
func (l *load) lostWrites(ctx context.Context, cl *kvclient.Client) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost []string
	for k, want := range l.acked {
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		v, found, err := cl.Get(rctx, []byte(k))
		cancel()
		if err != nil || !found || string(v.Value) != want {
			lost = append(lost, fmt.Sprintf("%s (read %q, found %v, %v)", k, v.Value, found, err))
		}
	}
	return lost
}

// probe calls one raftd directly (it forwards to the leader when it is
// not), to tell whether that host serves.
type probe struct{ b *bus.Bus }

func newProbe(t *testing.T, ctx context.Context, certs string) *probe {
	t.Helper()
	tc, err := tlsutil.Load(certs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: ":0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(sctx)
	})
	return &probe{b: b}
}

func (p *probe) put(ctx context.Context, addr, key, value string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return retryUnavailable(ctx, func() error {
		return p.b.Call(ctx, addr, wire.ProtoKV, kvclient.MethodPut, &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)}, &kvpb.PutResponse{})
	})
}

func (p *probe) get(ctx context.Context, addr, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var resp kvpb.GetResponse
	err := retryUnavailable(ctx, func() error {
		return p.b.Call(ctx, addr, wire.ProtoKV, kvclient.MethodGet, &kvpb.GetRequest{Key: []byte(key)}, &resp)
	})
	return string(resp.GetValue().GetValue()), err
}

// waitServes waits until the raftd at addr answers a linearizable read.
func (p *probe) waitServes(ctx context.Context, addr string) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.b.Call(actx, addr, wire.ProtoKV, kvclient.MethodGet, &kvpb.GetRequest{Key: []byte("probe")}, &kvpb.GetResponse{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not serve: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retryUnavailable retries f while it fails with Unavailable or
// NotLeader (a new leader not elected yet).
func retryUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || !(errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replicas lists each answering host's replicas.
func (c *cluster) replicas(ctx context.Context, cl *kvclient.Client) map[int][]*kvpb.ReplicaStatus {
	out := map[int][]*kvpb.ReplicaStatus{}
	for k := 1; k <= c.hosts; k++ {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := cl.Ranges(rctx, c.raftAddr(k))
		cancel()
		if err == nil {
			out[k] = resp.GetReplicas()
		}
	}
	return out
}

// leaderHost returns the host whose replica of key's range leads (the
// highest term wins).
func (c *cluster) leaderHost(ctx context.Context, cl *kvclient.Client, key []byte) (int, error) {
	for {
		var host int
		var term uint64
		for k, rs := range c.replicas(ctx, cl) {
			for _, r := range rs {
				d := r.GetDescriptor_()
				in := bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
				if in && r.GetRaftState() == "leader" && r.GetTerm() >= term {
					host, term = k, r.GetTerm()
				}
			}
		}
		if host != 0 {
			return host, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no leader of the range of %q", key)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitCaughtUp waits until every replica on host k has applied at least
// the commit index its range's leader reports.
func (c *cluster) waitCaughtUp(ctx context.Context, cl *kvclient.Client, k int) error {
	var why error
	for {
		reps := c.replicas(ctx, cl)
		commit := map[uint64]uint64{}
		for _, rs := range reps {
			for _, r := range rs {
				if r.GetRaftState() == "leader" {
					id := r.GetDescriptor_().GetRangeId()
					commit[id] = max(commit[id], r.GetCommitIndex())
				}
			}
		}
		why = nil
		if len(reps[k]) == 0 {
			why = fmt.Errorf("host%d lists no replicas", k)
		}
		for _, r := range reps[k] {
			id := r.GetDescriptor_().GetRangeId()
			if want, ok := commit[id]; !ok {
				why = fmt.Errorf("range %d has no leader", id)
			} else if r.GetAppliedIndex() < want {
				why = fmt.Errorf("range %d: host%d applied %d < leader commit %d", id, k, r.GetAppliedIndex(), want)
			}
		}
		if why == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return why
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL to a service's container.
func (c *cluster) kill(ctx context.Context, service string) error {
	id, err := c.container(ctx, service)
	if err == nil {
		_, err = docker(ctx, "kill", id)
	}
	return err
}

// start starts a service's stopped container again.
func (c *cluster) start(ctx context.Context, service string) error {
	id, err := c.container(ctx, service)
	if err == nil {
		_, err = docker(ctx, "start", id)
	}
	return err
}

// killHost kills every container of host k: its daemons, then the
// namespace holder.
func (c *cluster) killHost(ctx context.Context, k int) error {
	svcs := hostServices(k)
	for i := len(svcs) - 1; i >= 0; i-- {
		if err := c.kill(ctx, svcs[i]); err != nil {
			return err
		}
	}
	return nil
}

// startHost starts host k's containers again as an operator would: one
// docker-compose start of the host's services, which starts each once
// those it depends on (depends_on) are started or healthy, in parallel
// where they allow it, and returns once the last has started.
func (c *cluster) startHost(ctx context.Context, k int) error {
	_, err := c.compose(ctx, append([]string{"start"}, hostServices(k)...)...)
	return err
}

// startWatch records when the project's containers start and turn
// healthy (docker events, one process streaming them, no polling) until
// the returned stop, which describes it for services from since.
func (c *cluster) startWatch(ctx context.Context) (stop func(since time.Time, services ...string) string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, "docker", "events", "--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "event=start", "--filter", "event=health_status",
		"--format", `{{.TimeNano}}|{{.Action}}|{{index .Actor.Attributes "com.docker.compose.service"}}`)
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("docker events: %w", err)
	}
	type event struct {
		at      time.Time
		action  string
		service string
	}
	var events []event
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), "|", 3)
			if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 3 {
				events = append(events, event{time.Unix(0, ns), f[1], f[2]})
			}
		}
	}()
	return func(since time.Time, services ...string) string {
		cancel()
		<-done
		_ = cmd.Wait()
		var desc []string
		for _, svc := range services {
			var started, healthy time.Time
			for _, e := range events {
				switch {
				case e.service != svc || e.at.Before(since):
				case e.action == "start" && started.IsZero():
					started = e.at
				case e.action == "health_status: healthy" && !started.IsZero() && healthy.IsZero():
					healthy = e.at
				}
			}
			d := svc + " started " + offset(since, started)
			if !healthy.IsZero() {
				d += ", healthy " + offset(since, healthy)
			}
			desc = append(desc, d)
		}
		return strings.Join(desc, "; ")
	}, nil
}

// offset is t's time after since, "-" for none.
func offset(since, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(since).Round(time.Millisecond).String()
}

// disconnect cuts host k off the cluster network.
func (c *cluster) disconnect(ctx context.Context, k int) error {
	id, err := c.container(ctx, fmt.Sprintf("host%d", k))
	if err == nil {
		_, err = docker(ctx, "network", "disconnect", c.network(), id)
	}
	return err
}

// connect puts host k back on the network at its address.
func (c *cluster) connect(ctx context.Context, k int) error {
	id, err := c.container(ctx, fmt.Sprintf("host%d", k))
	if err == nil {
		_, err = docker(ctx, "network", "connect", "--ip", c.ip(k), "--alias", fmt.Sprintf("host%d", k), c.network(), id)
	}
	return err
}

// pause freezes every container of host k.
func (c *cluster) pause(ctx context.Context, k int) error { return c.eachOfHost(ctx, k, "pause") }

// unpause thaws them.
func (c *cluster) unpause(ctx context.Context, k int) error { return c.eachOfHost(ctx, k, "unpause") }

func (c *cluster) eachOfHost(ctx context.Context, k int, verb string) error {
	var ids []string
	for _, s := range hostServices(k) {
		id, err := c.container(ctx, s)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	_, err := docker(ctx, append([]string{verb}, ids...)...)
	return err
}

// dumpLogs logs the tail of every raftd's and gossipd's log.
func (c *cluster) dumpLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for k := 1; k <= c.hosts; k++ {
		for _, d := range []string{"raftd", "gossipd"} {
			svc := fmt.Sprintf("host%d-%s", k, d)
			id, err := c.container(ctx, svc)
			if err != nil {
				continue
			}
			out, _ := exec.CommandContext(ctx, "docker", "logs", "--tail", "40", id).CombinedOutput()
			t.Logf("%s log tail:\n%s", svc, strings.TrimSpace(string(out)))
		}
	}
}
