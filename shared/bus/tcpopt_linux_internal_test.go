//go:build linux

package bus

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestTCPDeadPeerDetection checks that both ends of a large call's TCP
// connection carry the dead-peer settings of tuneTCP: keep-alives on,
// probes every KeepAlivePeriod, and TCP_USER_TIMEOUT at IdleTimeout, so a
// peer that vanished fails the connection's calls like a QUIC connection
// does instead of leaving them to the kernel's retransmissions.
func TestTCPDeadPeerDetection(t *testing.T) {
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	newBus := func(name string, handle func(*Bus)) *Bus {
		tc, err := ca.Config(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Config{ListenAddr: "127.0.0.1:0", TLS: tc, IdleTimeout: 7 * time.Second, KeepAlivePeriod: 2 * time.Second},
			Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop(context.Background()) })
		handle(b)
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	srv := newBus("srv", func(b *Bus) {
		HandleUnary(b, wire.ProtoKV, "Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return r, nil })
	})
	cli := newBus("cli", func(*Bus) {})
	if err := cli.Call(ctx, srv.Addr().String(), wire.ProtoKV, "Echo", wrapperspb.Bytes(make([]byte, 1<<20)), &wrapperspb.BytesValue{}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		name string
		b    *Bus
	}{{"caller", cli}, {"callee", srv}} {
		side.b.mu.Lock()
		var conns []*net.TCPConn
		for c := range side.b.sockConns {
			if tc, ok := c.(*net.TCPConn); ok {
				conns = append(conns, tc)
			}
		}
		side.b.mu.Unlock()
		if len(conns) == 0 {
			t.Fatalf("%s: no TCP connection after a 1 MiB call", side.name)
		}
		for _, c := range conns {
			want := map[string][2]int{
				"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
				"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
				"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
				"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
				"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
			}
			wantVal := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 2, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 7000}
			rc, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			for name, opt := range want {
				var v int
				var gerr error
				if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), opt[0], opt[1]) }); err != nil || gerr != nil {
					t.Fatalf("%s: %s: %v %v", side.name, name, err, gerr)
				}
				if v != wantVal[name] {
					t.Errorf("%s: %s = %d, want %d", side.name, name, v, wantVal[name])
				}
			}
		}
	}
}
