package bus_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func tcpCalls(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metricValue(t, reg, "pleiades_bus_tcp_calls_total", nil)
}

// tcpServer returns a started bus with KV Echo and Who (the caller's
// name and address, the request's padding ignored) and its address.
func tcpServer(t *testing.T, opts ...opt) (*bus.Bus, string) {
	t.Helper()
	srv := newBus(t, "srv", opts...)
	echo(srv)
	bus.HandleUnary(srv, wire.ProtoKV, "Who", func(ctx context.Context, _ *wrapperspb.BytesValue) (*wrapperspb.StringValue, error) {
		p, _ := bus.PeerFromContext(ctx)
		return wrapperspb.String(p.Name + "@" + p.Addr), nil
	})
	return srv, start(t, srv)
}

// TestTCPLargeCalls: the bus listens on TCP at its UDP port; requests
// over 16 KiB go over TCP, smaller ones over QUIC, and the handler sees
// the caller's certificate either way.
func TestTCPLargeCalls(t *testing.T) {
	srv, addr := tcpServer(t)
	ta := srv.TCPAddr()
	if ta == nil || ta.String() != addr {
		t.Fatalf("TCP listener at %v, want %s (the UDP address)", ta, addr)
	}
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	tcp := 0
	for _, size := range []int{0, 4096, 16<<10 - 64, 16<<10 + 1, 60 << 10, 64<<10 + 1, 1 << 20, 4 << 20} {
		in := make([]byte, size)
		for i := range in {
			in[i] = byte(i * 7)
		}
		var out wrapperspb.BytesValue
		if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if string(out.Value) != string(in) {
			t.Fatalf("echo of %d bytes came back as %d bytes", size, len(out.Value))
		}
		if size > 16<<10 {
			tcp++
		}
		if got := tcpCalls(t, reg); got != float64(tcp) {
			t.Fatalf("after %d bytes: %v TCP calls, want %d", size, got, tcp)
		}
	}
	for _, tt := range []struct {
		size int
		via  string
	}{{10, "cli@" + cli.Addr().String()}, {100 << 10, "cli@tcp:127.0.0.1:"}} {
		var who wrapperspb.StringValue
		if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Who", wrapperspb.Bytes(make([]byte, tt.size)), &who); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(who.Value, tt.via) {
			t.Fatalf("%d bytes: peer %q, want %q...", tt.size, who.Value, tt.via)
		}
	}
}

// TestTCPConcurrentLargeCalls: concurrent large calls share the pool of
// TCP connections and each gets its own answer.
func TestTCPConcurrentLargeCalls(t *testing.T) {
	_, addr := tcpServer(t)
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	const callers, each = 16, 8
	errc := make(chan error, callers)
	for i := range callers {
		go func() {
			for j := range each {
				in := make([]byte, 80<<10)
				copy(in, fmt.Sprintf("%d/%d", i, j))
				var out wrapperspb.BytesValue
				if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
					errc <- err
					return
				}
				if string(out.Value) != string(in) {
					errc <- fmt.Errorf("call %d/%d: wrong answer", i, j)
					return
				}
			}
			errc <- nil
		}()
	}
	for range callers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got := tcpCalls(t, reg); got != callers*each {
		t.Fatalf("%v TCP calls, want %d", got, callers*each)
	}
}

