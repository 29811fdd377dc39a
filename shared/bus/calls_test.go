package bus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/proto/buspb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// rawCalls is a calls stream opened by hand on a raw QUIC connection.
type rawCalls struct {
	t   *testing.T
	str *quic.Stream
	rd  *wire.Reader
}

func openRawCalls(t *testing.T, conn *quic.Conn) *rawCalls {
	t.Helper()
	str, err := conn.OpenStreamSync(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WritePreamble(str, wire.ProtoCalls); err != nil {
		t.Fatal(err)
	}
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	return &rawCalls{t: t, str: str, rd: wire.NewReader(str, wire.DefaultMaxFrameSize)}
}

func (c *rawCalls) send(r *buspb.Request) {
	c.t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.str.Write(wire.AppendFrame(nil, b)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawCalls) recv() *buspb.Response {
	c.t.Helper()
	var r buspb.Response
	if err := c.rd.ReadMessage(&r); err != nil {
		c.t.Fatal(err)
	}
	return &r
}

// TestCallsStreamWire drives a calls stream by hand: answers come back by
// call id in the order handlers finish, a cancel frame cancels its
// handler, an unknown method or protocol gets its own error and the stream
// goes on, and a frame without a call id ends the stream but not the
// connection.
func TestCallsStreamWire(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	started := make(chan time.Time, 1)
	done := make(chan error, 1)
	blocker(srv, started, done)
	addr := start(t, srv)
	conn := rawDial(t, addr)
	kv := uint32(wire.ProtoKV)
	payload := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }

	c := openRawCalls(t, conn)
	c.send(&buspb.Request{CallId: 7, Protocol: kv, Method: "Block", Payload: payload(&wrapperspb.BytesValue{})})
	<-started
	c.send(&buspb.Request{CallId: 9, Protocol: kv, Method: "Echo", Payload: payload(wrapperspb.Bytes([]byte("nine")))})
	r := c.recv()
	var out wrapperspb.BytesValue
	if err := proto.Unmarshal(r.Payload, &out); r.CallId != 9 || r.Code != buspb.Code_OK || err != nil || string(out.Value) != "nine" {
		t.Fatalf("answer to 9 (7 still running): %v", r)
	}
	c.send(&buspb.Request{CallId: 11, Protocol: kv, Method: "Nope"})
	c.send(&buspb.Request{CallId: 13, Protocol: 200, Method: "Echo"})
	for _, id := range []uint64{11, 13} {
		if r := c.recv(); r.CallId != id || r.Code != buspb.Code_UNIMPLEMENTED {
			t.Fatalf("answer to %d: %v", id, r)
		}
	}
	c.send(&buspb.Request{CallId: 7, Cancel: true})
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler of 7 after cancel: %v", err)
	}
	if r := c.recv(); r.CallId != 7 || r.Code != buspb.Code_CANCELED {
		t.Fatalf("answer to 7: %v", r)
	}

	// No call id: the stream is reset, the connection serves on.
	c.send(&buspb.Request{Protocol: kv, Method: "Echo"})
	var se *quic.StreamError
	if _, err := c.rd.ReadFrame(); !errors.As(err, &se) {
		t.Fatalf("after a frame without call id: %v, want the stream reset", err)
	}
	c = openRawCalls(t, conn)
	c.send(&buspb.Request{CallId: 1, Protocol: kv, Method: "Echo", Payload: payload(wrapperspb.Bytes([]byte("one")))})
	if r := c.recv(); r.CallId != 1 || r.Code != buspb.Code_OK {
		t.Fatalf("new calls stream: %v", r)
	}
	c.str.Close()
	if _, err := c.rd.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the caller closed its side: %v, want the server to close its side", err)
	}
}

// TestCallsFallBackToStreams: a peer of a build before calls streams
// refuses them as an unknown protocol; calls then each take a stream of
// their own, and the refusal is remembered for the connection.
func TestCallsFallBackToStreams(t *testing.T) {
	tc := tlsConfig(t, "old").Clone()
	tc.NextProtos = []string{bus.ALPN}
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var refused, served atomic.Int64
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	// The old peer: answers Echo on streams of their own, refuses the rest.
	serve := func(str *quic.Stream) {
		defer str.Close()
		p, err := wire.ReadPreamble(str)
		respond := func(r *buspb.Response) {
			b, _ := proto.Marshal(r)
			_, _ = str.Write(wire.AppendFrame(nil, b))
		}
		if err != nil || p == wire.ProtoCalls {
			refused.Add(1)
			respond(&buspb.Response{Code: buspb.Code_INVALID_ARGUMENT, Message: "wire: unknown protocol"})
			return
		}
		var req buspb.Request
		if err := wire.NewReader(str, wire.DefaultMaxFrameSize).ReadMessage(&req); err != nil {
			return
		}
		served.Add(1)
		respond(&buspb.Response{Payload: req.Payload})
		_, _ = io.Copy(io.Discard, str)
	}
	wg.Go(func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					str, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					wg.Go(func() { serve(str) })
				}
			})
		}
	})
	cli := newBus(t, "cli")
	start(t, cli)
	for i := range 5 {
		v := fmt.Sprint(i)
		var out wrapperspb.BytesValue
		if err := cli.Call(ctxT(t), ln.Addr().String(), wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte(v)), &out); err != nil || string(out.Value) != v {
			t.Fatalf("call %d: %q %v", i, out.Value, err)
		}
	}
	if refused.Load() != 1 || served.Load() != 5 {
		t.Fatalf("old peer refused %d calls streams and served %d calls; want 1 and 5", refused.Load(), served.Load())
	}
	if err := cli.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCallsCancelStorm races answers against callers giving up: every call
// either gets its own answer or its context's error, never another call's
// answer, and every handler ends.
func TestCallsCancelStorm(t *testing.T) {
	srv := newBus(t, "srv")
	var running atomic.Int64
	bus.HandleUnary(srv, wire.ProtoKV, "Nap", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		running.Add(1)
		defer running.Add(-1)
		d := time.Duration(r.Value[0]%8) * time.Millisecond
		select {
		case <-time.After(d):
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	var wg sync.WaitGroup
	var answered, gaveUp atomic.Int64
	for g := range 32 {
		wg.Go(func() {
			for i := range 100 {
				v := []byte(fmt.Sprintf("%c%d/%d", byte(g*7+i), g, i))
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%10*5)*time.Millisecond)
				if i%5 == 0 {
					go func() { time.Sleep(time.Duration(i%3) * time.Millisecond); cancel() }()
				}
				var out wrapperspb.BytesValue
				err := cli.Call(ctx, addr, wire.ProtoKV, "Nap", wrapperspb.Bytes(v), &out)
				cancel()
				switch {
				case err == nil:
					if string(out.Value) != string(v) {
						t.Errorf("call %q answered with %q", v, out.Value)
						return
					}
					answered.Add(1)
				case errors.Is(err, bus.ErrDeadlineExceeded) || errors.Is(err, bus.ErrCanceled):
					gaveUp.Add(1)
				default:
					t.Errorf("call %q: %v", v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually.True(t, 10*time.Second, "every handler finished", func() bool { return running.Load() == 0 })
	if answered.Load() == 0 || gaveUp.Load() == 0 {
		t.Fatalf("answered %d, gave up %d: want both to happen", answered.Load(), gaveUp.Load())
	}
	// The stream is still good.
	var out wrapperspb.BytesValue
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Nap", wrapperspb.Bytes([]byte{0}), &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("answered %d, gave up %d", answered.Load(), gaveUp.Load())
}
