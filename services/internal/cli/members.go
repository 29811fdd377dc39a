package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

func membersCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the cluster's members as seen by a node's gossipd",
		Description: "Calls the gossipd at --addr over the bus (mutual TLS with the node certificate in\n" +
			"--certs-dir). The table shows each member's state, incarnation, gossip address, daemon\n" +
			"addresses, labels, coordinate error and the estimated RTT from the answering node.\n" +
			"--output json prints one object per member with \"state\" (alive, suspect, dead, left)\n" +
			"and \"coordinate\".",
		Flags: daemonFlags("gossipd", &cli.BoolFlag{Name: "all", Value: true, Usage: "include dead and left members"}),
		Action: func(c *cli.Context) error {
			dc, err := newDaemonCall(e, c)
			if err != nil {
				return err
			}
			defer dc.cancel()
			views, err := fetchMembers(dc.ctx, dc.certs, dc.addr, c.Bool("all"))
			if err != nil {
				return dc.explain(err)
			}
			if dc.format == "json" {
				return output.PrintJSON(e.stdout, views)
			}
			t := output.NewTable(e.stdout, "NODE", "STATE", "INC", "ADDR", "DAEMONS", "LABELS", "COORD ERR", "RTT")
			for _, v := range views {
				cerr, rtt := "-", "-"
				if v.Coordinate != nil {
					cerr = strconv.FormatFloat(v.Coordinate.Error, 'f', 3, 64)
				}
				if v.EstimatedRTTNs != nil {
					rtt = time.Duration(*v.EstimatedRTTNs).String()
				}
				self := ""
				if v.Self {
					self = "*"
				}
				t.Row(fmt.Sprintf("%d%s", v.NodeID, self), v.State, strconv.FormatUint(v.Incarnation, 10), v.Addr,
					joinMap(v.Addresses), joinMap(v.Labels), cerr, rtt)
			}
			return t.Flush()
		},
	}
}

// memberView is one member as `members` prints it.
type memberView struct {
	NodeID         uint64             `json:"node_id,string"`
	Self           bool               `json:"self,omitempty"`
	State          string             `json:"state"`
	Incarnation    uint64             `json:"incarnation"`
	Addr           string             `json:"addr"`
	Addresses      map[string]string  `json:"addresses,omitempty"`
	Labels         map[string]string  `json:"labels,omitempty"`
	Capacity       map[string]float64 `json:"capacity,omitempty"`
	Coordinate     *coordinateView    `json:"coordinate"`
	EstimatedRTTNs *int64             `json:"estimated_rtt_ns,omitempty"`
}

// coordinateView is a Vivaldi coordinate (seconds; error dimensionless).
type coordinateView struct {
	Vec        []float64 `json:"vec"`
	Error      float64   `json:"error"`
	Adjustment float64   `json:"adjustment"`
	Height     float64   `json:"height"`
}

func stateName(st gossippb.MemberState) string {
	switch st {
	case gossippb.MemberState_MEMBER_STATE_ALIVE:
		return "alive"
	case gossippb.MemberState_MEMBER_STATE_SUSPECT:
		return "suspect"
	case gossippb.MemberState_MEMBER_STATE_DEAD:
		return "dead"
	case gossippb.MemberState_MEMBER_STATE_LEFT:
		return "left"
	}
	return "unknown"
}

func joinMap(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// fetchMembers asks the gossipd at addr for its members and the estimated
// RTT to each.
func fetchMembers(ctx context.Context, certs certsChoice, addr string, all bool) (views []memberView, err error) {
	err = withBus(ctx, certs, addr, func(b *bus.Bus) error {
		cl := gossipclient.New(b, addr)
		ms, self, err := cl.Members(ctx, all)
		if err != nil {
			return fmt.Errorf("gossipd at %s: %w", addr, err)
		}
		views = make([]memberView, 0, len(ms))
		for _, m := range ms {
			v := memberView{NodeID: m.GetNodeId(), Self: m.GetNodeId() == self, State: stateName(m.GetState()), Incarnation: m.GetIncarnation(),
				Addr: m.GetAddr(), Addresses: m.GetMetadata().GetAddresses(), Labels: m.GetMetadata().GetLabels(), Capacity: m.GetMetadata().GetCapacity()}
			if c := m.GetCoordinate(); c != nil {
				v.Coordinate = &coordinateView{Vec: c.GetVec(), Error: c.GetError(), Adjustment: c.GetAdjustment(), Height: c.GetHeight()}
				if d, err := cl.EstimateRTT(ctx, 0, m.GetNodeId()); err == nil {
					ns := int64(d)
					v.EstimatedRTTNs = &ns
				}
			}
			views = append(views, v)
		}
		return nil
	})
	return views, err
}
