package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
)

func clockCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "clock",
		Usage: "show a node's clock: now, health, and the offset of each peer clockd",
		Description: "Calls the clockd at --addr over the bus (mutual TLS with the node certificate in\n" +
			"--certs-dir). The table lists each peer's estimated offset (peer minus this node), the\n" +
			"round trip of the last probe and the estimate's uncertainty.\n\n" +
			"--output json prints a JSON array with one object per clock, all with peer, self,\n" +
			"offset_ns, rtt_ns and uncertainty_ns. The first object is the answering clockd itself\n" +
			"(\"self\": true, offsets 0) and also carries now, now_wall_ns, max_offset_ns, serving,\n" +
			"persisted_bound_ns, healthy, reason, peers_reachable, peers_far and forward_jumps; then one\n" +
			"object per peer (\"self\": false) with node_id, last_probe and error. For example:\n" +
			"  pleiades clock -o json | jq '.[] | select(.self | not) | [.peer, .offset_ns]'\n" +
			"  pleiades clock -o json | jq '.[0].healthy'",
		Flags: daemonFlags("clockd"),
		Action: func(c *cli.Context) error {
			dc, err := newDaemonCall(e, c)
			if err != nil {
				return err
			}
			defer dc.cancel()
			view, err := fetchClock(dc.ctx, dc.certs, dc.addr)
			if err != nil {
				return dc.explain(err)
			}
			if dc.format == "json" {
				return output.PrintJSON(e.stdout, view.jsonRows())
			}
			return printClock(e.stdout, view)
		},
	}
}

// clockView is what `clock` shows.
type clockView struct {
	Addr             string
	Now              string
	NowWallNs        int64
	MaxOffsetNs      int64
	Serving          bool
	PersistedBoundNs int64
	Healthy          bool
	Reason           string
	PeersReachable   int32
	PeersFar         int32
	ForwardJumps     uint64
	Peers            []clockPeerView
}

// clockPeerView is one peer of clockView.
type clockPeerView struct {
	Peer          string
	NodeID        uint64
	OffsetNs      int64
	RTTNs         int64
	UncertaintyNs int64
	LastProbe     string
	Error         string
}

// clockJSONRow is one object of `clock --output json`: the answering
// clockd (Self, with the node fields set) or one of its peers. Every row
// has Peer, Self, OffsetNs, RTTNs and UncertaintyNs; the node fields are
// pointers so that peer rows leave them out.
type clockJSONRow struct {
	Peer          string `json:"peer"`
	Self          bool   `json:"self"`
	NodeID        uint64 `json:"node_id,omitempty,string"`
	OffsetNs      int64  `json:"offset_ns"`
	RTTNs         int64  `json:"rtt_ns"`
	UncertaintyNs int64  `json:"uncertainty_ns"`
	LastProbe     string `json:"last_probe,omitempty"`
	Error         string `json:"error,omitempty"`

	Now              *string `json:"now,omitempty"`
	NowWallNs        *int64  `json:"now_wall_ns,omitempty"`
	MaxOffsetNs      *int64  `json:"max_offset_ns,omitempty"`
	Serving          *bool   `json:"serving,omitempty"`
	PersistedBoundNs *int64  `json:"persisted_bound_ns,omitempty"`
	Healthy          *bool   `json:"healthy,omitempty"`
	Reason           string  `json:"reason,omitempty"`
	PeersReachable   *int32  `json:"peers_reachable,omitempty"`
	PeersFar         *int32  `json:"peers_far,omitempty"`
	ForwardJumps     *uint64 `json:"forward_jumps,omitempty"`
}