// TestTCPAuthorization: the rules apply over TCP as over QUIC: a client
// certificate is refused a node-only method with the same code, and the
// handler does not run.
func TestTCPAuthorization(t *testing.T) {
	srv := newBus(t, "srv")
	var runs atomic.Int64
	bus.HandleUnary(srv, wire.ProtoKV, "NodeOnly", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		runs.Add(1)
		return &wrapperspb.BytesValue{}, nil
	})
	srv.Authorize(wire.ProtoKV, bus.Rules{"NodeOnly": {Roles: bus.Nodes}})
	addr := start(t, srv)
	tlsConfig(t, "ca")
	for _, tt := range []struct {
		role tlsutil.Role
		ok   bool
	}{
		{tlsutil.ClientRole([]byte("k")), false},
		{tlsutil.Role{Kind: tlsutil.KindAdmin}, false},
		{tlsutil.Role{Kind: tlsutil.KindNode, NodeID: 7}, true},
	} {
		var codes [2]bus.Code
		for i, viaTCP := range []bool{true, false} {
			tc, err := testCA.Issue(tt.role.Kind.String(), tt.role)
			if err != nil {
				t.Fatal(err)
			}
			cli, reg := newBusReg(t, "unused", func(c *bus.Config) { c.TLS, c.DisableTCP = tc, !viaTCP })
			start(t, cli)
			before := runs.Load()
			err = cli.Call(ctxT(t), addr, wire.ProtoKV, "NodeOnly", wrapperspb.Bytes(make([]byte, 100<<10)), &wrapperspb.BytesValue{})
			if tt.ok != (err == nil) {
				t.Fatalf("%s tcp=%v: err %v, want allowed=%v", tt.role, viaTCP, err, tt.ok)
			}
			if !tt.ok && (!errors.Is(err, bus.ErrPermissionDenied) || !strings.Contains(err.Error(), "NodeOnly")) {
				t.Fatalf("%s tcp=%v: err %v, want PermissionDenied naming the method", tt.role, viaTCP, err)
			}
			if ran := runs.Load() - before; ran != int64(btoi(tt.ok)) {
				t.Fatalf("%s tcp=%v: handler ran %d times", tt.role, viaTCP, ran)
			}
			if got := tcpCalls(t, reg); got != float64(btoi(viaTCP)) {
				t.Fatalf("%s tcp=%v: %v TCP calls", tt.role, viaTCP, got)
			}
			codes[i] = bus.CodeOf(err)
		}
		if codes[0] != codes[1] {
			t.Fatalf("%s: code %v over TCP, %v over QUIC", tt.role, codes[0], codes[1])
		}
	}
}

// TestTCPFallback: a peer with its TCP listener off gets large calls
// over QUIC (below 64 KiB on the calls stream, above on streams of their
// own); a caller with TCP off sends them over QUIC.
func TestTCPFallback(t *testing.T) {
	for _, tt := range []struct {
		name           string
		srvTCP, cliTCP bool
	}{
		{"peer without TCP", false, true},
		{"caller with TCP off", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := tcpServer(t, func(c *bus.Config) { c.DisableTCP = !tt.srvTCP })
			if (srv.TCPAddr() != nil) != tt.srvTCP {
				t.Fatalf("TCP listener at %v, want one: %v", srv.TCPAddr(), tt.srvTCP)
			}
			cli, reg := newBusReg(t, "cli", func(c *bus.Config) { c.DisableTCP = !tt.cliTCP })
			start(t, cli)
			for _, size := range []int{30 << 10, 200 << 10, 30 << 10, 200 << 10} {
				in := make([]byte, size)
				in[5] = 5
				var out wrapperspb.BytesValue
				if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
					t.Fatal(err)
				}
				if string(out.Value) != string(in) {
					t.Fatal("wrong answer")
				}
			}
			if got := tcpCalls(t, reg); got != 0 {
				t.Fatalf("%v TCP calls", got)
			}
		})
	}
}

// TestTCPNotBusOnPort: when the peer's TCP port is held by something
// that does not speak the bus's TLS, large calls take QUIC and succeed.
func TestTCPNotBusOnPort(t *testing.T) {
	srv := newBus(t, "srv", func(c *bus.Config) { c.DisableTCP = true })
	echo(srv)
	addr := start(t, srv)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("TCP port of %s taken: %v", addr, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.0 400 nope\r\n\r\n"))
			_ = c.Close()
		}
	}()
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	for range 2 {
		if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 100<<10)), &wrapperspb.BytesValue{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := tcpCalls(t, reg); got != 0 {
		t.Fatalf("%v TCP calls", got)
	}
}

// TestTCPServerRestart: after the peer restarts on its address, large
// calls reach the new process over TCP again.
func TestTCPServerRestart(t *testing.T) {
	srv, addr := tcpServer(t)
	cli, reg := newBusReg(t, "cli", func(c *bus.Config) { c.RedialBackoffMin, c.RedialBackoffMax = 10*time.Millisecond, 50*time.Millisecond })
	start(t, cli)
	call := func() error {
		return cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 100<<10)), &wrapperspb.BytesValue{})
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := call(); err == nil {
		t.Fatal("call succeeded with the server stopped")
	}
	again := newBus(t, "srv", func(c *bus.Config) { c.ListenAddr = addr })
	var runs atomic.Int64
	bus.HandleUnary(again, wire.ProtoKV, "Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		runs.Add(1)
		return r, nil
	})
	start(t, again)
	before := tcpCalls(t, reg)
	eventually.True(t, 10*time.Second, "large calls over TCP to the restarted server", func() bool {
		return call() == nil && tcpCalls(t, reg) > before
	})
	if runs.Load() == 0 {
		t.Fatal("the restarted server ran no call")
	}
}

