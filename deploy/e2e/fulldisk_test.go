package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/disktest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

const mib = 1 << 20

// fullDiskEnv gives every stored of a dev cluster a 48 MiB free-space
// floor, an 8 MiB ballast and 4 MiB memtables (small RocksDB files on a
// small filesystem).
func fullDiskEnv(t *testing.T) {
	t.Setenv("PLEIADES_MIN_FREE_BYTES", strconv.Itoa(48*mib))
	t.Setenv("PLEIADES_BALLAST_BYTES", strconv.Itoa(8*mib))
	t.Setenv("PLEIADES_WRITE_BUFFER_BYTES", strconv.Itoa(4*mib))
}

// nodeOnTmpfs puts node k's data dir of a dev cluster over dir on a tmpfs
// of size bytes (a symbolic link to the mount, made before the cluster
// starts) and returns the mount. It is unmounted after the cluster's
// processes are gone.
func nodeOnTmpfs(t *testing.T, dir string, k int, size int64) string {
	t.Helper()
	mnt := disktest.Mount(t, size)
	if err := os.Symlink(mnt, filepath.Join(dir, fmt.Sprintf("node%d", k))); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// keepFull tops the file at path up every 50ms so that its filesystem
// has at most leave bytes free, until the returned function is called
// (or the test ends).
func keepFull(t *testing.T, path string, leave uint64) (stop func()) {
	t.Helper()
	done, exited := make(chan struct{}), make(chan struct{})
	if _, err := disktest.Fill(path, leave); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(exited)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_, _ = disktest.Fill(path, leave)
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			<-exited
		})
	}
	t.Cleanup(stop)
	return stop
}

// isDiskFull reports a write refused because its leader's disk is full.
func isDiskFull(err error) bool {
	return errors.Is(err, bus.ErrResourceExhausted) && bus.ReasonOf(err) == kvpb.ReasonDiskFull
}

// getBody returns the body of an admin endpoint's page.
func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// noRestarts fails the test if a daemon of the cluster was restarted.
func (c *devCluster) noRestarts(t *testing.T) {
	t.Helper()
	v, err := status(t, c.sup)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range v.Daemons {
		if d.Restarts != 0 || !d.Ready {
			t.Errorf("%s: %d restarts, ready %v; want none, ready", d.Name, d.Restarts, d.Ready)
		}
	}
}

