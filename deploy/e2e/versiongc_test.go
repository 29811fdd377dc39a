package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// metricsOf reads the named counters and gauges from a daemon's admin
// endpoint (0 for one it does not export).
func metricsOf(t *testing.T, admin string, names ...string) map[string]float64 {
	t.Helper()
	m, err := tryMetricsOf(admin, names...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tryMetricsOf is metricsOf for a daemon that may be restarting.
func tryMetricsOf(admin string, names ...string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %d %v", admin, resp.StatusCode, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		for _, n := range names {
			if f[0] == n {
				v, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					return nil, fmt.Errorf("metric %s: %w", n, err)
				}
				out[n] = v
			}
		}
	}
	return out, nil
}

const (
	gcRunning   = "pleiades_raftd_version_gc_running"
	gcRounds    = "pleiades_raftd_version_gc_rounds_total"
	gcCollected = "pleiades_raftd_versions_collected_total"
)

// versionHistory is what writers acknowledged: each key's puts in order.
type versionHistory struct {
	mu        sync.Mutex
	puts      map[string][]versionPut
	ambiguous map[string]bool // a put failed: its outcome is unknown
}

type versionPut struct {
	ts    hlc.Timestamp
	value string
}

// at returns the value a read of key at ts must return: its newest
// acknowledged put at or before ts.
func (h *versionHistory) at(key string, ts hlc.Timestamp) (string, bool) {
	var v string
	found := false
	for _, p := range h.puts[key] {
		if !ts.Less(p.ts) {
			v, found = p.value, true
		}
	}
	return v, found
}

