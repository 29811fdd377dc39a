package bus_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/proto/buspb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// socketPath returns a socket path in a fresh directory short enough for
// a Unix socket (t.TempDir's names grow with the test's name).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// localServer returns a started bus listening on a local socket too, with
// KV Echo and Who (the caller's name and address), and its socket path.
func localServer(t *testing.T, opts ...opt) (*bus.Bus, string, string) {
	t.Helper()
	srv := newBus(t, "srv", opts...)
	echo(srv)
	bus.HandleUnary(srv, wire.ProtoKV, "Who", func(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		p, _ := bus.PeerFromContext(ctx)
		return wrapperspb.String(p.Name + "@" + p.Addr), nil
	})
	path := socketPath(t)
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	return srv, start(t, srv), path
}

func localCalls(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metricValue(t, reg, "pleiades_bus_local_calls_total", nil)
}

// TestLocalCalls: unary calls to a peer with a local socket go over it,
// requests over 64 KiB too (on connections of their own); the handler
// sees the caller's certificate; the socket is mode 0600 and is removed
// by Stop.
func TestLocalCalls(t *testing.T) {
	srv, addr, path := localServer(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	local := 0
	for _, size := range []int{0, 1, 4096, 60 << 10, 1 << 20} {
		in := make([]byte, size)
		for i := range in {
			in[i] = byte(i)
		}
		var out wrapperspb.BytesValue
		if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if string(out.Value) != string(in) {
			t.Fatalf("echo of %d bytes came back as %d bytes", size, len(out.Value))
		}
		local++
		if got := localCalls(t, reg); got != float64(local) {
			t.Fatalf("after %d bytes: %v local calls, want %d", size, got, local)
		}
	}
	var who wrapperspb.StringValue
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Who", wrapperspb.String(""), &who); err != nil {
		t.Fatal(err)
	}
	if want := "cli@unix:" + path; who.Value != want {
		t.Fatalf("peer = %q, want %q", who.Value, want)
	}
	if err := srv.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket after Stop: %v, want it gone", err)
	}
}

// TestLocalConcurrentCallers: many callers share the local connections.
func TestLocalConcurrentCallers(t *testing.T) {
	_, addr, path := localServer(t)
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	const callers, each = 64, 20
	errc := make(chan error, callers)
	for i := range callers {
		go func() {
			for j := range each {
				in := fmt.Appendf(nil, "%d/%d", i, j)
				var out wrapperspb.BytesValue
				if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes(in), &out); err != nil {
					errc <- err
					return
				}
				if string(out.Value) != string(in) {
					errc <- fmt.Errorf("sent %q, got %q", in, out.Value)
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
	if got := localCalls(t, reg); got != callers*each {
		t.Fatalf("%v local calls, want %d", got, callers*each)
	}
}

// TestLocalAuthorization: the rules apply on the local socket exactly as
// on QUIC: a client certificate is refused a node-only method.
func TestLocalAuthorization(t *testing.T) {
	srv := newBus(t, "srv")
	var runs atomic.Int64
	bus.HandleUnary(srv, wire.ProtoKV, "NodeOnly", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		runs.Add(1)
		return r, nil
	})
	srv.Authorize(wire.ProtoKV, bus.Rules{"NodeOnly": {Roles: bus.Nodes}})
	path := socketPath(t)
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
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
		tc, err := testCA.Issue(tt.role.Kind.String(), tt.role)
		if err != nil {
			t.Fatal(err)
		}
		cli, reg := newBusReg(t, "unused", func(c *bus.Config) { c.TLS = tc })
		start(t, cli)
		if err := cli.AddLocalPeer(addr, path); err != nil {
			t.Fatal(err)
		}
		before := runs.Load()
		err = cli.Call(ctxT(t), addr, wire.ProtoKV, "NodeOnly", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{})
		if tt.ok != (err == nil) {
			t.Fatalf("%s: err %v, want allowed=%v", tt.role, err, tt.ok)
		}
		if !tt.ok && (!errors.Is(err, bus.ErrPermissionDenied) || !strings.Contains(err.Error(), "NodeOnly")) {
			t.Fatalf("%s: err %v, want PermissionDenied naming the method", tt.role, err)
		}
		if ran := runs.Load() - before; ran != int64(btoi(tt.ok)) {
			t.Fatalf("%s: handler ran %d times", tt.role, ran)
		}
		if got := localCalls(t, reg); got != 1 {
			t.Fatalf("%s: %v local calls, want 1", tt.role, got)
		}
	}
}

// TestLocalFallback: with the socket missing calls take QUIC; once it
// appears, calls move to it after the redial backoff.
func TestLocalFallback(t *testing.T) {
	srv := newBus(t, "srv")
	echo(srv)
	addr := start(t, srv)
	path := socketPath(t)
	cli, reg := newBusReg(t, "cli", func(c *bus.Config) { c.RedialBackoffMin, c.RedialBackoffMax = 10*time.Millisecond, 20*time.Millisecond })
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	call := func() error {
		return cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{})
	}
	for range 3 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if got := localCalls(t, reg); got != 0 {
		t.Fatalf("%v local calls with no socket", got)
	}
	// Another bus takes the socket path: the next calls to addr reach it.
	other := newBus(t, "other")
	var otherRuns atomic.Int64
	bus.HandleUnary(other, wire.ProtoKV, "Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		otherRuns.Add(1)
		return r, nil
	})
	if err := other.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	start(t, other)
	eventually.True(t, 10*time.Second, "calls over the socket once it exists", func() bool {
		return call() == nil && localCalls(t, reg) > 0
	})
	if otherRuns.Load() == 0 {
		t.Fatal("local calls did not reach the socket's bus")
	}
}

