package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeGossipd serves gossipd's Members and EstimateRTT on a bus with dev
// certificates in certsDir.
func fakeGossipd(t *testing.T, certsDir string) string {
	t.Helper()
	if err := tlsutil.EnsureDev(certsDir, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	coord := &gossippb.Coordinate{Vec: []float64{0.001, 0}, Error: 0.25, Height: 1e-5}
	bus.HandleUnary(b, wire.ProtoGossip, gossipclient.MethodMembers, func(context.Context, *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		return &gossippb.MembersResponse{SelfId: 1, Members: []*gossippb.Member{
			{NodeId: 1, Addr: "127.0.0.1:7403", State: gossippb.MemberState_MEMBER_STATE_ALIVE, Incarnation: 1, Coordinate: coord,
				Metadata: &gossippb.Metadata{Labels: map[string]string{"zone": "a"}, Addresses: map[string]string{"raftd": "127.0.0.1:7402"}}},
			{NodeId: 2, Addr: "127.0.0.1:7413", State: gossippb.MemberState_MEMBER_STATE_SUSPECT, Incarnation: 3, Coordinate: coord},
			{NodeId: 3, Addr: "127.0.0.1:7423", State: gossippb.MemberState_MEMBER_STATE_LEFT, Incarnation: 2},
		}}, nil
	})
	bus.HandleUnary(b, wire.ProtoGossip, gossipclient.MethodEstimateRTT, func(_ context.Context, r *gossippb.EstimateRTTRequest) (*gossippb.EstimateRTTResponse, error) {
		return &gossippb.EstimateRTTResponse{RttNanos: int64(r.GetB()) * int64(time.Millisecond)}, nil
	})
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	return b.Addr().String()
}

func TestMembersJSONAndTable(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	addr := fakeGossipd(t, certs)
	code, out, errOut := run(t, "members", "--addr", addr, "--certs-dir", certs, "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v []struct {
		NodeID     uint64           `json:"node_id,string"`
		State      string           `json:"state"`
		Coordinate *json.RawMessage `json:"coordinate"`
		RTT        *int64           `json:"estimated_rtt_ns"`
		Labels     map[string]string
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(v) != 3 || v[0].State != "alive" || v[1].State != "suspect" || v[2].State != "left" {
		t.Fatalf("members = %+v", v)
	}
	if v[0].Coordinate == nil || v[1].RTT == nil || *v[1].RTT != int64(2*time.Millisecond) || v[0].Labels["zone"] != "a" {
		t.Fatalf("member fields = %+v", v)
	}
	code, out, errOut = run(t, "members", "--addr", addr, "--certs-dir", certs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"1*", "suspect", "left", "zone=a", "raftd=127.0.0.1:7402", "2ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestNothingListening: every command that calls a daemon fails at once
// (not at its one-minute timeout) when nothing listens at --addr, with a
// hint pointing at `pleiades status`.
func TestNothingListening(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.EnsureDev(certs, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"members"}, {"clock"}, {"store", "stats"}, {"ranges"}, {"init"}, {"kv", "get"}} {
		args := append(append([]string{}, cmd...), "--addr", "127.0.0.1:1", "--certs-dir", certs, "--timeout", "1m")
		if cmd[0] == "kv" {
			args = append(args, "k")
		}
		code, _, errOut := run(t, args...)
		if code != ExitFailed || !strings.Contains(errOut, "hint: nothing listens at 127.0.0.1:1") || strings.Contains(errOut, "deadline") {
			t.Errorf("%q: exit %d, %q; want 1 at once with a hint", args, code, errOut)
		}
	}
}
