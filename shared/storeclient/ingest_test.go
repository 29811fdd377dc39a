package storeclient_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// ingestServer is a stored stand-in for IngestRange: it offers window,
// holds each chunk for hold, counts the chunks in flight and records the
// frames in the order they were answered.
type ingestServer struct {
	window uint32
	hold   time.Duration
	refuse uint64 // a chunk seq to refuse; 0 for none

	mu       sync.Mutex
	inflight int
	max      int
	seqs     []uint64 // chunks answered without error
	done     bool     // the done frame came
	doneBusy int      // chunks in flight when the done frame came
}

func (s *ingestServer) handle(_ context.Context, req *storepb.IngestRangeRequest) (*storepb.IngestRangeResponse, error) {
	switch {
	case req.GetSpan() != nil:
		return &storepb.IngestRangeResponse{IngestId: 7, Window: s.window}, nil
	case req.GetAbort():
		return &storepb.IngestRangeResponse{IngestId: 7}, nil
	case req.GetDone() && req.GetSeq() == 0:
		s.mu.Lock()
		s.done, s.doneBusy = true, s.inflight
		s.mu.Unlock()
		return &storepb.IngestRangeResponse{IngestId: 7}, nil
	}
	s.mu.Lock()
	s.inflight++
	s.max = max(s.max, s.inflight)
	s.mu.Unlock()
	time.Sleep(s.hold)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if req.GetSeq() == s.refuse {
		return nil, bus.Errorf(bus.CodeFailedPrecondition, "chunk %d refused", req.GetSeq())
	}
	if req.GetDone() {
		s.done, s.doneBusy = true, s.inflight
	}
	s.seqs = append(s.seqs, req.GetSeq())
	return &storepb.IngestRangeResponse{IngestId: 7}, nil
}

// ingestPair starts a bus serving s on a local socket and a client of it
// over that socket.
func ingestPair(t *testing.T, s *ingestServer) *storeclient.Client {
	t.Helper()
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	newBus := func(name string) *bus.Bus {
		cfg, err := ca.Config(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: cfg, DialTimeout: 2 * time.Second}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = b.Stop(ctx)
		})
		return b
	}
	srv := newBus("stored")
	bus.HandleUnary(srv, wire.ProtoStore, storeclient.MethodIngestRange, s.handle)
	dir, err := os.MkdirTemp("", "sc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cli := newBus("raftd")
	if err := cli.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := cli.AddLocalPeer(srv.Addr().String(), path); err != nil {
		t.Fatal(err)
	}
	return storeclient.New(cli, srv.Addr().String())
}

// addChunks adds n chunks' worth of entries (a little over 1 MiB each).
func addChunks(ctx context.Context, in *storeclient.Ingest, n int) error {
	val := make([]byte, 64<<10)
	for i := range n * 17 {
		if err := in.Add(ctx, storeclient.KV{Key: fmt.Appendf(nil, "k%06d", i), Value: val}); err != nil {
			return err
		}
	}
	return nil
}

// TestIngestWindow: with the window stored offers, Add keeps several
// chunks in flight (at most the window), every chunk is answered, and
// the done frame goes only after all of them; without a window, one
// chunk at a time.
func TestIngestWindow(t *testing.T) {
	for _, tt := range []struct {
		name    string
		window  uint32
		wantMax int // chunks in flight at most; more than 1 is required when over 1
	}{
		{"window 4", 4, 4},
		{"window 2", 2, 2},
		{"no window", 0, 1},
		{"window over the client's bound", 64, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &ingestServer{window: tt.window, hold: 20 * time.Millisecond}
			c := ingestPair(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			in, err := c.IngestRange(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("a"), End: []byte("z")}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := addChunks(ctx, in, 10); err != nil {
				t.Fatal(err)
			}
			if _, err := in.Finish(ctx); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.max > tt.wantMax || (tt.wantMax > 1 && s.max < 2) {
				t.Errorf("at most %d chunks in flight; want %d", s.max, tt.wantMax)
			}
			if !s.done || s.doneBusy != 0 {
				t.Errorf("done frame came %v with %d chunks in flight; want after all of them", s.done, s.doneBusy)
			}
			got := map[uint64]bool{}
			for _, q := range s.seqs {
				got[q] = true
			}
			for q := uint64(1); q <= uint64(len(s.seqs)); q++ {
				if !got[q] {
					t.Fatalf("chunks answered %v: %d missing", s.seqs, q)
				}
			}
			if len(s.seqs) < 10 {
				t.Errorf("%d chunks; want at least 10", len(s.seqs))
			}
		})
	}
}

// TestIngestWindowFailure: a chunk refused while others are in flight
// fails the session: a later Add or Finish returns the error, no done
// frame is sent, and Abort ends the session (its chunks in flight
// cancelled and waited for; stored drops the session at its lease, as
// after a refused chunk sent alone).
func TestIngestWindowFailure(t *testing.T) {
	s := &ingestServer{window: 4, hold: 10 * time.Millisecond, refuse: 2}
	c := ingestPair(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := c.IngestRange(ctx, storeclient.Span{CF: storeclient.Data, Start: []byte("a"), End: []byte("z")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = addChunks(ctx, in, 10)
	if err == nil {
		_, err = in.Finish(ctx)
	}
	if !errors.Is(err, bus.ErrFailedPrecondition) {
		t.Fatalf("session with a refused chunk: %v; want the refusal", err)
	}
	if err := in.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		t.Error("done frame sent after a refused chunk")
	}
	if err := in.Add(ctx, storeclient.KV{Key: []byte("z0")}); err == nil {
		t.Error("Add after Abort taken")
	}
}