// TestDiskFullNode is the case: one node on a small filesystem,
// filled by the database's own writes of large values. Writes are then
// refused at once with the typed error (no timeout, no restart), reads of
// everything acknowledged go on, the node's status and stored's readiness
// name the condition, a raftd and a stored killed with SIGKILL on the
// full disk start again, and once the filesystem grows writes are
// accepted again with nothing acknowledged lost.
func TestDiskFullNode(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	dir := t.TempDir()
	mnt := nodeOnTmpfs(t, dir, 1, 200*mib)
	fullDiskEnv(t)
	c := startDev(t, dir, 1, 7000)
	cl := c.client(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	mustInit(t, ctx, cl, kvclient.InitOptions{})

	value := make([]byte, 512<<10)
	acked := map[string][]byte{}
	var refusals []time.Duration
	for i := 0; len(refusals) < 5; i++ {
		if i > 1000 {
			t.Fatal("1000 puts of 512 KiB on a 200 MiB filesystem all accepted")
		}
		key := fmt.Sprintf("big/%04d", i)
		copy(value, key)
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		_, err := cl.Put(pctx, []byte(key), value)
		took := time.Since(start)
		pcancel()
		switch {
		case err == nil:
			acked[key] = append([]byte(nil), value...)
		case isDiskFull(err):
			refusals = append(refusals, took)
			if len(refusals) == 1 {
				t.Logf("put %d refused after %d acknowledged: %v", i, len(acked), err)
			}
		default:
			t.Fatalf("put %d: %v; want success or the disk-full refusal", i, err)
		}
	}
	t.Logf("refused puts took %v (the client does not retry them)", refusals)
	// RocksDB's flushes and compactions win back room (write-ahead logs
	// whose memtables are flushed are deleted), enough for writes to
	// resume by themselves; another writer keeps the filesystem full
	// meanwhile: at most 30 MiB free, under the floor, over the reserve.
	stopFill := keepFull(t, filepath.Join(mnt, "filler"), 30*mib)

	st, err := c.daemon(t, "node1/stored")
	if err != nil {
		t.Fatal(err)
	}
	// stored reads the free space every 100ms: the filler's share shows
	// within a check or two.
	eventually.NoError(t, 10*time.Second, "stored naming the full disk", func() error {
		if code, body := getBody(t, "http://"+st.AdminAddr+"/readyz"); code != 200 || !strings.Contains(body, "[!]disk degraded: disk full on node") {
			return fmt.Errorf("stored /readyz = %d %q; want 200 naming the full disk", code, body)
		}
		if got := metric(t, st.AdminAddr, "pleiades_stored_disk_full"); got != 1 {
			return fmt.Errorf("pleiades_stored_disk_full = %v; want 1", got)
		}
		return nil
	})
	// The supervisor polls a ready daemon's /readyz every second.
	eventually.NoError(t, 10*time.Second, "pleiades status naming the full disk", func() error {
		out, err := pleiades(t, "status", "--addr", c.sup)
		if err != nil || !strings.Contains(out, "node1/stored: disk degraded: disk full on node") || !strings.Contains(out, "node1/raftd: disk degraded: disk full on node") {
			return fmt.Errorf("pleiades status = %v\n%s\nwant stored's and raftd's disk condition named", err, out)
		}
		t.Logf("pleiades status on the full disk:\n%s", out)
		return nil
	})
	readAll := func(what string, cl *kvclient.Client, opts ...kvclient.ReadOption) {
		t.Helper()
		for k, v := range acked {
			got, found, err := cl.Get(ctx, []byte(k), opts...)
			if err != nil || !found || string(got.Value) != string(v) {
				t.Fatalf("%s: get %s = found %v, %d bytes, %v", what, k, found, len(got.Value), err)
			}
		}
	}
	readAll("linearizable reads on the full disk", cl)
	readAll("stale reads on the full disk", cl, kvclient.WithConsistency(kvclient.Stale))
	c.noRestarts(t)

	// SIGKILL raftd, then stored: each starts again on the full disk.
	for _, name := range []string{"node1/raftd", "node1/stored"} {
		d, err := c.daemon(t, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.waitRestarted(t, name, d.PID)
	}
	eventually.NoError(t, 60*time.Second, "raftd ready after the restarts", func() error {
		d, err := c.daemon(t, "node1/raftd")
		if err != nil {
			return err
		}
		if !d.Ready {
			return fmt.Errorf("raftd: %+v", d)
		}
		return nil
	})
	readAll("reads after SIGKILL and restart on the full disk", cl)
	if _, err := cl.Put(ctx, []byte("big/after-restart"), []byte("x")); !isDiskFull(err) {
		t.Errorf("put after the restarts on the full disk = %v; want the disk-full refusal", err)
	}

	// The operator grows the filesystem: writes come back by themselves.
	stopFill()
	disktest.Resize(t, mnt, 400*mib)
	grown := time.Now()
	eventually.NoError(t, 30*time.Second, "writes accepted once the filesystem grew", func() error {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		_, err := cl.Put(pctx, []byte("big/after-grow"), []byte("x"))
		return err
	})
	t.Logf("writes accepted %v after the filesystem grew", time.Since(grown).Round(time.Millisecond))
	readAll("reads after recovery", cl)
	eventually.NoError(t, 10*time.Second, "pleiades status without the condition", func() error {
		out, err := pleiades(t, "status", "--addr", c.sup)
		if err != nil || strings.Contains(out, "degraded") {
			return fmt.Errorf("pleiades status after recovery = %v\n%s", err, out)
		}
		return nil
	})
	t.Logf("%d puts of 512 KiB acknowledged, all read back", len(acked))
	c.stop(t)
}