// TestLocalCancel: a caller that gives up cancels the handler's context.
func TestLocalCancel(t *testing.T) {
	srv := newBus(t, "srv")
	started := make(chan time.Time, 1)
	done := make(chan error, 1)
	blocker(srv, started, done)
	echo(srv)
	path := socketPath(t)
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	addr := start(t, srv)
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		errc <- cli.Call(ctx, addr, wire.ProtoKV, "Block", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, bus.ErrCanceled) {
		t.Fatalf("cancelled call: %v, want Canceled", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler ctx: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler not cancelled")
	}
	// The connection keeps serving.
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
	if got := localCalls(t, reg); got != 2 {
		t.Fatalf("%v local calls, want 2", got)
	}
}

// TestLocalStopDrains: Stop lets a call in flight on the socket finish and
// deliver its answer, and refuses new calls.
func TestLocalStopDrains(t *testing.T) {
	srv := newBus(t, "srv")
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	bus.HandleUnary(srv, wire.ProtoKV, "Slow", func(ctx context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		entered <- struct{}{}
		<-release
		return wrapperspb.Bytes([]byte("done")), nil
	})
	path := socketPath(t)
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	addr := start(t, srv)
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	var out wrapperspb.BytesValue
	go func() { errc <- cli.Call(ctxT(t), addr, wire.ProtoKV, "Slow", &wrapperspb.BytesValue{}, &out) }()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop(ctxT(t)) }()
	eventually.True(t, 10*time.Second, "new calls refused while draining", func() bool {
		err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Slow", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		return errors.Is(err, bus.ErrUnavailable)
	})
	close(release)
	if err := <-errc; err != nil || string(out.Value) != "done" {
		t.Fatalf("in-flight call: %v %q", err, out.Value)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if localCalls(t, reg) == 0 {
		t.Fatal("no call went over the socket")
	}
}

// rawLocal opens a TLS connection to the local socket at path by hand,
// with a node certificate, and sends the preamble of protocol p.
func rawLocal(t *testing.T, path string, p wire.Protocol) *tls.Conn {
	t.Helper()
	raw, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	tc := tlsConfig(t, "raw").Clone()
	tc.NextProtos = []string{bus.ALPN}
	c := tls.Client(raw, tc)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.WritePreamble(c, p); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLocalMalformedFrame: on the socket a frame without a call id ends
// the connection, after a Response saying so; the server keeps serving
// new ones. A preamble naming
// another protocol is refused with InvalidArgument.
func TestLocalMalformedFrame(t *testing.T) {
	srv, addr, path := localServer(t)
	c := rawLocal(t, path, wire.ProtoCalls)
	body, err := proto.Marshal(&buspb.Request{Method: "Echo", Protocol: uint32(wire.ProtoKV)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(wire.AppendFrame(nil, body)); err != nil {
		t.Fatal(err)
	}
	expectRefusal(t, c, bus.CodeInternal, "protocol error")

	c = rawLocal(t, path, wire.ProtoKV)
	var r buspb.Response
	if err := wire.NewReader(c, wire.DefaultMaxFrameSize).ReadMessage(&r); err != nil {
		t.Fatal(err)
	}
	if bus.Code(r.GetCode()) != bus.CodeInvalidArgument {
		t.Fatalf("preamble of another protocol answered %v, want InvalidArgument", bus.Code(r.GetCode()))
	}

	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
	if localCalls(t, reg) != 1 {
		t.Fatal("call did not go over the socket")
	}
	_ = srv
}

// expectRefusal reads from a raw calls stream on a socket a Response
// failing the stream itself (call id 0) with code and a message holding
// reason, then the end of the connection.
func expectRefusal(t *testing.T, c net.Conn, code bus.Code, reason string) {
	t.Helper()
	var r buspb.Response
	if err := wire.NewReader(c, wire.DefaultMaxFrameSize).ReadMessage(&r); err != nil {
		t.Fatalf("want a Response saying why the connection ends: %v", err)
	}
	if r.GetCallId() != 0 || bus.Code(r.GetCode()) != code || !strings.Contains(r.GetMessage(), reason) {
		t.Fatalf("got call %d %v %q, want call 0 %v naming %q", r.GetCallId(), bus.Code(r.GetCode()), r.GetMessage(), code, reason)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil && !errors.Is(err, io.EOF) && !isClosed(err) {
		t.Fatalf("after the refusal: read %d bytes, %v; want the connection closed", n, err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// TestListenLocalChecks: a stale socket file is replaced; a file that is
// not a socket, a socket in use and an overlong path are refused.
func TestListenLocalChecks(t *testing.T) {
	path := socketPath(t)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close() // leaves a stale socket file
	srv := newBus(t, "srv")
	echo(srv)
	if err := srv.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	addr := start(t, srv)
	cli, reg := newBusReg(t, "cli")
	start(t, cli)
	if err := cli.AddLocalPeer(addr, path); err != nil {
		t.Fatal(err)
	}
	if err := cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", wrapperspb.Bytes([]byte("x")), &wrapperspb.BytesValue{}); err != nil || localCalls(t, reg) != 1 {
		t.Fatalf("call over the socket replacing a stale one: %v", err)
	}

	inUse := newBus(t, "second")
	if err := inUse.ListenLocal(path); err != nil {
		t.Fatal(err)
	}
	if err := inUse.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second bus on a live socket: %v", err)
	}

	file := filepath.Join(filepath.Dir(path), "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	notSock := newBus(t, "third")
	if err := notSock.ListenLocal(file); err != nil {
		t.Fatal(err)
	}
	if err := notSock.Start(ctxT(t)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("socket over a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("regular file touched: %q %v", b, err)
	}

	if err := newBus(t, "fourth").ListenLocal("/" + strings.Repeat("x", 200)); err == nil {
		t.Fatal("overlong socket path accepted")
	}
}