// jsonRows returns the rows of `clock --output json`: the answering
// clockd first, then its peers in address order.
func (v clockView) jsonRows() []clockJSONRow {
	rows := make([]clockJSONRow, 0, 1+len(v.Peers))
	rows = append(rows, clockJSONRow{
		Peer: v.Addr, Self: true,
		Now: &v.Now, NowWallNs: &v.NowWallNs, MaxOffsetNs: &v.MaxOffsetNs, Serving: &v.Serving,
		PersistedBoundNs: &v.PersistedBoundNs, Healthy: &v.Healthy, Reason: v.Reason,
		PeersReachable: &v.PeersReachable, PeersFar: &v.PeersFar, ForwardJumps: &v.ForwardJumps,
	})
	for _, p := range v.Peers {
		rows = append(rows, clockJSONRow{
			Peer: p.Peer, NodeID: p.NodeID, OffsetNs: p.OffsetNs, RTTNs: p.RTTNs,
			UncertaintyNs: p.UncertaintyNs, LastProbe: p.LastProbe, Error: p.Error,
		})
	}
	return rows
}

// fetchClock asks the clockd at addr for its status and offsets.
func fetchClock(ctx context.Context, certs certsChoice, addr string) (v clockView, err error) {
	err = withBus(ctx, certs, addr, func(b *bus.Bus) error {
		cl := clockclient.New(b, addr)
		st, err := cl.Status(ctx)
		if err != nil {
			return fmt.Errorf("clockd at %s: %w", addr, err)
		}
		peers, err := cl.Offsets(ctx)
		if err != nil {
			return fmt.Errorf("clockd at %s: %w", addr, err)
		}
		v = makeClockView(addr, st, peers)
		return nil
	})
	return v, err
}

func makeClockView(addr string, st *clockpb.StatusResponse, peers []*clockpb.PeerOffset) clockView {
	h := st.GetHealth()
	v := clockView{
		Addr:             addr,
		NowWallNs:        st.GetNow().GetWallTime(),
		Now:              hlc.Timestamp{WallTime: st.GetNow().GetWallTime(), Logical: st.GetNow().GetLogical()}.String(),
		MaxOffsetNs:      st.GetMaxOffsetNs(),
		Serving:          st.GetServing(),
		PersistedBoundNs: st.GetPersistedBoundNs(),
		Healthy:          h.GetHealthy(),
		Reason:           h.GetReason(),
		PeersReachable:   h.GetPeersReachable(),
		PeersFar:         h.GetPeersFar(),
		ForwardJumps:     st.GetForwardJumps(),
	}
	for _, p := range peers {
		pv := clockPeerView{
			Peer: p.GetPeer(), NodeID: p.GetNodeId(), OffsetNs: p.GetOffsetNs(), RTTNs: p.GetRttNs(),
			UncertaintyNs: p.GetUncertaintyNs(), Error: p.GetError(),
		}
		if p.GetLastProbeNs() > 0 {
			pv.LastProbe = time.Unix(0, p.GetLastProbeNs()).UTC().Format(time.RFC3339Nano)
		}
		v.Peers = append(v.Peers, pv)
	}
	return v
}

func printClock(w io.Writer, v clockView) error {
	fmt.Fprintf(w, "clockd %s\n", v.Addr)
	fmt.Fprintf(w, "now         %s (%s)\n", v.Now, time.Unix(0, v.NowWallNs).UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "max offset  %v\n", time.Duration(v.MaxOffsetNs))
	health := "healthy"
	if !v.Healthy {
		health = "UNHEALTHY: " + v.Reason
	}
	fmt.Fprintf(w, "health      %s (%d reachable peers, %d too far)\n", health, v.PeersReachable, v.PeersFar)
	fmt.Fprintf(w, "fwd jumps   %d\n", v.ForwardJumps)
	if len(v.Peers) == 0 {
		fmt.Fprintln(w, "no peers")
		return nil
	}
	fmt.Fprintln(w)
	t := output.NewTable(w, "PEER", "NODE", "OFFSET", "RTT", "UNCERTAINTY", "LAST PROBE", "ERROR")
	for _, p := range v.Peers {
		node := "-"
		if p.NodeID != 0 {
			node = strconv.FormatUint(p.NodeID, 10)
		}
		t.Row(p.Peer, node, time.Duration(p.OffsetNs).String(), time.Duration(p.RTTNs).String(),
			"±"+time.Duration(p.UncertaintyNs).String(), dash(p.LastProbe), dash(p.Error))
	}
	return t.Flush()
}
