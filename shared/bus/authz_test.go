package bus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// roleBus returns a started bus presenting a certificate of role r.
func roleBus(t *testing.T, r tlsutil.Role) *bus.Bus {
	t.Helper()
	tlsConfig(t, "ca") // the shared test CA
	tc, err := testCA.Issue(r.Kind.String(), r)
	if err != nil {
		t.Fatal(err)
	}
	b := newBus(t, "unused", func(c *bus.Config) { c.TLS = tc })
	start(t, b)
	return b
}

// TestAuthorizationOnTheWire calls a unary method, a server stream, a
// batch method and a datagram with each role and checks that the rules
// decide: the handler runs only when allowed, a refused call gets
// PermissionDenied naming the method and the role, and refusals are
// counted.
func TestAuthorizationOnTheWire(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tlsConfig(t, "server")},
		bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	var unaryRuns, streamRuns, batchRuns, dgramRuns atomic.Int64
	echo := func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		unaryRuns.Add(1)
		return r, nil
	}
	bus.HandleUnary(srv, wire.ProtoKV, "Get", echo)
	bus.HandleUnary(srv, wire.ProtoKV, "Orphan", echo) // no rule: refused to all
	bus.HandleStream(srv, wire.ProtoKV, "Watch", func(_ context.Context, r *wrapperspb.BytesValue, send func(*wrapperspb.BytesValue) error) error {
		streamRuns.Add(1)
		return send(r)
	})
	bus.HandleBatch(srv, wire.ProtoRaft, "B", func(_ context.Context, _ bus.Peer, batch []*wrapperspb.BytesValue) {
		batchRuns.Add(int64(len(batch)))
	})
	srv.HandleDatagram(wire.ProtoGossip, func(bus.Peer, []byte) { dgramRuns.Add(1) })
	srv.Authorize(wire.ProtoKV, bus.Rules{
		"Get": {Roles: bus.Clients | bus.Nodes, Check: func(_ bus.Peer, req proto.Message) error {
			if !bytes.HasPrefix(req.(*wrapperspb.BytesValue).GetValue(), []byte("ok")) {
				return errors.New("not ok")
			}
			return nil
		}},
		"Watch": {Roles: bus.Admins},
	})
	// ProtoRaft and ProtoGossip have no rules: nodes and admins only.
	addr := start(t, srv)

	for _, tt := range []struct {
		role                             tlsutil.Role
		get, getNotOK, watch, batch, dgr bool
	}{
		{tlsutil.NodeRole(5), true, false, false, true, true},
		{tlsutil.ClientRole(), true, false, false, false, false},
		{tlsutil.AdminRole(), false, false, true, true, true},
		{tlsutil.Role{}, false, false, false, false, false},
	} {
		t.Run(tt.role.Kind.String(), func(t *testing.T) {
			cli := roleBus(t, tt.role)
			check := func(method string, err error, ok bool) {
				t.Helper()
				if ok {
					if err != nil {
						t.Errorf("%s: %v; want allowed", method, err)
					}
					return
				}
				if !errors.Is(err, bus.ErrPermissionDenied) || !strings.Contains(err.Error(), "kv/"+method) || !strings.Contains(err.Error(), "role "+tt.role.Kind.String()) {
					t.Errorf("%s: %v; want PermissionDenied naming kv/%s and role %s", method, err, method, tt.role.Kind)
				}
			}
			before := unaryRuns.Load()
			var resp wrapperspb.BytesValue
			check("Get", cli.Call(ctxT(t), addr, wire.ProtoKV, "Get", wrapperspb.Bytes([]byte("ok1")), &resp), tt.get)
			check("Get", cli.Call(ctxT(t), addr, wire.ProtoKV, "Get", wrapperspb.Bytes([]byte("no")), &resp), tt.getNotOK)
			check("Orphan", cli.Call(ctxT(t), addr, wire.ProtoKV, "Orphan", wrapperspb.Bytes([]byte("ok")), &resp), false)
			if want := before + int64(btoi(tt.get)); unaryRuns.Load() != want {
				t.Errorf("unary handler ran %d times; want %d", unaryRuns.Load()-before, want-before)
			}
			s, err := cli.Stream(ctxT(t), addr, wire.ProtoKV, "Watch", wrapperspb.Bytes([]byte("x")))
			if err == nil {
				err = s.Recv(&resp)
				_ = s.Close()
			}
			check("Watch", err, tt.watch)

			batches, dgrams := batchRuns.Load(), dgramRuns.Load()
			denied := metricValue(t, reg, "pleiades_bus_denied_total", map[string]string{"protocol": "raft", "method": "B", "role": tt.role.Kind.String()})
			// A batch has no answer: a refused one is dropped (and
			// counted), an allowed one reaches the handler.
			eventually.True(t, 5*time.Second, "batch outcome", func() bool {
				if err := cli.SendBatch(ctxT(t), addr, wire.ProtoRaft, "B", wrapperspb.Bytes(nil)); err != nil {
					return false
				}
				if tt.batch {
					return batchRuns.Load() > batches
				}
				return metricValue(t, reg, "pleiades_bus_denied_total", map[string]string{"protocol": "raft", "method": "B", "role": tt.role.Kind.String()}) > denied
			})
			eventually.True(t, 5*time.Second, "datagram outcome", func() bool {
				_ = cli.SendDatagram(ctxT(t), addr, wire.ProtoGossip, []byte("d"))
				if tt.dgr {
					return dgramRuns.Load() > dgrams
				}
				return metricValue(t, reg, "pleiades_bus_denied_total", map[string]string{"protocol": "gossip", "method": bus.DatagramMethod, "role": tt.role.Kind.String()}) > 0
			})
			if !tt.batch && batchRuns.Load() != batches {
				t.Errorf("refused batch reached the handler")
			}
			if !tt.dgr && dgramRuns.Load() != dgrams {
				t.Errorf("refused datagram reached the handler")
			}
		})
	}
	if got := metricValue(t, reg, "pleiades_bus_denied_total", map[string]string{"protocol": "kv", "method": "Orphan", "role": "admin"}); got != 1 {
		t.Errorf("denied_total{kv,Orphan,admin} = %v; want 1", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestExpiredCertificateRefused: a certificate past its end is refused
// at the handshake, whatever its role.
func TestExpiredCertificateRefused(t *testing.T) {
	srv := newBus(t, "server")
	bus.HandleUnary(srv, wire.ProtoKV, "Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return r, nil })
	addr := start(t, srv)
	tlsConfig(t, "ca")
	for _, r := range []tlsutil.Role{tlsutil.NodeRole(3), tlsutil.AdminRole()} {
		tc, err := testCA.IssueUntil("old", r, time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		cli := newBus(t, "unused", func(c *bus.Config) { c.TLS = tc })
		start(t, cli)
		err = cli.Call(ctxT(t), addr, wire.ProtoKV, "Echo", &wrapperspb.BytesValue{}, &wrapperspb.BytesValue{})
		if !errors.Is(err, bus.ErrUnauthenticated) {
			t.Errorf("%s with an expired certificate: %v; want Unauthenticated", r, err)
		}
	}
}

func ExamplePermissionDenied() {
	fmt.Println(bus.PermissionDenied(wire.ProtoRaft, "Hello", tlsutil.ClientRole(), "its role may not call it"))
	// Output: bus: permission denied: raft/Hello refused to role client: its role may not call it
}
