package stored_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/disktest"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// tmpfsLoad writes batches of unique keys from a few goroutines until
// stopped, recording what was acknowledged and when writes were refused
// for want of space; any other failure is an error.
type tmpfsLoad struct {
	wg       sync.WaitGroup
	stop     chan struct{}
	stopOnce sync.Once

	mu       sync.Mutex
	acked    []string
	lastOK   time.Time
	refusals []time.Time
	err      error
}

func startTmpfsLoad(ctx context.Context, c *storeclient.Client, writers int) *tmpfsLoad {
	l := &tmpfsLoad{stop: make(chan struct{})}
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%06d", w, i)
				err := put(ctx, c, false, key, 48000)
				now := time.Now()
				l.mu.Lock()
				switch {
				case err == nil:
					l.acked = append(l.acked, key)
					l.lastOK = now
				case isDiskFull(err):
					l.refusals = append(l.refusals, now)
				default:
					if l.err == nil {
						l.err = fmt.Errorf("write %s: %w", key, err)
					}
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *tmpfsLoad) halt() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// since returns the last acknowledgement and the first refusal at or
// after t.
func (l *tmpfsLoad) since(t time.Time) (lastOK, firstRefusal time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.refusals {
		if !r.Before(t) {
			firstRefusal = r
			break
		}
	}
	return l.lastOK, firstRefusal
}

// On a real, small filesystem filled by another writer while stored
// takes writes: past the floor writes are refused with the typed error,
// reads go on, and writes come back once the filler's file is gone; the
// same when the filler takes every last byte, so that RocksDB itself runs
// out of space; every acknowledged write survives a restart.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := disktest.Mount(t, 160*mib)
	cfg := testConfig(filepath.Join(mnt, "stored"))
	cfg.MinFreeBytes, cfg.BallastBytes = 32*mib, 8*mib
	cfg.Engine.MaxBatchBytes = 64 << 10
	n, _ := startDiskNode(t, cfg, nil)
	ctx := ctxT(t)
	filler := filepath.Join(mnt, "filler")
	load := startTmpfsLoad(ctx, n.c, 3)
	defer load.halt()
	waitFor(t, "writes acknowledged", func() error {
		if last, _ := load.since(time.Now()); last.IsZero() {
			return errors.New("none yet")
		}
		return nil
	})

	// Another writer takes the free space to 4 MiB over the reserve:
	// under the floor.
	if _, err := disktest.Fill(filler, 16*mib+4*mib); err != nil {
		t.Fatal(err)
	}
	filled := time.Now()
	waitFor(t, "writes refused", func() error {
		if _, r := load.since(filled); r.IsZero() {
			return errors.New("no refusal since the disk filled")
		}
		return nil
	})
	lastOK, firstRefusal := load.since(filled)
	t.Logf("below the floor: first refusal %v after the filler stopped; last acknowledgement %v after it",
		firstRefusal.Sub(filled).Round(time.Millisecond), lastOK.Sub(filled).Round(time.Millisecond))
	checkReads(t, ctx, n.c, load)
	if err := put(ctx, n.c, true, "reserve", 100); err != nil {
		t.Errorf("reserve write below the floor: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, "writes accepted again", func() error {
		if last, _ := load.since(freed); !last.After(freed) {
			return errors.New("no acknowledgement since space returned")
		}
		return nil
	})
	lastOK, _ = load.since(freed)
	t.Logf("space back: writes accepted %v after the filler's file went", lastOK.Sub(freed).Round(time.Millisecond))

	// The filler takes every byte: RocksDB itself may run out of space.
	if _, err := disktest.Fill(filler, 0); err != nil {
		t.Fatal(err)
	}
	filled = time.Now()
	waitFor(t, "writes refused on a full filesystem", func() error {
		if _, r := load.since(filled); r.IsZero() {
			return errors.New("no refusal since the disk filled")
		}
		return nil
	})
	checkReads(t, ctx, n.c, load)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed = time.Now()
	waitFor(t, "writes accepted after a completely full filesystem", func() error {
		if last, _ := load.since(freed); !last.After(freed) {
			return errors.New("no acknowledgement since space returned")
		}
		return nil
	})
	lastOK, _ = load.since(freed)
	t.Logf("completely full, then space back: writes accepted %v after the filler's file went", lastOK.Sub(freed).Round(time.Millisecond))
	load.halt()
	if load.err != nil {
		t.Fatal(load.err)
	}

	// Everything acknowledged is there after a restart.
	if err := n.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	n2, _ := startDiskNode(t, cfg, nil)
	checkReads(t, ctx, n2.c, load)
	t.Logf("%d writes acknowledged, %d refused for want of space", len(load.acked), len(load.refusals))
}

// checkReads reads back every acknowledged key.
func checkReads(t *testing.T, ctx context.Context, c *storeclient.Client, l *tmpfsLoad) {
	t.Helper()
	l.mu.Lock()
	keys := append([]string(nil), l.acked...)
	l.mu.Unlock()
	for _, k := range keys {
		if v, ok, err := c.Get(ctx, storeclient.Data, []byte(k+"/0")); err != nil || !ok || len(v) != 1000 {
			t.Fatalf("read of acknowledged %s = %d bytes, %v, %v", k, len(v), ok, err)
		}
	}
}
