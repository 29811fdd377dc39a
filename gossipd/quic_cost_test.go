package gossipd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// resumeCounter counts the client handshakes of one bus that resumed a
// TLS session and those that did not.
type resumeCounter struct{ resumed, full atomic.Int64 }

func (rc *resumeCounter) verify(cs tls.ConnectionState) error {
	if cs.DidResume {
		rc.resumed.Add(1)
	} else {
		rc.full.Add(1)
	}
	return nil
}

// probeBus is a bare bus answering the stream ping (method "Ping" of
// the gossip protocol) and datagram pings ("ping" -> "ack" sent back over
// the responder's own connection, as a swim ack is).
type probeBus struct {
	b    *bus.Bus
	acks chan string
	wg   sync.WaitGroup
}

func newProbeBus(t *testing.T, name string, cache tls.ClientSessionCache, rc *resumeCounter) *probeBus {
	t.Helper()
	tc, err := daemontest.CA(t).Config(name)
	if err != nil {
		t.Fatal(err)
	}
	if cache != nil {
		tc.ClientSessionCache = cache
	}
	if rc != nil {
		tc.VerifyConnection = rc.verify
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: daemontest.Logger(t, slog.LevelError)})
	if err != nil {
		t.Fatal(err)
	}
	pb := &probeBus{b: b, acks: make(chan string, 64)}
	bus.HandleUnary(b, wire.ProtoGossip, "Ping", func(_ context.Context, p *gossippb.Ping) (*gossippb.Ack, error) {
		return &gossippb.Ack{Seq: p.GetSeq(), FromId: 1}, nil
	})
	b.HandleDatagram(wire.ProtoGossip, func(from bus.Peer, payload []byte) {
		switch string(payload) {
		case "ping":
			pb.wg.Add(1)
			go func() {
				defer pb.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = b.SendDatagram(ctx, from.Addr, wire.ProtoGossip, []byte("ack"))
			}()
		case "ack":
			select {
			case pb.acks <- from.Addr:
			default:
			}
		}
	})
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
		pb.wg.Wait()
	})
	return pb
}

func (pb *probeBus) addr() string { return pb.b.Addr().String() }

// call times one stream ping.
func (pb *probeBus) call(t *testing.T, to string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	var ack gossippb.Ack
	if err := pb.b.Call(ctx, to, wire.ProtoGossip, "Ping", &gossippb.Ping{Seq: 1}, &ack); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// probe times one datagram ping until its ack arrives.
func (pb *probeBus) probe(t *testing.T, to string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := pb.b.SendDatagram(ctx, to, wire.ProtoGossip, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pb.acks:
		return time.Since(start)
	case <-ctx.Done():
		t.Fatalf("no ack from %s", to)
	}
	return 0
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestColdProbeResumes measures what a probe to a member without a live
// connection costs over the bus: the stream ping (one dial) and the
// datagram ping whose ack travels over the responder's own connection
// (two dials), warm, cold with a full handshake and cold with a resumed
// TLS session, against 8 responders. It requires that a prober that
// talked to all 8 resumes with every one of them (session tickets are
// kept per peer address, not per server name, which all nodes share).
// Figures are logged; gossipd/BENCHMARKS.md records them.
func TestColdProbeResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures QUIC handshakes over loopback")
	}
	const k, rounds = 8, 4
	var rs []*probeBus
	for i := range k {
		rs = append(rs, newProbeBus(t, fmt.Sprintf("r%d", i), nil, nil))
	}
	// Round 0 warms up crypto and fills the shared cache; later rounds
	// each use fresh endpoints: one with its own empty cache (full
	// handshakes), one sharing the cache (resumed), and one sending
	// datagram probes (a dial each way, both full).
	cache := tls.NewLRUClientSessionCache(256)
	var first resumeCounter
	p := newProbeBus(t, "p", cache, &first)
	var warm []time.Duration
	for _, r := range rs {
		p.call(t, r.addr())
	}
	for _, r := range rs {
		warm = append(warm, p.call(t, r.addr()))
	}
	var second resumeCounter
	var full, resumed, dgFull, dgWarm []time.Duration
	for range rounds {
		pf := newProbeBus(t, "pf", nil, nil)
		for _, r := range rs {
			full = append(full, pf.call(t, r.addr()))
		}
		pr := newProbeBus(t, "pr", cache, &second)
		for _, r := range rs {
			resumed = append(resumed, pr.call(t, r.addr()))
		}
		pd := newProbeBus(t, "pd", nil, nil)
		for _, r := range rs {
			dgFull = append(dgFull, pd.probe(t, r.addr()))
		}
		for _, r := range rs {
			dgWarm = append(dgWarm, pd.probe(t, r.addr()))
		}
	}
	t.Logf("stream ping, median (max) of %d: cold full handshake %v (%v), cold resumed %v (%v), warm %v",
		len(full), median(full), slices.Max(full), median(resumed), slices.Max(resumed), median(warm))
	t.Logf("datagram ping+ack, median (max) of %d: cold (a full handshake each way) %v (%v), warm %v",
		len(dgFull), median(dgFull), slices.Max(dgFull), median(dgWarm))
	t.Logf("handshakes: warm-up endpoint %d full / %d resumed; cache-sharing endpoints %d full / %d resumed",
		first.full.Load(), first.resumed.Load(), second.full.Load(), second.resumed.Load())
	if got := second.resumed.Load(); got != k*rounds {
		t.Errorf("cache-sharing endpoints resumed %d of %d sessions; want all", got, k*rounds)
	}
}

