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
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeClockd serves clockd's Status and Offsets on a bus with dev
// certificates in certsDir, as a clockd of that node would.
func fakeClockd(t *testing.T, certsDir string, healthy bool) string {
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
	health := &clockpb.Health{Healthy: true, PeersReachable: 2}
	if !healthy {
		health = &clockpb.Health{Healthy: false, Reason: "clock offset beyond 400ms from 2 of 2 reachable peers", PeersReachable: 2, PeersFar: 2}
	}
	bus.HandleUnary(b, wire.ProtoClock, clockclient.MethodStatus, func(context.Context, *clockpb.StatusRequest) (*clockpb.StatusResponse, error) {
		return &clockpb.StatusResponse{Now: &hlcpb.Timestamp{WallTime: 1700000000_000000123, Logical: 4}, MaxOffsetNs: int64(500 * time.Millisecond), Serving: true, Health: health}, nil
	})
	bus.HandleUnary(b, wire.ProtoClock, clockclient.MethodOffsets, func(context.Context, *clockpb.OffsetsRequest) (*clockpb.OffsetsResponse, error) {
		return &clockpb.OffsetsResponse{Peers: []*clockpb.PeerOffset{
			{Peer: "127.0.0.1:7414", NodeId: 2, OffsetNs: 200_000_000, RttNs: 300_000, UncertaintyNs: 151_000, LastProbeNs: 1700000000_000000000},
			{Peer: "127.0.0.1:7424", OffsetNs: 0, Error: "clockclient: Probe: unavailable"},
		}}, nil
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

func TestClockJSON(t *testing.T) {
	// Every row has the peer fields; only the first, the answering
	// clockd, has the node fields.
	type row struct {
		Peer           string  `json:"peer"`
		Self           *bool   `json:"self"`
		NodeID         uint64  `json:"node_id,string"`
		OffsetNs       *int64  `json:"offset_ns"`
		RTTNs          *int64  `json:"rtt_ns"`
		UncertaintyNs  *int64  `json:"uncertainty_ns"`
		LastProbe      string  `json:"last_probe"`
		Error          string  `json:"error"`
		Now            *string `json:"now"`
		Healthy        *bool   `json:"healthy"`
		Reason         string  `json:"reason"`
		PeersReachable *int32  `json:"peers_reachable"`
		PeersFar       *int32  `json:"peers_far"`
		MaxOffsetNs    *int64  `json:"max_offset_ns"`
	}
	for _, tt := range []struct {
		name    string
		healthy bool
	}{{"healthy", true}, {"unhealthy", false}} {
		t.Run(tt.name, func(t *testing.T) {
			certs := filepath.Join(t.TempDir(), "certs")
			addr := fakeClockd(t, certs, tt.healthy)
			code, out, errOut := run(t, "clock", "--addr", addr, "--certs-dir", certs, "--output", "json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var rows []row
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatalf("output is not a JSON array: %v\n%s", err, out)
			}
			if len(rows) != 3 {
				t.Fatalf("got %d rows; want self and 2 peers:\n%s", len(rows), out)
			}
			for i, r := range rows {
				if r.Self == nil || *r.Self != (i == 0) || r.OffsetNs == nil || r.RTTNs == nil || r.UncertaintyNs == nil {
					t.Errorf("row %d = %+v; want self=%v and offset_ns, rtt_ns, uncertainty_ns present", i, r, i == 0)
				}
				if (r.Now != nil) != (i == 0) || (r.Healthy != nil) != (i == 0) {
					t.Errorf("row %d: node fields present = %v; want %v", i, r.Now != nil, i == 0)
				}
			}
			self := rows[0]
			if self.Peer != addr || *self.Now != "1700000000.000000123,4" || *self.Healthy != tt.healthy ||
				*self.MaxOffsetNs != int64(500*time.Millisecond) || *self.OffsetNs != 0 || *self.PeersReachable != 2 {
				t.Errorf("self = %+v", self)
			}
			if !tt.healthy && (*self.PeersFar != 2 || !strings.Contains(self.Reason, "offset beyond")) {
				t.Errorf("unhealthy self = %+v; want peers_far 2 and the reason", self)
			}
			p := rows[1]
			if p.Peer != "127.0.0.1:7414" || p.NodeID != 2 || *p.OffsetNs != 200_000_000 || *p.RTTNs != 300_000 ||
				*p.UncertaintyNs != 151_000 || p.LastProbe != "2023-11-14T22:13:20Z" || p.Error != "" {
				t.Errorf("peer 1 = %+v", p)
			}
			if p := rows[2]; p.Peer != "127.0.0.1:7424" || *p.OffsetNs != 0 || !strings.Contains(p.Error, "unavailable") || p.LastProbe != "" {
				t.Errorf("peer 2 = %+v; want offset_ns present and the probe error", p)
			}
		})
	}
}

func TestClockTableUnhealthy(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	addr := fakeClockd(t, certs, false)
	code, out, errOut := run(t, "clock", "--addr", addr, "--certs-dir", certs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"UNHEALTHY: clock offset beyond 400ms", "PEER", "127.0.0.1:7414", "200ms", "±151µs", "unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestClockErrors(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.EnsureDev(certs, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "clock", "--addr", "clockd", "--certs-dir", certs); code != ExitUsage || !strings.Contains(errOut, "--addr") {
		t.Errorf("bad --addr: exit %d %q; want 2 naming --addr", code, errOut)
	}
	if code, _, errOut := run(t, "clock", "--certs-dir", filepath.Join(t.TempDir(), "none"), "--addr", "127.0.0.1:1"); code != ExitFailed || !strings.Contains(errOut, "--certs-dir") {
		t.Errorf("missing certs: exit %d %q; want 1 naming --certs-dir", code, errOut)
	}
	if code, _, errOut := run(t, "clock", "--certs-dir", certs, "--addr", "127.0.0.1:1", "--timeout", "500ms"); code != ExitFailed || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Errorf("no clockd: exit %d %q; want 1 naming the address", code, errOut)
	}
}
