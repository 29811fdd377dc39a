package bus_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	caOnce sync.Once
	testCA *tlsutil.TestCA
	caErr  error
)

func tlsConfig(t testing.TB, name string) *tls.Config {
	t.Helper()
	caOnce.Do(func() { testCA, caErr = tlsutil.NewTestCA() })
	if caErr != nil {
		t.Fatal(caErr)
	}
	c, err := testCA.Config(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type opt func(*bus.Config)

// newBus returns an unstarted bus on a free loopback port; it is stopped in
// cleanup.
func newBus(t testing.TB, name string, opts ...opt) *bus.Bus {
	t.Helper()
	cfg := bus.Config{ListenAddr: "127.0.0.1:0", TLS: tlsConfig(t, name), DialTimeout: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := bus.New(cfg, bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
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

func start(t testing.TB, b *bus.Bus) string {
	t.Helper()
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b.Addr().String()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echo registers KV "Echo" (returns its input) on b.
func echo(b *bus.Bus) {
	bus.HandleUnary(b, wire.ProtoKV, "Echo", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		return r, nil
	})
}

func TestUnaryEcho(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	bus.HandleUnary(srv, wire.ProtoKV, "Who", func(ctx context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		p, ok := bus.PeerFromContext(ctx)
		if !ok {
			return nil, errors.New("no peer")
		}
		return wrapperspb.String(p.Name + "@" + p.Addr), nil
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	caddr := start(t, cli)
	for _, size := range []int{0, 1, 64, 4096, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			in := make([]byte, size)
			for i := range in {
				in[i] = byte(i)
			}
			var out wrapperspb.BytesValue
			if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
				t.Fatal(err)
			}
			if string(out.Value) != string(in) {
				t.Fatalf("echo of %d bytes came back as %d bytes", size, len(out.Value))
			}
		})
	}
	var who wrapperspb.StringValue
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Who", wrapperspb.String(""), &who); err != nil {
		t.Fatal(err)
	}
	if want := "cli@" + caddr; who.Value != want {
		t.Fatalf("peer = %q, want %q", who.Value, want)
	}
}

func TestErrorCodes(t *testing.T) {
	srv := newBus(t, "srv")
	wrapped := fmt.Errorf("stored: get k: %w", bus.Errorf(bus.CodeNotFound, "key %q", "k"))
	cases := []struct {
		name     string
		err      error
		code     bus.Code
		sentinel error
		text     string
		hint     string
		reason   string
		detail   string
	}{
		{"invalid", bus.Errorf(bus.CodeInvalidArgument, "key is empty"), bus.CodeInvalidArgument, bus.ErrInvalidArgument, "bus: invalid argument: key is empty", "", "", ""},
		{"notfound", bus.Errorf(bus.CodeNotFound, "x"), bus.CodeNotFound, bus.ErrNotFound, "bus: not found: x", "", "", ""},
		{"wrapped", wrapped, bus.CodeNotFound, bus.ErrNotFound, `bus: not found: stored: get k: key "k"`, "", "", ""},
		{"exists", bus.Errorf(bus.CodeAlreadyExists, "y"), bus.CodeAlreadyExists, bus.ErrAlreadyExists, "bus: already exists: y", "", "", ""},
		{"precondition", bus.Errorf(bus.CodeFailedPrecondition, "z"), bus.CodeFailedPrecondition, bus.ErrFailedPrecondition, "bus: failed precondition: z", "", "", ""},
		{"unavailable", bus.Errorf(bus.CodeUnavailable, "later"), bus.CodeUnavailable, bus.ErrUnavailable, "bus: unavailable: later", "", "", ""},
		{"notleader", bus.NotLeader("10.0.0.1:7402"), bus.CodeNotLeader, bus.ErrNotLeader, "bus: not leader (leader 10.0.0.1:7402)", "10.0.0.1:7402", "", ""},
		{"notleader-nohint", bus.NotLeader(""), bus.CodeNotLeader, bus.ErrNotLeader, "bus: not leader", "", "", ""},
		{"plain", errors.New("boom"), bus.CodeInternal, bus.ErrInternal, "bus: internal: boom", "", "", ""},
		{"ctx", fmt.Errorf("wait: %w", context.DeadlineExceeded), bus.CodeDeadlineExceeded, bus.ErrDeadlineExceeded, "bus: deadline exceeded: wait: context deadline exceeded", "", "", ""},
		{"reason", bus.WithReason(bus.CodeUnavailable, "warming_up", "not yet"), bus.CodeUnavailable, bus.ErrUnavailable, "bus: unavailable: not yet", "", "warming_up", ""},
		{"wrapped-reason", fmt.Errorf("kv: %w", bus.WithReason(bus.CodeUnavailable, "warming_up", "not yet")), bus.CodeUnavailable, bus.ErrUnavailable, "bus: unavailable: kv: not yet", "", "warming_up", ""},
		{"detail", fmt.Errorf("kv: %w", bus.WithDetail(bus.CodeFailedPrecondition, "moved", []byte("\x00descs"), "stale")), bus.CodeFailedPrecondition, bus.ErrFailedPrecondition, "bus: failed precondition: kv: stale", "", "moved", "\x00descs"},
	}
	for _, c := range cases {
		bus.HandleUnary(srv, wire.ProtoStore, c.name, func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
			return nil, c.err
		})
	}
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := cli.Call(ctxT(t), addr, wire.ProtoStore, c.name, &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
			if bus.CodeOf(err) != c.code || !errors.Is(err, c.sentinel) {
				t.Fatalf("err = %v (code %v), want code %v", err, bus.CodeOf(err), c.code)
			}
			if err.Error() != c.text {
				t.Fatalf("text = %q, want %q", err.Error(), c.text)
			}
			if bus.LeaderHint(err) != c.hint {
				t.Fatalf("hint = %q, want %q", bus.LeaderHint(err), c.hint)
			}
			if bus.ReasonOf(err) != c.reason {
				t.Fatalf("reason = %q, want %q", bus.ReasonOf(err), c.reason)
			}
			if string(bus.DetailOf(err)) != c.detail {
				t.Fatalf("detail = %q, want %q", bus.DetailOf(err), c.detail)
			}
		})
	}
}