// TestTCPIdleClose: a TCP connection unused for IdleTimeout is closed on
// both sides, leaving no goroutine behind; the next large call redials.
func TestTCPIdleClose(t *testing.T) {
	srv, sreg := newBusReg(t, "srv")
	echo(srv)
	addr := start(t, srv)
	cli, reg := newBusReg(t, "cli", func(c *bus.Config) { c.IdleTimeout = 200 * time.Millisecond })
	start(t, cli)
	base := goleak.IgnoreCurrent()
	call := func() {
		t.Helper()
		if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 100<<10)), &wrapperspb.BytesValue{}); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= 2; round++ {
		call()
		if got := metricValue(t, sreg, "pleiades_bus_calls_streams", nil); got != 1 {
			t.Fatalf("round %d: server serves %v calls streams, want 1", round, got)
		}
		eventually.True(t, 10*time.Second, "idle TCP connection closed on both sides", func() bool {
			return metricValue(t, reg, "pleiades_bus_idle_closes_total", nil) == float64(round) &&
				metricValue(t, sreg, "pleiades_bus_calls_streams", nil) == 0
		})
		if err := goleak.Find(base); err != nil {
			t.Fatalf("round %d: goroutines left after the idle close: %v", round, err)
		}
	}
	if got := tcpCalls(t, reg); got != 2 {
		t.Fatalf("%v TCP calls, want 2", got)
	}
}

// rawTCP opens a TLS connection to the bus's TCP listener by hand, with a
// node certificate, and sends the calls preamble.
func rawTCP(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	tc := tlsConfig(t, "raw").Clone()
	tc.NextProtos = []string{bus.ALPN}
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.WritePreamble(c, wire.ProtoCalls); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTCPBadFrames: a frame over the server's limit, or a malformed one,
// ends that TCP connection after a Response saying why; the server keeps
// serving other connections. A caller whose limit is above the peer's
// gets ResourceExhausted for its call.
func TestTCPBadFrames(t *testing.T) {
	const limit = 1 << 20
	_, addr := tcpServer(t, func(c *bus.Config) { c.MaxFrameSize = limit })

	c := rawTCP(t, addr)
	var hdr [wire.FrameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], limit+1)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	expectRefusal(t, c, bus.CodeResourceExhausted, "frame too large")

	c = rawTCP(t, addr)
	if _, err := c.Write(wire.AppendFrame(nil, []byte{0xff, 0xff, 0xff})); err != nil {
		t.Fatal(err)
	}
	expectRefusal(t, c, bus.CodeInternal, "protocol error")

	big, reg := newBusReg(t, "big", func(c *bus.Config) { c.MaxFrameSize = 4 * limit })
	start(t, big)
	err := big.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 2*limit)), &wrapperspb.BytesValue{})
	if !errors.Is(err, bus.ErrResourceExhausted) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("request over the peer's limit: %v, want ResourceExhausted", err)
	}
	if err := big.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, limit/2)), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
	if got := tcpCalls(t, reg); got != 2 {
		t.Fatalf("%v TCP calls, want 2", got)
	}
}

// TestTCPBindPortTaken: a bus on a fixed port whose TCP side is taken
// starts without TCP; a peer's large calls to it take QUIC and succeed.
func TestTCPBindPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("UDP port of %s taken: %v", addr, err)
	}
	_ = pc.Close()
	srv := newBus(t, "srv", func(c *bus.Config) { c.ListenAddr = addr })
	echo(srv)
	if err := srv.Start(ctxT(t)); err != nil {
		t.Fatalf("Start with the TCP port taken: %v", err)
	}
	if srv.TCPAddr() != nil {
		t.Fatalf("TCP listener at %v on a taken port", srv.TCPAddr())
	}
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 100<<10)), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
	if got := tcpCalls(t, reg); got != 0 {
		t.Fatalf("%v TCP calls to a listener that is not a bus", got)
	}
}
