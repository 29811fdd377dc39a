package stored_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// keysPerBatch is the number of keys each crash-test batch writes; every
// key of batch id is "b/<id>/<j>" with value "<id>".
const keysPerBatch = 5

// TestCrashKeepsEveryAcknowledgedBatchWhole runs the stored binary as a
// process, writes sync batches from several goroutines recording each
// acknowledgement, kills it with SIGKILL mid-stream, restarts it and
// checks that every acknowledged batch is present whole and that no
// batch is present in part; an IngestRange finished and a staged write
// (a batch over half a frame) acknowledged before the kill are present
// too, and an ingest left unfinished left nothing, not even its file. It
// then stops the daemon with SIGTERM and
// checks a clean exit. It takes about 5 s with a warm build cache, so it
// runs under -short too.
//
// SIGKILL leaves the OS page cache intact, so this checks atomicity and
// that acknowledged batches survive the process, not fsync against power
// loss (the engine's WAL sync is what covers that).
func TestCrashKeepsEveryAcknowledgedBatchWhole(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stored")
	build := exec.Command("go", "build", "-o", bin, "./cmd/stored")
	began := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built in %v", time.Since(began))
	dataDir := t.TempDir()
	// The client runtime creates the dev certificates the daemon then uses.
	client := daemontest.NewDevRuntime(t, "client", dataDir)
	busAddr, adminAddr := freeUDP(t), freeTCP(t)
	c := storeclient.New(client.Bus, busAddr)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, "--dev", "--data-dir", dataDir, "--bus-addr", busAddr, "--admin-addr", adminAddr,
			"--block-cache-bytes", "8388608", "--write-buffer-bytes", "1048576", "--log-level", "warn")
		cmd.Stderr = &daemontest.Buffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		// Ready once a read answers.
		deadline := time.Now().Add(30 * time.Second)
		for {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			_, _, err := c.Get(cctx, storeclient.Local, []byte("probe"))
			ccancel()
			if err == nil {
				t.Logf("stored answering after %v", time.Since(deadline.Add(-30*time.Second)))
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatalf("stored did not answer: %v\n%s", err, cmd.Stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	cmd := start()

	// An acknowledged ingest and an acknowledged staged write (a batch
	// over half a frame, sent in parts) must survive the kill; an ingest
	// left unfinished must leave nothing, not even its file. The finished
	// ingest is several chunks of 1 MiB (64 KiB values), so stored's
	// window has more than one in flight.
	ingested := bytes.Repeat([]byte("ingested"), 8<<10)
	in, err := c.IngestRange(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("i/"), End: []byte("i0")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for j := range 100 {
		if err := in.Add(ctx, storeclient.KV{Key: fmt.Appendf(nil, "i/%03d", j), Value: ingested}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	open, err := c.IngestRange(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("u/"), End: []byte("u0")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := open.Add(ctx, storeclient.KV{Key: []byte("u/1"), Value: bytes.Repeat([]byte("u"), 5<<20)}); err != nil {
		t.Fatal(err)
	}
	bigValue := func(j int) []byte { return bytes.Repeat([]byte{byte('a' + j)}, 3<<20) }
	var big storeclient.Batch
	for j := range 4 { // 12 MiB: staged in parts
		big.Put(storeclient.Data, fmt.Appendf(nil, "s/%d", j), bigValue(j))
	}
	if _, err := c.Write(ctx, &big, true); err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		acked = make(map[int]bool)
		wg    sync.WaitGroup
	)
	const writers = 8
	// Calls in flight at the kill would wait for the QUIC idle timeout;
	// cancelling wctx after the kill ends them at once (unacknowledged).
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b storeclient.Batch
			for i := 0; ; i++ {
				id := w*1_000_000 + i
				b.Reset()
				val := []byte(strconv.Itoa(id))
				for j := 0; j < keysPerBatch; j++ {
					b.Put(storeclient.Data, []byte(fmt.Sprintf("b/%d/%d", id, j)), val)
				}
				if _, err := c.Write(wctx, &b, true); err != nil {
					return // the daemon is gone
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	// Kill once a few hundred batches are acknowledged, writers mid-stream.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("writers stalled before the kill")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	wcancel()
	wg.Wait()
	mu.Lock()
	ackedAtKill := len(acked)
	mu.Unlock()

	cmd = start()
	present := make(map[int]int) // batch id -> keys found
	it := c.Iterator(storeclient.Span{CF: storeclient.Data, Start: []byte("b/"), End: []byte("b0")}, storeclient.ScanOptions{Limit: 5000})
	for it.Next(ctx) {
		kv := it.KV()
		parts := strings.Split(string(kv.Key), "/")
		id, err := strconv.Atoi(parts[1])
		if err != nil || len(parts) != 3 || string(kv.Value) != parts[1] {
			t.Fatalf("unexpected entry %q = %q", kv.Key, kv.Value)
		}
		present[id]++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if present[id] != keysPerBatch {
			t.Errorf("acknowledged batch %d has %d of %d keys after the crash", id, present[id], keysPerBatch)
		}
	}
	for id, n := range present {
		if n != keysPerBatch {
			t.Errorf("batch %d present in part: %d of %d keys", id, n, keysPerBatch)
		}
	}
	t.Logf("%d batches acknowledged before SIGKILL, %d present after restart", ackedAtKill, len(present))
	for _, tt := range []struct {
		prefix string
		want   func(kvs []storeclient.KV) bool
	}{
		{"i/", func(kvs []storeclient.KV) bool {
			return len(kvs) == 100 && string(kvs[99].Key) == "i/099" && bytes.Equal(kvs[0].Value, ingested) && bytes.Equal(kvs[99].Value, ingested)
		}},
		{"u/", func(kvs []storeclient.KV) bool { return len(kvs) == 0 }},
		{"s/", func(kvs []storeclient.KV) bool {
			for j, kv := range kvs {
				if !bytes.Equal(kv.Value, bigValue(j)) {
					return false
				}
			}
			return len(kvs) == 4
		}},
	} {
		var kvs []storeclient.KV
		it := c.Iterator(storeclient.Span{CF: storeclient.Data, Start: []byte(tt.prefix), End: append([]byte(tt.prefix[:1]), '0')}, storeclient.ScanOptions{})
		for it.Next(ctx) {
			kvs = append(kvs, it.KV())
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if !tt.want(kvs) {
			t.Errorf("after the crash, %s holds %d entries, not what was acknowledged", tt.prefix, len(kvs))
		}
	}
	if ents, err := os.ReadDir(filepath.Join(dataDir, "stored", "db.ingest")); err != nil || len(ents) != 0 {
		t.Errorf("ingest directory after the restart: %d files, %v; want empty", len(ents), err)
	}

	// A clean stop exits 0, and a restart still holds everything.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stored after SIGTERM: %v\n%s", err, cmd.Stderr)
	}
	cmd = start()
	p, err := c.Scan(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("b/"), End: []byte("b0")}, storeclient.ScanOptions{Limit: 10000, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(present) * keysPerBatch; len(p.KVs) != want {
		t.Errorf("after a clean restart %d keys (more: %v); want %d", len(p.KVs), p.More, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func freeUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
