package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// history records register operations (kvclienttest's model: gets and
// puts here) from clients with default retries.
type history struct {
	*kvclienttest.History
	mu sync.Mutex
	// refused counts puts refused for a full disk (they did nothing).
	refused int
}

// run has clients put and get keys through cl until stop closes. A put
// refused for a full disk did nothing and is left out; any other failed
// put may have applied at any time after its call; a failed get is left
// out.
func (h *history) run(cl *kvclient.Client, clients int, keys []string, stop <-chan struct{}, wg *sync.WaitGroup) {
	for client := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(client), 7))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				in := kvclienttest.Op{Kind: kvclienttest.OpGet, Key: keys[rng.IntN(len(keys))]}
				if rng.IntN(2) == 0 {
					in.Kind, in.Value = kvclienttest.OpPut, fmt.Sprintf("c%d-%d", client, seq)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				call := time.Now()
				var out kvclienttest.Outcome
				var err error
				if in.Kind == kvclienttest.OpPut {
					_, err = cl.Put(ctx, []byte(in.Key), []byte(in.Value))
				} else {
					var v kvclient.Value
					v, out.Found, err = cl.Get(ctx, []byte(in.Key))
					out.Value = string(v.Value)
				}
				ret := time.Now()
				cancel()
				switch {
				case err != nil && in.Kind == kvclienttest.OpPut && isDiskFull(err):
					h.mu.Lock()
					h.refused++
					h.mu.Unlock()
				case err != nil:
					h.Add(client, in, kvclienttest.Outcome{Unknown: true}, call, ret)
				default:
					h.Add(client, in, out, call, ret)
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// TestDiskFullFollower: a 3-node cluster whose node 2 lives on a small
// filesystem that another writer fills under load. Writes to ranges led
// elsewhere keep being acknowledged (node 2's replicas fall behind,
// answering nothing), writes to ranges node 2 leads are refused at once
// with the typed error, reads are served everywhere, node 2's stored and
// raftd name the condition and a disk.space event is published; no
// daemon restarts. Once the filler's file is gone node 2 catches up by
// itself, and nothing acknowledged is lost (every write read back; the
// register history of the whole run checked with porcupine).
func TestDiskFullFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	diskFullFollower(t, 7100, nil, nil)
}

// diskFullFollower runs TestDiskFullFollower's scenario. whileFull, if
// set, runs with node 2's disk full and the writers going (and no check
// that nothing restarted follows); caughtUp once node 2 has caught up.
func diskFullFollower(t *testing.T, offset int, whileFull func(c *devCluster, cl *kvclient.Client, prefix string, ws *writers), caughtUp func(c *devCluster)) {
	dir := t.TempDir()
	mnt := nodeOnTmpfs(t, dir, 2, 320*mib)
	fullDiskEnv(t)
	c := startDev(t, dir, 3, offset)
	cl := c.client(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	mustInit(t, ctx, cl, kvclient.InitOptions{SplitPoints: [][]byte{[]byte("b"), []byte("c"), []byte("d")}})
	full := c.nodes[1]
	nc := natsConnect(t, msgNodes(t, c)[0])
	sub, err := nc.SubscribeSync(events.Prefix + "." + events.DiskSpace + ".>")
	if err != nil {
		t.Fatal(err)
	}
	evs := &eventLog{sub: sub}

	// A prefix whose range node 2 does not lead, and one it leads if any.
	var prefix, ledByFull string
	eventually.NoError(t, 30*time.Second, "range leaders", func() error {
		prefix, ledByFull = "", ""
		for _, p := range []string{"a", "b", "c", "d"} {
			n, _, err := c.leaderOf(cl, []byte(p+"/"))
			if err != nil {
				return err
			}
			if n == 2 && ledByFull == "" {
				ledByFull = p
			} else if n != 2 && prefix == "" {
				prefix = p
			}
		}
		if prefix == "" {
			return errors.New("node 2 leads every range")
		}
		return nil
	})
	t.Logf("writing under %q (led elsewhere); node 2 leads %q", prefix, ledByFull)

	ws := startWriters(cl, 6, prefix+"/w", 30*time.Second)
	var haltOnce sync.Once
	halt := func() { haltOnce.Do(ws.halt) }
	defer halt()
	h := &history{History: kvclienttest.NewHistory()}
	stopHist := make(chan struct{})
	var histWG sync.WaitGroup
	h.run(cl, 4, []string{prefix + "/r1", prefix + "/r2", prefix + "/r3"}, stopHist, &histWG)
	eventually.NoError(t, 60*time.Second, "writes acknowledged before the fill", func() error {
		if a, _ := ws.log.counts(); a < 50 {
			return fmt.Errorf("%d acknowledged", a)
		}
		return nil
	})

	// Another writer takes node 2's filesystem down to 30 MiB free (under
	// its 48 MiB floor) and keeps it there.
	stopFill := keepFull(t, filepath.Join(mnt, "filler"), 30*mib)
	filled := time.Now()
	stored2 := "node2/stored"
	sd, err := c.daemon(t, stored2)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := c.daemon(t, "node2/raftd")
	if err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 30*time.Second, "node 2's stored full", func() error {
		if v := metric(t, sd.AdminAddr, "pleiades_stored_disk_full"); v != 1 {
			return fmt.Errorf("pleiades_stored_disk_full = %v", v)
		}
		return nil
	})
	t.Logf("node 2's stored reports its disk full %v after the filler", time.Since(filled).Round(time.Millisecond))
	e := evs.wait(t, 30*time.Second, "disk.space full for node 2", func(e *events.Event) bool {
		return e.NodeID == full.NodeID && e.Disk.Full
	})
	t.Logf("event %s: %s", e.Subject(), e.Disk.Reason)
	if ledByFull != "" {
		start := time.Now()
		_, err := cl.Put(ctx, []byte(ledByFull+"/refused"), []byte("x"))
		if !isDiskFull(err) {
			t.Errorf("put to a range node 2 leads = %v; want the disk-full refusal", err)
		}
		t.Logf("put to a range led by the full node refused in %v: %v", time.Since(start).Round(time.Microsecond), err)
	}
	eventually.NoError(t, 30*time.Second, "node 2's replicas holding their appends", func() error {
		if v := metric(t, rd.AdminAddr, "pleiades_raftd_replicas_held"); v < 1 {
			return fmt.Errorf("pleiades_raftd_replicas_held = %v", v)
		}
		return nil
	})
	// Writes keep being acknowledged while node 2 falls behind.
	mark := time.Now()
	eventually.NoError(t, 30*time.Second, "acknowledgements with node 2 full", func() error {
		if _, ok := ws.log.firstAckStartedAfter(mark); !ok {
			return errors.New("no write acknowledged since node 2 filled")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few seconds of writes with node 2 full
	acks, errs := ws.log.counts()
	t.Logf("with node 2 full: longest gap between acknowledgements %v; %d acknowledged, %d failed so far",
		ws.log.longestGap(filled, time.Now()).Round(time.Millisecond), acks, errs)
	eventually.NoError(t, 10*time.Second, "pleiades status naming node 2's full disk", func() error {
		out, err := pleiades(t, "status", "--addr", c.sup)
		if err != nil {
			return err
		}
		for _, want := range []string{"node2/stored: disk degraded: disk full on node", "node2/raftd: disk degraded: disk full on node"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("pleiades status lacks %q:\n%s", want, out)
			}
		}
		return nil
	})
	if whileFull != nil {
		whileFull(c, cl, prefix, ws)
	}
	// Stale reads through node 2 serve what it had.
	stale := c.client(t, 5*time.Second, full.RaftAddr)
	if _, found, err := stale.Get(ctx, []byte(prefix+"/w/w00/000000"), kvclient.WithConsistency(kvclient.Stale)); err != nil || !found {
		t.Errorf("stale read through node 2 = %v, %v", found, err)
	}
	if whileFull == nil {
		c.noRestarts(t)
	}

	// The filler's file goes: node 2 catches up by itself.
	stopFill()
	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	c.waitCaughtUp(t, cl, 2)
	t.Logf("node 2 caught up %v after the filler's file went", time.Since(freed).Round(time.Millisecond))
	if caughtUp != nil {
		caughtUp(c)
	}
	eventually.NoError(t, 30*time.Second, "node 2 holds nothing", func() error {
		if v := metric(t, rd.AdminAddr, "pleiades_raftd_replicas_held"); v != 0 {
			return fmt.Errorf("pleiades_raftd_replicas_held = %v", v)
		}
		return nil
	})
	evs.wait(t, 30*time.Second, "disk.space room again for node 2", func(e *events.Event) bool {
		return e.NodeID == full.NodeID && !e.Disk.Full
	})
	if ledByFull != "" {
		eventually.NoError(t, 30*time.Second, "writes accepted by node 2's ranges", func() error {
			_, err := cl.Put(ctx, []byte(ledByFull+"/after"), []byte("x"))
			return err
		})
	}
	halt()
	close(stopHist)
	histWG.Wait()
	if whileFull == nil {
		c.noRestarts(t)
	}
	acked, unknown := maps.Clone(ws.log.acked), maps.Clone(ws.log.unknown)
	verify(t, cl, prefix+"/w", acked, unknown, nil)
	gets, puts, _, _ := h.Counts()
	t.Logf("register history: %d gets, %d puts, %d puts refused for the full disk", gets, puts, h.refused)
	if gets+puts < 100 {
		t.Fatalf("register history of %d operations is too small to check", gets+puts)
	}
	if res, bad := h.Check(60 * time.Second); res == porcupine.Illegal {
		t.Fatalf("the register history is not linearizable (keys %v)", bad)
	}
	c.stop(t)
}