// TestVersionGCSurvivesStoredKill9 overwrites 64 keys of a 3-node
// `pleiades dev` cluster, whose raftds keep versions 20s and collect
// every 5s, for long enough that collection rounds remove thousands of
// versions; in the middle of one, node 1's stored is killed with SIGKILL
// (node 1's raftd reports the round running and removing), and in a later
// one node 2's stored is paused (SIGSTOP) for two seconds. Then: every
// acknowledged write is read back; every read at a timestamp inside the
// retention window returns the newest acknowledged write at or before it
// (the version that read needs was not collected: for 20 keys written
// only at the start and at the end, a version older than the collection
// threshold); and node 1 completes collection rounds again, removing
// versions.
func TestVersionGCSurvivesStoredKill9(t *testing.T) {
	const retention = 20 * time.Second
	t.Setenv("PLEIADES_VERSION_RETENTION", retention.String())
	t.Setenv("PLEIADES_VERSION_GC_INTERVAL", "5s")
	c := startDev(t, t.TempDir(), 3, 2430)
	cl := c.client(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mustInit(t, ctx, cl, kvclient.InitOptions{})

	h := &versionHistory{puts: map[string][]versionPut{}, ambiguous: map[string]bool{}}
	// Cold keys: written a few times now and once more at the end, so
	// that a read between needs a version far older than what collection
	// removes, which it must keep (it is each key's newest below the
	// threshold); the data family's record answers no such read.
	const coldKeys, coldPuts = 20, 5
	coldPut := func(k, v string) {
		ts, err := cl.Put(ctx, []byte(k), []byte(v))
		if err != nil {
			t.Fatalf("Put(%s): %v", k, err)
		}
		h.puts[k] = append(h.puts[k], versionPut{ts, v})
	}
	for i := range coldKeys * coldPuts {
		k := fmt.Sprintf("cold/%02d", i%coldKeys)
		coldPut(k, fmt.Sprintf("%s-%d", k, i/coldKeys))
	}
	const writers, keysEach = 16, 4
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				k := fmt.Sprintf("gc/%02d/%d", w, i%keysEach)
				v := fmt.Sprintf("%s-%d", k, i)
				ts, err := cl.Put(ctx, []byte(k), []byte(v)) // stopping the writers lets the put in flight finish
				h.mu.Lock()
				if err != nil {
					h.ambiguous[k] = true // it may have applied
				} else {
					h.puts[k] = append(h.puts[k], versionPut{ts, v})
				}
				h.mu.Unlock()
			}
		})
	}
	defer func() { stopWriters(); wg.Wait() }()

	// fault waits for a collection round on node's raftd that has removed
	// versions, then applies it to node's stored.
	fault := func(node int, what string, apply func(pid int) error) {
		t.Helper()
		raftd, err := c.daemon(t, fmt.Sprintf("node%d/raftd", node))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(90 * time.Second)
		var base float64 = -1
		for {
			m := metricsOf(t, raftd.AdminAddr, gcRunning, gcCollected)
			switch {
			case m[gcRunning] == 0:
				base = -1
			case base < 0:
				base = m[gcCollected]
			case m[gcCollected] > base:
				stored, err := c.daemon(t, fmt.Sprintf("node%d/stored", node))
				if err != nil {
					t.Fatal(err)
				}
				if err := apply(stored.PID); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s node %d stored (pid %d) during a collection round, %.0f versions into it", what, node, stored.PID, m[gcCollected]-base)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: no collection round seen removing versions", node)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stored1, err := c.daemon(t, "node1/stored")
	if err != nil {
		t.Fatal(err)
	}
	fault(1, "SIGKILL", func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) })
	c.waitRestarted(t, "node1/stored", stored1.PID)
	// Its stored's death may take node 1's raftd down too (a write
	// deadline; the supervisor restarts it): follow whichever one runs.
	var (
		raftd1 daemonStatus
		after  map[string]float64
	)
	baseline := func() error {
		d, err := c.daemon(t, "node1/raftd")
		if err != nil {
			return err
		}
		if !d.Ready || d.PID == 0 {
			return fmt.Errorf("node 1's raftd: %+v", d)
		}
		m, err := tryMetricsOf(d.AdminAddr, gcRounds, gcCollected)
		if err != nil {
			return err
		}
		raftd1, after = d, m
		return nil
	}
	eventually.NoError(t, 60*time.Second, "node 1's raftd answers after its stored's restart", baseline)
	fault(2, "SIGSTOP", func(pid int) error {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		return syscall.Kill(pid, syscall.SIGCONT)
	})
	// Collection resumes on node 1: a round completes after the restart,
	// removing versions.
	eventually.NoError(t, 60*time.Second, "node 1 completes a collection round after the kill", func() error {
		if d, err := c.daemon(t, "node1/raftd"); err != nil || d.PID != raftd1.PID {
			if err := baseline(); err != nil {
				return err
			}
			return fmt.Errorf("node 1's raftd restarted: its counters start over")
		}
		m, err := tryMetricsOf(raftd1.AdminAddr, gcRounds, gcCollected)
		if err != nil {
			return err
		}
		if m[gcRounds] < after[gcRounds]+2 || m[gcCollected] <= after[gcCollected] {
			return fmt.Errorf("rounds %v -> %v, collected %v -> %v", after[gcRounds], m[gcRounds], after[gcCollected], m[gcCollected])
		}
		return nil
	})
	stopWriters()
	wg.Wait()
	for i := range coldKeys {
		k := fmt.Sprintf("cold/%02d", i)
		coldPut(k, k+"-last")
	}
	end := hlc.Timestamp{WallTime: time.Now().UnixNano()}

	// Every acknowledged write is there.
	h.mu.Lock()
	defer h.mu.Unlock()
	puts := 0
	for k, ps := range h.puts {
		puts += len(ps)
		if h.ambiguous[k] {
			continue
		}
		v, found, err := cl.Get(ctx, []byte(k))
		if err != nil || !found || string(v.Value) != ps[len(ps)-1].value {
			t.Errorf("Get(%s) = %q, %v, %v; want the last acknowledged %q", k, v.Value, found, err, ps[len(ps)-1].value)
		}
	}
	// Reads at timestamps inside the window (leaving a margin for the
	// time the reads take) return the newest write at or before them;
	// for the cold keys, a version from the start.
	reads := 0
	for step := range 40 {
		ts := hlc.Timestamp{WallTime: end.WallTime - int64(retention) + int64(8*time.Second) + int64(step)*int64(300*time.Millisecond)}
		for k := range h.puts {
			if h.ambiguous[k] {
				continue
			}
			want, wantFound := h.at(k, ts)
			v, found, err := cl.Get(ctx, []byte(k), kvclient.ReadAt(ts))
			if err != nil {
				t.Fatalf("Get(%s) at %v: %v", k, ts, err)
			}
			if found != wantFound || string(v.Value) != want {
				t.Errorf("Get(%s) at %v = %q (found %v); want %q (found %v)", k, ts, v.Value, found, want, wantFound)
			}
			reads++
		}
	}
	m := metricsOf(t, raftd1.AdminAddr, gcRounds, gcCollected)
	t.Logf("%d puts of %d keys (%d ambiguous); %d reads at timestamps checked; node 1 collected %.0f versions in %.0f rounds",
		puts, len(h.puts), len(h.ambiguous), reads, m[gcCollected], m[gcRounds])
}
