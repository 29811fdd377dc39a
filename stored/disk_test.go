package stored_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/stored"
)

const mib = 1 << 20

// fakeFS is a filesystem of total bytes, used bytes of which are taken by
// others; the ballast file, when on disk, takes its size too, and with
// real, so does everything under dir.
type fakeFS struct {
	dir  string
	real bool

	mu          sync.Mutex
	total, used uint64
}

func (f *fakeFS) set(used uint64) {
	f.mu.Lock()
	f.used = used
	f.mu.Unlock()
}

func (f *fakeFS) statfs(string) (avail, total uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	taken := f.used
	if f.real {
		_ = filepath.Walk(f.dir, func(_ string, fi os.FileInfo, err error) error {
			if err == nil {
				taken += uint64(fi.Sys().(*syscall.Stat_t).Blocks) * 512
			}
			return nil
		})
	} else if fi, err := os.Stat(filepath.Join(f.dir, "ballast")); err == nil {
		taken += uint64(fi.Size())
	}
	return f.total - min(taken, f.total), f.total, nil
}

// startDiskNode starts a stored of node 7 whose free space statfs
// decides (nil: the real one).
func startDiskNode(t *testing.T, cfg stored.Config, statfs stored.StatFS) (*node, string) {
	t.Helper()
	c := daemontest.Common(t)
	c.NodeID = 7
	rt := daemontest.NewUnstartedRuntime(t, stored.Name, daemontest.CA(t), c)
	srv, err := stored.New(cfg, stored.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID, StatFS: statfs})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	client := daemontest.NewSameNodeRuntime(t, "client", rt)
	return &node{rt: rt, srv: srv, c: storeclient.New(client.Bus, rt.Bus.Addr().String())}, rt.Admin.Addr().String()
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// put writes size bytes under key (in values of at most 1000 bytes, the
// test configuration's limit).
func put(ctx context.Context, c *storeclient.Client, reserve bool, key string, size int) error {
	var b storeclient.Batch
	for i := 0; size > 0; i++ {
		n := min(size, 1000)
		b.Put(storeclient.Data, fmt.Appendf([]byte(key), "/%d", i), make([]byte, n))
		size -= n
	}
	var err error
	if reserve {
		_, err = c.WriteReserve(ctx, &b, true)
	} else {
		_, err = c.Write(ctx, &b, true)
	}
	return err
}

