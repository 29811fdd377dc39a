package multiraft

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// TestScaleIdleRanges bootstraps PLEIADES_RAFT_SCALE ranges × 3 replicas
// on 3 in-process stores (in-memory engines, production timers) and logs
// the time until every range has a leader, the time until every replica
// has quiesced, the idle CPU per node over 10 s and the heap per replica,
// then restarts all three stores and logs the same two times again.
// PLEIADES_RAFT_SCALE_CAMPAIGNS_PER_TICK overrides BootstrapCampaignsPerTick.
// It is a measurement, not a check of speed: it fails only when the
// cluster does not settle within PLEIADES_RAFT_SCALE_TIMEOUT (default
// 10m). Skipped unless PLEIADES_RAFT_SCALE is set, e.g.
//
//	PLEIADES_RAFT_SCALE=10000 go test -run TestScaleIdleRanges -v -timeout 30m ./internal/multiraft/
func TestScaleIdleRanges(t *testing.T) {
	v := os.Getenv("PLEIADES_RAFT_SCALE")
	if v == "" {
		t.Skip("set PLEIADES_RAFT_SCALE=<ranges> to run")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 || n > 60000 {
		t.Fatalf("PLEIADES_RAFT_SCALE=%q: want a range count in [2, 60000]", v)
	}
	timeout := 10 * time.Minute
	if v := os.Getenv("PLEIADES_RAFT_SCALE_TIMEOUT"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil {
			t.Fatalf("PLEIADES_RAFT_SCALE_TIMEOUT: %v", err)
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	perTick := 0
	if v := os.Getenv("PLEIADES_RAFT_SCALE_CAMPAIGNS_PER_TICK"); v != "" {
		if perTick, err = strconv.Atoi(v); err != nil || perTick < 1 {
			t.Fatalf("PLEIADES_RAFT_SCALE_CAMPAIGNS_PER_TICK=%q: want a positive count", v)
		}
	}
	c := newTestCluster(t, 3, nil, func(c *Config) { *c = DefaultConfig(); c.BootstrapCampaignsPerTick = perTick })
	var splits [][]byte
	for i := 1; i < n; i++ {
		splits = append(splits, []byte{byte(2 + i>>8), byte(i)})
	}
	start := time.Now()
	descs := c.bootstrap(&kvpb.InitRequest{SplitPoints: splits})
	// Polled every 200ms: a scan of every replica is not free at this size.
	wait := func(what string, cond func() bool) time.Duration {
		t.Helper()
		for !cond() {
			if time.Since(start) > timeout {
				t.Fatalf("%s not reached within %v", what, timeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
		return time.Since(start)
	}
	led := func() bool {
		led := 0
		for _, id := range c.ids {
			for _, r := range c.store(id).Replicas() {
				if r.IsLeader() {
					led++
				}
			}
		}
		return led >= len(descs)
	}
	allLed := wait("a leader for every range", led)
	t.Logf("%d ranges: every range led after %v", len(descs), allLed.Round(time.Millisecond))
	replicas := 0
	quiet := func() bool {
		replicas = 0
		for _, id := range c.ids {
			for _, r := range c.store(id).Replicas() {
				if !r.quiesced.Load() {
					return false
				}
				replicas++
			}
		}
		return true
	}
	allQuiet := wait("quiescence of every replica", quiet)
	t.Logf("every replica quiesced after %v", allQuiet.Round(time.Millisecond))
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var rounds0 uint64
	for _, id := range c.ids {
		rounds0 += c.store(id).Stats().Rounds
	}
	var ru0, ru1 syscall.Rusage
	const idle = 10 * time.Second
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	time.Sleep(idle)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	var rounds1 uint64
	for _, id := range c.ids {
		rounds1 += c.store(id).Stats().Rounds
	}
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	perNode := float64(cpu) / 3 / float64(idle)
	t.Logf("idle over %v: %.2f%% of one core per node (%v process CPU), %.1f scheduler rounds/s per node",
		idle, 100*perNode, cpu.Round(time.Millisecond), float64(rounds1-rounds0)/3/idle.Seconds())
	t.Logf("heap: %.1f KiB per replica (%d replicas, %.1f MiB above the start)",
		float64(after.HeapAlloc-before.HeapAlloc)/1024/float64(replicas), replicas, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
	// A restart of every node: no staggering (the replicas are not new),
	// raft's randomized election timeouts spread the elections.
	for _, id := range c.ids {
		c.stop(id)
	}
	start = time.Now()
	for _, id := range c.ids {
		c.start(id)
	}
	t.Logf("after a restart of every node: every range led after %v, every replica quiesced after %v",
		wait("a leader for every range after the restart", led).Round(time.Millisecond),
		wait("quiescence after the restart", quiet).Round(time.Millisecond))
}