// TestQUICCostAtScale runs N gossipd servers over real buses in this
// process (N from PLEIADES_GOSSIP_SCALE, e.g. 32; skipped when unset) for
// PLEIADES_GOSSIP_SCALE_FOR (default 40 s) with the LAN profile, then logs
// per member: open QUIC connections, dials (handshakes), heap and
// goroutines, and bus bytes sent per second. gossipd/BENCHMARKS.md
// extrapolates the figures to 128 members.
func TestQUICCostAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PLEIADES_GOSSIP_SCALE"))
	if n < 2 {
		t.Skip("set PLEIADES_GOSSIP_SCALE=N (and optionally PLEIADES_GOSSIP_SCALE_FOR=40s) to run")
	}
	dur := 40 * time.Second
	if v := os.Getenv("PLEIADES_GOSSIP_SCALE_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	var nodes []node
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{nodes[0].rt.Bus.Addr().String()}
		}
		nodes = append(nodes, startNodeWith(t, join, swim.DefaultLANConfig()))
	}
	eventually.True(t, 2*time.Minute, "all members alive everywhere", func() bool {
		for _, nd := range nodes {
			if alive(t, nd) != n {
				return false
			}
		}
		return true
	})
	sent0 := sumMetric(t, nodes, "pleiades_bus_sent_bytes_total")
	start := time.Now()
	time.Sleep(dur)
	secs := time.Since(start).Seconds()
	sent := sumMetric(t, nodes, "pleiades_bus_sent_bytes_total") - sent0
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	conns := sumMetric(t, nodes, "pleiades_bus_connections")
	dials := sumMetric(t, nodes, "pleiades_bus_dials_total", "result", "ok")
	failed := sumMetric(t, nodes, "pleiades_bus_dials_total", "result", "error")
	fn := float64(n)
	t.Logf("N=%d after %v: per member %.1f open connections, %.1f dials (%.1f failed), heap %.0f KiB, stacks %.0f KiB, %.0f goroutines, %.0f B/s sent on the bus",
		n, dur, conns/fn, dials/fn, failed/fn, float64(after.HeapInuse-before.HeapInuse)/fn/1024,
		float64(after.StackInuse-before.StackInuse)/fn/1024, float64(runtime.NumGoroutine()-g0)/fn, sent/fn/secs)
	if conns == 0 || dials == 0 {
		t.Fatalf("no connections (%v) or dials (%v) counted", conns, dials)
	}
}

func alive(t *testing.T, nd node) int {
	t.Helper()
	k := 0
	for _, m := range nd.srv.Members() {
		if m.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			k++
		}
	}
	return k
}

// sumMetric adds up a metric over every node's registry; label, value
// (optional) keep only the series with that label value.
func sumMetric(t *testing.T, nodes []node, name string, labelValue ...string) float64 {
	t.Helper()
	total := 0.0
	for _, nd := range nodes {
		mfs, err := nd.rt.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if len(labelValue) == 2 && !hasLabel(m, labelValue[0], labelValue[1]) {
					continue
				}
				total += metricValue(m)
			}
		}
	}
	return total
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