// isDiskFull reports whether err is stored's disk-full refusal.
func isDiskFull(err error) bool {
	return errors.Is(err, bus.ErrResourceExhausted) && bus.ReasonOf(err) == storepb.ReasonDiskFull
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Below the floor ordinary writes are refused at once with the typed
// error while reads, reserve writes and readiness go on; the ballast is
// released, and re-created before writes resume once space is back.
func TestDiskFullRefusesWritesServesReads(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MinFreeBytes, cfg.BallastBytes, cfg.DiskCheckInterval = 100*mib, 10*mib, 2*time.Millisecond
	fs := &fakeFS{dir: dir, total: 1 << 30}
	n, admin := startDiskNode(t, cfg, fs.statfs)
	ctx := ctxT(t)
	ballast := filepath.Join(dir, "ballast")
	ballastSize := func() int64 {
		fi, err := os.Stat(ballast)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	waitFor(t, "ballast created", func() error {
		if s := ballastSize(); s != 10*mib {
			return fmt.Errorf("ballast of %d bytes", s)
		}
		return nil
	})
	for i := range 10 {
		if err := put(ctx, n.c, false, fmt.Sprintf("k%d", i), 100); err != nil {
			t.Fatal(err)
		}
	}
	watch, err := n.c.WatchDisk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if st, err := watch.Recv(); err != nil || st.GetFull() || st.GetNodeId() != 7 || !st.GetBallastPresent() {
		t.Fatalf("first WatchDisk status = %v, %v; want not full, node 7, ballast present", st, err)
	}

	// Others take the disk down to 99 MiB free: under the floor.
	fs.set(fs.total - 10*mib - 99*mib)
	var refused error
	waitFor(t, "writes refused", func() error {
		refused = put(ctx, n.c, false, "late", 100)
		if refused == nil {
			return errors.New("write accepted")
		}
		return nil
	})
	if !isDiskFull(refused) || !strings.Contains(refused.Error(), "disk full on node 7 (free ") {
		t.Fatalf("write on a full disk = %v; want ResourceExhausted, reason %s, naming node 7", refused, storepb.ReasonDiskFull)
	}
	st := waitStatus(t, watch, func(st *storepb.DiskStatus) bool { return st.GetFull() && !st.GetBallastPresent() })
	if st.GetFloorBytes() != 100*mib || st.GetReserveFull() {
		t.Errorf("status on a full disk = %v; want floor 100 MiB, reserve writes allowed", st)
	}
	if s := ballastSize(); s != -1 {
		t.Errorf("ballast of %d bytes on a full disk; want released", s)
	}
	for i := range 10 {
		if v, ok, err := n.c.Get(ctx, storeclient.Data, []byte(fmt.Sprintf("k%d/0", i))); err != nil || !ok || len(v) != 100 {
			t.Fatalf("read on a full disk = %d bytes, %v, %v", len(v), ok, err)
		}
	}
	if _, _, err := n.c.Get(ctx, storeclient.Data, []byte("late/0")); err != nil {
		t.Fatal(err)
	}
	if err := put(ctx, n.c, true, "vote", 10); err != nil {
		t.Fatalf("reserve write on a full disk: %v", err)
	}
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 || !strings.Contains(body, "[!]disk degraded: disk full on node 7") {
		t.Errorf("/readyz on a full disk = %d %q; want 200 naming the condition", code, body)
	}
	if _, body := httpGet(t, "http://"+admin+"/v1/store"); !strings.Contains(body, `"full": true`) || !strings.Contains(body, `"condition": "disk full on node 7`) {
		t.Errorf("/v1/store on a full disk lacks the condition:\n%s", body)
	}
	_, metrics := httpGet(t, "http://"+admin+"/metrics")
	for _, w := range []string{"pleiades_stored_disk_full 1", "pleiades_stored_disk_floor_bytes 1.048576e+08", "pleiades_stored_disk_ballast_bytes 0",
		`pleiades_stored_disk_refusals_total{class="normal"}`} {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	if stats, err := n.c.Stats(ctx); err != nil || !stats.GetDisk().GetFull() {
		t.Errorf("Stats().Disk = %v, %v; want full", stats.GetDisk(), err)
	}

	// Down to 40 MiB: under half the floor, the reserve is gone too.
	fs.set(fs.total - 40*mib)
	waitFor(t, "reserve writes refused", func() error {
		if err := put(ctx, n.c, true, "vote", 10); !isDiskFull(err) {
			return fmt.Errorf("reserve write = %v", err)
		}
		return nil
	})

	// Space returns (others free it): the ballast comes back, then writes.
	fs.set(0)
	waitFor(t, "writes accepted again", func() error { return put(ctx, n.c, false, "after", 100) })
	if s := ballastSize(); s != 10*mib {
		t.Errorf("ballast of %d bytes after recovery; want 10 MiB", s)
	}
	waitStatus(t, watch, func(st *storepb.DiskStatus) bool { return !st.GetFull() && st.GetBallastPresent() })
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 || strings.Contains(body, "disk") {
		t.Errorf("/readyz after recovery = %d %q; want plain ok", code, body)
	}
	for _, k := range []string{"k0/0", "k9/0", "vote/0", "after/0"} {
		if _, ok, err := n.c.Get(ctx, storeclient.Data, []byte(k)); err != nil || !ok {
			t.Errorf("Get(%s) after recovery = %v, %v", k, ok, err)
		}
	}
}

// waitStatus receives WatchDisk statuses until one satisfies ok.
func waitStatus(t *testing.T, w *storeclient.DiskStream, ok func(*storepb.DiskStatus) bool) *storepb.DiskStatus {
	t.Helper()
	for {
		st, err := w.Recv()
		if err != nil {
			t.Fatalf("WatchDisk: %v", err)
		}
		if ok(st) {
			return st
		}
	}
}