func TestUnknownMethod(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	for _, c := range []struct {
		p      wire.Protocol
		method string
	}{{wire.ProtoKV, "Nope"}, {wire.ProtoRaft, "Echo"}} {
		err := cli.Call(ctxT(t), addr, c.p, c.method, &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		if !errors.Is(err, bus.ErrUnimplemented) {
			t.Fatalf("%v/%s: err = %v, want unimplemented", c.p, c.method, err)
		}
	}
	// The connection still serves.
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
}

// blocker registers KV "Block": it reports its ctx's deadline on started,
// then waits for ctx and reports ctx.Err() on done.
func blocker(b *bus.Bus, started chan<- time.Time, done chan<- error) {
	bus.HandleUnary(b, wire.ProtoKV, "Block", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		d, _ := ctx.Deadline()
		started <- d
		<-ctx.Done()
		done <- ctx.Err()
		return nil, ctx.Err()
	})
}

func TestDeadlineAndCancel(t *testing.T) {
	srv := newBus(t, "srv")
	started := make(chan time.Time, 1)
	done := make(chan error, 1)
	blocker(srv, started, done)
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		want, _ := ctx.Deadline()
		err := cli.Call(ctx, addr, wire.ProtoKV, "Block", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		if !errors.Is(err, bus.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if got := <-started; !got.Equal(want) {
			t.Fatalf("handler deadline %v, want %v", got, want)
		}
		if herr := <-done; herr == nil {
			t.Fatal("handler ctx not done")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- cli.Call(ctx, addr, wire.ProtoKV, "Block", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		}()
		if d := <-started; !d.IsZero() {
			t.Fatalf("handler has deadline %v, want none", d)
		}
		cancel()
		if err := <-errc; !errors.Is(err, bus.ErrCanceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
		select {
		case herr := <-done:
			if !errors.Is(herr, context.Canceled) {
				t.Fatalf("handler ctx err = %v", herr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("handler ctx not cancelled after the caller cancelled")
		}
	})
}

func TestServerStream(t *testing.T) {
	srv := newBus(t, "srv")
	bus.HandleStream(srv, wire.ProtoStore, "Count", func(ctx context.Context, r *wrapperspb.Int32Value, send func(*wrapperspb.Int32Value) error) error {
		for i := range r.Value {
			if err := send(wrapperspb.Int32(i)); err != nil {
				return err
			}
		}
		if r.Value == 3 {
			return bus.NotLeader("elsewhere:1")
		}
		return nil
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	for _, n := range []int32{0, 1, 3, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, err := cli.Stream(ctxT(t), addr, wire.ProtoStore, "Count", wrapperspb.Int32(n))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got int32
			for {
				var m wrapperspb.Int32Value
				err := s.Recv(&m)
				if err == io.EOF {
					break
				}
				if n == 3 && got == 3 {
					if !errors.Is(err, bus.ErrNotLeader) || bus.LeaderHint(err) != "elsewhere:1" {
						t.Fatalf("end err = %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if m.Value != got {
					t.Fatalf("got %d, want %d", m.Value, got)
				}
				got++
			}
			if got != n || n == 3 {
				t.Fatalf("got %d messages, want %d", got, n)
			}
			if err := s.Recv(&wrapperspb.Int32Value{}); err != io.EOF {
				t.Fatalf("Recv after end = %v", err)
			}
		})
	}
}

func TestStreamCloseCancelsHandler(t *testing.T) {
	srv := newBus(t, "srv")
	done := make(chan error, 1)
	bus.HandleStream(srv, wire.ProtoStore, "Forever", func(ctx context.Context, r *wrapperspb.Int32Value, send func(*wrapperspb.Int32Value) error) error {
		for i := int32(0); ; i++ {
			if err := send(wrapperspb.Int32(i)); err != nil {
				done <- err
				return err
			}
		}
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	s, err := cli.Stream(ctxT(t), addr, wire.ProtoStore, "Forever", wrapperspb.Int32(0))
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := s.Recv(&wrapperspb.Int32Value{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler's send did not fail after Close")
	}
}

func TestBatch(t *testing.T) {
	srv := newBus(t, "srv")
	var mu sync.Mutex
	var got []int32
	var frames int
	var from string
	bus.HandleBatch(srv, wire.ProtoRaft, "Msgs", func(ctx context.Context, p bus.Peer, batch []*wrapperspb.Int32Value) {
		mu.Lock()
		defer mu.Unlock()
		frames++
		from = p.Name
		for _, m := range batch {
			got = append(got, m.Value)
		}
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	const frames0, per = 50, 7
	var next int32
	for range frames0 {
		msgs := make([]proto.Message, per)
		for j := range msgs {
			msgs[j] = wrapperspb.Int32(next)
			next++
		}
		if err := cli.SendBatch(ctxT(t), addr, wire.ProtoRaft, "Msgs", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	eventually.True(t, 10*time.Second, "every batch delivered", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == frames0*per })
	mu.Lock()
	defer mu.Unlock()
	for i, v := range got {
		if v != int32(i) {
			t.Fatalf("message %d = %d: out of order", i, v)
		}
	}
	if frames != frames0 || from != "cli" {
		t.Fatalf("frames = %d from %q", frames, from)
	}
}

func TestBatchConcurrentSenders(t *testing.T) {
	srv := newBus(t, "srv")
	var n atomic.Int64
	bus.HandleBatch(srv, wire.ProtoRaft, "Msgs", func(ctx context.Context, p bus.Peer, batch []*wrapperspb.Int32Value) {
		n.Add(int64(len(batch)))
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				if err := cli.SendBatch(ctxT(t), addr, wire.ProtoRaft, "Msgs", wrapperspb.Int32(1), wrapperspb.Int32(2)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	eventually.True(t, 10*time.Second, "every concurrent batch delivered", func() bool { return n.Load() == 16*20*2 })
}

func TestDatagram(t *testing.T) {
	srv := newBus(t, "srv")
	got := make(chan string, 100)
	srv.HandleDatagram(wire.ProtoGossip, func(from bus.Peer, payload []byte) {
		select {
		case got <- from.Name + ":" + string(payload):
		default:
		}
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	if err := cli.SendDatagram(ctxT(t), addr, wire.ProtoGossip, make([]byte, bus.MaxDatagramPayload+1)); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Fatalf("oversized datagram: err = %v", err)
	}
	// Datagrams are unreliable: resend until one arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := cli.SendDatagram(ctxT(t), addr, wire.ProtoGossip, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s != "cli:ping" {
				t.Fatalf("got %q", s)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no datagram arrived")
		}
	}
}

// TestConcurrentCallers: concurrent calls each get their own answer, and
// travel on the calls stream of their connection, one per connection.
func TestConcurrentCallers(t *testing.T) {
	srv, reg := newBusReg(t, "srv")
	echo(srv)
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			for j := range 20 {
				in := fmt.Sprintf("%d-%d", i, j)
				var out wrapperspb.BytesValue
				if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte(in)), &out); err != nil {
					t.Error(err)
					return
				}
				if string(out.Value) != in {
					t.Errorf("got %q want %q", out.Value, in)
					return
				}
			}
		})
	}
	wg.Wait()
	conns := metricValue(t, reg, "pleiades_bus_connections", nil)
	if got := metricValue(t, reg, "pleiades_bus_calls_streams", nil); got != conns || got < 1 {
		t.Fatalf("calls streams served = %v for %v connections; want one per connection", got, conns)
	}
}

func TestOtherCARefused(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	other, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	oc, err := other.Config("intruder")
	if err != nil {
		t.Fatal(err)
	}
	cli := newBus(t, "intruder", func(c *bus.Config) { c.TLS = oc })
	start(t, cli)
	err = cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	t.Logf("intruder: %v", err)
	if !errors.Is(err, bus.ErrUnauthenticated) {
		t.Fatalf("call with a foreign certificate: err = %v, want unauthenticated", err)
	}
	// And the reverse: a good client refuses a server of another CA.
	bad := newBus(t, "srv2", func(c *bus.Config) { c.TLS = oc })
	echo(bad)
	baddr := start(t, bad)
	good := newBus(t, "good")
	start(t, good)
	err = good.Call(ctxT(t), baddr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	t.Logf("foreign server: %v", err)
	if !errors.Is(err, bus.ErrUnauthenticated) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("call to a foreign server: err = %v, want unauthenticated naming the certificate", err)
	}
	// A client that trusts the server's CA but presents a certificate of
	// another: the server refuses it, and the client learns why.
	mixed := tlsConfig(t, "mixed").Clone()
	mixed.Certificates = oc.Certificates
	half := newBus(t, "mixed", func(c *bus.Config) { c.TLS = mixed })
	start(t, half)
	err = half.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	t.Logf("refused client certificate: %v", err)
	if !errors.Is(err, bus.ErrUnauthenticated) {
		t.Fatalf("call with a certificate the server refuses: err = %v, want unauthenticated", err)
	}
}

func TestOversized(t *testing.T) {
	const limit = 64 << 10
	srv := newBus(t, "srv", func(c *bus.Config) { c.MaxFrameSize = limit })
	echo(srv)
	addr := start(t, srv)
	big := newBus(t, "big", func(c *bus.Config) { c.MaxFrameSize = 4 * limit })
	start(t, big)

	// Send side: refused before anything is sent.
	small := newBus(t, "small", func(c *bus.Config) { c.MaxFrameSize = limit })
	start(t, small)
	err := small.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 2*limit)), &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrResourceExhausted) {
		t.Fatalf("send side: err = %v", err)
	}
	// Receive side: the server refuses the frame, the connection keeps serving.
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20 {
			if err := big.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("ok")), &wrapperspb.BytesValue{}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	err = big.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 2*limit)), &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrResourceExhausted) || !strings.Contains(err.Error(), "frame too large") {
		t.Fatalf("receive side: err = %v", err)
	}
	wg.Wait()
	if err := big.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("ok")), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
}

// rawDial opens a bare QUIC connection to a bus at addr, with a cluster
// certificate and the bus's ALPN; it is closed in cleanup.
func rawDial(t *testing.T, addr string) *quic.Conn {
	t.Helper()
	tc := tlsConfig(t, "raw").Clone()
	tc.NextProtos = []string{bus.ALPN}
	conn, err := quic.DialAddr(ctxT(t), addr, tc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// TestBadPreamble opens streams from a raw QUIC client and sends garbage.
func TestBadPreamble(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	conn := rawDial(t, addr)
	cases := map[string][]byte{
		"magic":     []byte("HTTP/1.1"),
		"version":   {'P', 'L', 'D', 'S', 9, byte(wire.ProtoKV)},
		"protocol":  {'P', 'L', 'D', 'S', 1, 200},
		"truncated": append(wire.AppendPreamble(nil, wire.ProtoKV), 0, 0, 1, 0, 1, 2),
		"oversized": append(wire.AppendPreamble(nil, wire.ProtoKV), 0xff, 0xff, 0xff, 0xff),
		"garbage":   append(wire.AppendPreamble(nil, wire.ProtoKV), 0, 0, 0, 3, 0xff, 0xff, 0xff),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			str, err := conn.OpenStreamSync(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := str.Write(raw); err != nil {
				t.Fatal(err)
			}
			str.Close()
			_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(str)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(b) == 0 {
				t.Fatal("no reason sent")
			}
		})
	}
	// The connection still serves a well-formed call.
	str, err := conn.OpenStreamSync(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	req := wire.AppendPreamble(nil, wire.ProtoKV)
	body := []byte{0x0a, 4, 'E', 'c', 'h', 'o'}
	req = wire.AppendFrame(req, body)
	if _, err := str.Write(req); err != nil {
		t.Fatal(err)
	}
	str.Close()
	_ = str.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(str); err != nil {
		t.Fatal(err)
	}
}

func TestPeerRestart(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	cli := newBus(t, "cli", func(c *bus.Config) { c.DialTimeout = 500 * time.Millisecond })
	start(t, cli)
	call := func() error {
		return cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "calls failing once the server stopped", func() bool { return call() != nil })
	srv2 := newBus(t, "srv", func(c *bus.Config) { c.ListenAddr = addr })
	echo(srv2)
	start(t, srv2)
	eventually.True(t, 10*time.Second, "calls succeeding on the restarted server", func() bool { return call() == nil })
}

func TestStopDrains(t *testing.T) {
	srv := newBus(t, "srv")
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	bus.HandleUnary(srv, wire.ProtoKV, "Slow", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		entered <- struct{}{}
		<-release
		return wrapperspb.Bytes([]byte("done")), nil
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	errc := make(chan error, 1)
	var out wrapperspb.BytesValue
	go func() { errc <- cli.Call(ctxT(t), addr, wire.ProtoKV, "Slow", &wrapperspb.BytesValue{}, &out) }()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(ctxT(t)) }()
	// New calls are refused while draining.
	eventually.True(t, 10*time.Second, "new calls refused while draining", func() bool {
		err := srv.Call(ctxT(t), addr, wire.ProtoKV, "Slow", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		return errors.Is(err, bus.ErrUnavailable)
	})
	close(release)
	if err := <-errc; err != nil || string(out.Value) != "done" {
		t.Fatalf("in-flight call: %v %q", err, out.Value)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestStopTimeoutCancelsHandlers(t *testing.T) {
	srv := newBus(t, "srv")
	started := make(chan time.Time, 1)
	done := make(chan error, 1)
	blocker(srv, started, done)
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	errc := make(chan error, 1)
	go func() {
		errc <- cli.Call(ctxT(t), addr, wire.ProtoKV, "Block", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Stop(ctx); err == nil {
		t.Fatal("Stop with a stuck handler returned nil")
	}
	if err := <-done; err == nil {
		t.Fatal("handler ctx not cancelled")
	}
	if err := <-errc; err == nil {
		t.Fatal("call succeeded")
	}
	if err := srv.Stop(context.Background()); err == nil {
		t.Fatal("second Stop should return the first result")
	}
}

func TestNewValidates(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for name, c := range map[string]struct {
		cfg  bus.Config
		deps bus.Deps
	}{
		"no addr":                          {bus.Config{TLS: &tls.Config{}}, bus.Deps{Logger: log}},
		"no tls":                           {bus.Config{ListenAddr: ":0"}, bus.Deps{Logger: log}},
		"no logger":                        {bus.Config{ListenAddr: ":0", TLS: &tls.Config{}}, bus.Deps{}},
		"negative":                         {bus.Config{ListenAddr: ":0", TLS: &tls.Config{}, MaxFrameSize: -1}, bus.Deps{Logger: log}},
		"client certificates not required": {bus.Config{ListenAddr: ":0", TLS: &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: x509.NewCertPool()}}, bus.Deps{Logger: log}},
		"no client CAs":                    {bus.Config{ListenAddr: ":0", TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}}, bus.Deps{Logger: log}},
	} {
		if _, err := bus.New(c.cfg, c.deps); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	reg := prometheus.NewRegistry()
	verified := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	if _, err := bus.New(bus.Config{ListenAddr: ":0", TLS: verified}, bus.Deps{Logger: log, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.New(bus.Config{ListenAddr: ":0", TLS: verified}, bus.Deps{Logger: log, Registerer: reg}); err == nil {
		t.Fatal("second Bus on one registry succeeded")
	}
}

// metricValue returns the value of the metric name with the given labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func TestSingleDialAndMetrics(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	reg := prometheus.NewRegistry()
	cli, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tlsConfig(t, "cli")},
		bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	start(t, cli)
	defer cli.Stop(context.Background())
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_ = cli.Call(ctxT(t), addr, wire.ProtoKV, "Nope", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"pleiades_bus_calls_total", map[string]string{"protocol": "kv", "method": "Echo", "code": "OK"}, 64},
		{"pleiades_bus_calls_total", map[string]string{"method": "Nope", "code": "UNIMPLEMENTED"}, 1},
		{"pleiades_bus_call_duration_seconds", map[string]string{"method": "Echo"}, 64},
	} {
		if got := metricValue(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Concurrent first calls share dials: at most one per connection slot.
	dials := metricValue(t, reg, "pleiades_bus_dials_total", map[string]string{"result": "ok"})
	if conns := metricValue(t, reg, "pleiades_bus_connections", nil); dials < 1 || dials > 4 || conns != dials {
		t.Errorf("dials = %v, connections = %v; want equal, 1..4", dials, conns)
	}
	if got := metricValue(t, reg, "pleiades_bus_sent_bytes_total", nil); got < 64*10 {
		t.Errorf("sent bytes = %v", got)
	}
	if got := metricValue(t, reg, "pleiades_bus_received_bytes_total", nil); got < 64*9 {
		t.Errorf("received bytes = %v", got)
	}
}

func TestRedialBackoff(t *testing.T) {
	// A bound UDP socket that never answers: dials time out.
	dead := newBus(t, "dead")
	deadAddr := start(t, dead)
	if err := dead.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cli := newBus(t, "cli", func(c *bus.Config) {
		c.DialTimeout = 200 * time.Millisecond
		c.RedialBackoffMin = time.Hour
		c.RedialBackoffMax = time.Hour
	})
	start(t, cli)
	err := cli.Call(ctxT(t), deadAddr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("first call: %v", err)
	}
	// Within the backoff, calls fail at once without dialing.
	t0 := time.Now()
	err = cli.Call(ctxT(t), deadAddr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrUnavailable) || !strings.Contains(err.Error(), "next attempt") {
		t.Fatalf("second call: %v", err)
	}
	if d := time.Since(t0); d > 150*time.Millisecond {
		t.Logf("fail-fast call took %v", d)
	}
}

func TestCallerCancelWhileDialing(t *testing.T) {
	// A socket that reads nothing: the dial hears no answer at all (a
	// port with nothing on it would answer the probe at once).
	hole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	deadAddr := hole.LocalAddr().String()
	cli := newBus(t, "cli", func(c *bus.Config) { c.DialTimeout = 10 * time.Second })
	start(t, cli)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = cli.Call(ctx, deadAddr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrDeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestBatchReopensAfterPeerRestart(t *testing.T) {
	var n atomic.Int64
	serve := func(b *bus.Bus) {
		bus.HandleBatch(b, wire.ProtoRaft, "Msgs", func(ctx context.Context, p bus.Peer, batch []*wrapperspb.Int32Value) {
			n.Add(int64(len(batch)))
		})
	}
	srv := newBus(t, "srv")
	serve(srv)
	addr := start(t, srv)
	cli := newBus(t, "cli", func(c *bus.Config) { c.DialTimeout = 500 * time.Millisecond })
	start(t, cli)
	if err := cli.SendBatch(ctxT(t), addr, wire.ProtoRaft, "Msgs", wrapperspb.Int32(1)); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the first batch delivered", func() bool { return n.Load() == 1 })
	if err := srv.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	srv2 := newBus(t, "srv", func(c *bus.Config) { c.ListenAddr = addr })
	serve(srv2)
	start(t, srv2)
	// Batches are best effort across a restart: keep sending until one
	// arrives on the new server.
	eventually.True(t, 10*time.Second, "a batch delivered to the restarted server", func() bool {
		_ = cli.SendBatch(ctxT(t), addr, wire.ProtoRaft, "Msgs", wrapperspb.Int32(1))
		return n.Load() >= 2
	})
}

// TestBatchesShareTheLowerPeersConnection checks that between two buses
// batches both ways travel on the connection the bus with the lower
// address dialed: the other one sends on the connection it accepted, and
// dials only while there is none.
func TestBatchesShareTheLowerPeersConnection(t *testing.T) {
	type node struct {
		b   *bus.Bus
		reg *prometheus.Registry
		mu  sync.Mutex
		got []int32
	}
	var nodes [2]*node
	for i := range nodes {
		n := &node{reg: prometheus.NewRegistry()}
		b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tlsConfig(t, fmt.Sprint("n", i))},
			bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: n.reg})
		if err != nil {
			t.Fatal(err)
		}
		n.b = b
		bus.HandleBatch(b, wire.ProtoRaft, "Msgs", func(ctx context.Context, p bus.Peer, batch []*wrapperspb.Int32Value) {
			n.mu.Lock()
			defer n.mu.Unlock()
			for _, m := range batch {
				n.got = append(n.got, m.Value)
			}
		})
		start(t, b)
		t.Cleanup(func() { _ = b.Stop(context.Background()) })
		nodes[i] = n
	}
	lo, hi := nodes[0], nodes[1]
	if lo.b.Addr().String() > hi.b.Addr().String() {
		lo, hi = hi, lo
	}
	send := func(from, to *node, v int32) {
		t.Helper()
		if err := from.b.SendBatch(ctxT(t), to.b.Addr().String(), wire.ProtoRaft, "Msgs", wrapperspb.Int32(v)); err != nil {
			t.Fatal(err)
		}
	}
	received := func(n *node, want int) {
		t.Helper()
		eventually.True(t, 10*time.Second, "every batch delivered", func() bool { n.mu.Lock(); defer n.mu.Unlock(); return len(n.got) == want })
	}
	dials := func(n *node) float64 {
		return metricValue(t, n.reg, "pleiades_bus_dials_total", map[string]string{"result": "ok"})
	}

	send(lo, hi, 0) // lo dials
	received(hi, 1)
	for i := range 20 {
		send(hi, lo, int32(i))
	}
	received(lo, 20)
	if d := dials(hi); d != 0 {
		t.Errorf("the higher bus dialed %v times; want 0 (it sends on the lower one's connection)", d)
	}
	if c := metricValue(t, hi.reg, "pleiades_bus_connections", nil); c != 1 {
		t.Errorf("the higher bus has %v connections; want 1", c)
	}
	lo.mu.Lock()
	for i, v := range lo.got {
		if v != int32(i) {
			t.Errorf("batch %d = %d: out of order", i, v)
		}
	}
	lo.mu.Unlock()
}

// TestNoListenerFailsFast: a call to a port nothing listens on fails with
// ReasonNoListener (the dial's probe heard the port unreachable) rather
// than waiting out the dial timeout, here an hour; so does a call made
// during the redial backoff that follows.
func TestNoListenerFailsFast(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	cli := newBus(t, "cli", func(c *bus.Config) { c.DialTimeout = time.Hour })
	start(t, cli)
	for i := range 2 {
		err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		if !errors.Is(err, bus.ErrUnavailable) || bus.ReasonOf(err) != bus.ReasonNoListener {
			t.Fatalf("call %d to %s with nothing listening: %v; want unavailable, reason %s", i, addr, err, bus.ReasonNoListener)
		}
		t.Logf("call %d: %v", i, err)
	}
}

// TestNoListenerDoesNotTravel: a handler whose own dial found nothing
// listening (a forward, say) answers Unavailable, but not with
// ReasonNoListener: its caller reached it, and would otherwise take the
// handler's address for one where nothing listens.
func TestNoListenerDoesNotTravel(t *testing.T) {
	srv := newBus(t, "srv")
	bus.HandleUnary(srv, wire.ProtoKV, "Forward", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		return nil, fmt.Errorf("forward: %w", &bus.Error{Code: bus.CodeUnavailable, Reason: bus.ReasonNoListener, Message: "dial 127.0.0.1:1: nothing listens there"})
	})
	addr := start(t, srv)
	cli := newBus(t, "cli")
	start(t, cli)
	err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Forward", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrUnavailable) || bus.ReasonOf(err) != "" || !strings.Contains(err.Error(), "nothing listens") {
		t.Fatalf("a handler's own no-listener failure reached the caller as %v (reason %q); want Unavailable without the reason", err, bus.ReasonOf(err))
	}
}
