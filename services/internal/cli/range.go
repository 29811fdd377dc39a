package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// rangeCommand groups the range administration commands.
func rangeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "range",
		Usage: "administer ranges: split one at a key, add, remove or replace replicas, move leadership",
		Subcommands: []*cli.Command{
			rangeSplitCommand(e),
			{
				Name:        "replicas",
				Usage:       "change where a range's replicas are and which leads",
				Subcommands: []*cli.Command{rangeAddCommand(e), rangeRemoveCommand(e), rangeTransferCommand(e)},
			},
		},
	}
}

func rangeSplitCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "split",
		Usage:     "split the range holding KEY at KEY",
		ArgsUsage: "KEY",
		Description: "The range keeps the keys before KEY; a new range on the same replicas takes KEY and\n" +
			"the rest. Every replica applies the split at the same point of the range's log, the\n" +
			"meta range records both sides, and both take the next generation. KEY must be a user\n" +
			"key inside a user range; a KEY that already starts one (a retried split that applied,\n" +
			"or any existing boundary) changes nothing. Prints both sides.",
		Flags: append(kvFlags(), encodingFlag()),
		Action: func(c *cli.Context) error {
			args, err := posArgs(c, 1, 1, "KEY")
			if err != nil {
				return err
			}
			enc, err := encodingOf(c)
			if err != nil {
				return err
			}
			key, err := enc.decode("key", args[0])
			if err != nil {
				return err
			}
			s, err := openKV(e, c)
			if err != nil {
				return err
			}
			defer s.close()
			left, right, err := s.cl.AdminSplit(s.ctx, key)
			if err != nil {
				return s.explain(err)
			}
			view := []rangeDescView{descView(left), descView(right)}
			if s.format == "json" {
				return output.PrintJSON(e.stdout, map[string]rangeDescView{"left": view[0], "right": view[1]})
			}
			fmt.Fprintf(e.stdout, "range %d split at %s\n", left.GetRangeId(), enc.brief(key))
			return printDescs(e, view, nil, nil)
		},
	}
}

// rangeNodeArgs reads the RANGE NODE arguments.
func rangeNodeArgs(c *cli.Context) (rangeID, node uint64, err error) {
	args, err := posArgs(c, 2, 2, "RANGE NODE")
	if err != nil {
		return 0, 0, err
	}
	rangeID, err = strconv.ParseUint(args[0], 10, 64)
	if err != nil || rangeID == 0 {
		return 0, 0, config.Usagef("RANGE %q is not a range id", args[0])
	}
	node, err = strconv.ParseUint(args[1], 10, 64)
	if err != nil || node == 0 {
		return 0, 0, config.Usagef("NODE %q is not a node id", args[1])
	}
	return rangeID, node, nil
}

func rangeAddCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a replica of RANGE on NODE (optionally replacing another)",
		ArgsUsage: "RANGE NODE",
		Description: "The range's leader creates the replica on NODE as a learner, which receives a snapshot;\n" +
			"once caught up it becomes a voter (unless --learner). With --replace OLD the voter on\n" +
			"OLD leaves in the same change (a joint configuration). Prints the range's descriptor.",
		Flags: append(kvFlags(),
			&cli.Uint64Flag{Name: "replace", Usage: "remove the replica on node `OLD` in the same change"},
			&cli.BoolFlag{Name: "learner", Usage: "keep the new replica a learner (non-voting, serves stale reads)"}),
		Action: func(c *cli.Context) error {
			rangeID, node, err := rangeNodeArgs(c)
			if err != nil {
				return err
			}
			ch := kvclient.ReplicaChange{Add: []uint64{node}, Learners: c.Bool("learner")}
			if old := c.Uint64("replace"); old != 0 {
				ch.Remove = []uint64{old}
			}
			return changeReplicas(e, c, rangeID, ch)
		},
	}
}

func rangeRemoveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove the replica of RANGE on NODE",
		ArgsUsage: "RANGE NODE",
		Description: "The range's leader removes the replica; its node destroys it (replica GC). The leader's\n" +
			"own replica cannot be removed: move the leadership first (transfer-leader), and the\n" +
			"last voter cannot be removed. Prints the range's descriptor.",
		Flags: kvFlags(),
		Action: func(c *cli.Context) error {
			rangeID, node, err := rangeNodeArgs(c)
			if err != nil {
				return err
			}
			return changeReplicas(e, c, rangeID, kvclient.ReplicaChange{Remove: []uint64{node}})
		},
	}
}

func changeReplicas(e *env, c *cli.Context, rangeID uint64, ch kvclient.ReplicaChange) error {
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	d, err := s.cl.ChangeReplicas(s.ctx, rangeID, ch)
	if err != nil {
		return s.explain(err)
	}
	v := descView(d)
	if s.format == "json" {
		return output.PrintJSON(e.stdout, v)
	}
	return printDescs(e, []rangeDescView{v}, nil, nil)
}

func rangeTransferCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "transfer-leader",
		Usage:     "move the leadership of RANGE to its voter on NODE",
		ArgsUsage: "RANGE NODE",
		Description: "Asks the range's leader to hand leadership to the voter on NODE (a node id, as\n" +
			"`pleiades ranges --all` lists them) and waits until that replica leads.",
		Flags: kvFlags(),
		Action: func(c *cli.Context) error {
			rangeID, node, err := rangeNodeArgs(c)
			if err != nil {
				return err
			}
			s, err := openKV(e, c)
			if err != nil {
				return err
			}
			defer s.close()
			if err := s.cl.TransferLeader(s.ctx, rangeID, node); err != nil {
				return s.explain(err)
			}
			if s.format == "json" {
				return output.PrintJSON(e.stdout, map[string]string{"range_id": strconv.FormatUint(rangeID, 10), "leader_node_id": strconv.FormatUint(node, 10)})
			}
			fmt.Fprintf(e.stdout, "range %d is led by node %d\n", rangeID, node)
			return nil
		},
	}
}

// descView is a descriptor as init and range split print it.
func descView(d *kvpb.RangeDescriptor) rangeDescView {
	r := rangeDescView{RangeID: d.GetRangeId(), start: d.GetStartKey(), end: d.GetEndKey(), Generation: d.GetGeneration(), Replicas: replicaDescs(d)}
	r.StartKey, r.StartEncoding = encText.forJSON(r.start)
	r.EndKey, r.EndEncoding = encText.forJSON(r.end)
	return r
}

// printDescs prints ranges as a table, with each one's leader's raftd
// address when leaders (range id to address) is not nil, and its size
// and load as its leader reports them when loads is not nil (range id to
// report; "-" for a range whose leader did not answer).
func printDescs(e *env, ranges []rangeDescView, leaders map[uint64]string, loads map[uint64]leaderLoad) error {
	var ids []uint64
	for _, r := range ranges {
		for _, d := range r.Replicas {
			ids = append(ids, d.NodeID)
		}
	}
	names := newNodeNames(ids...)
	if l := names.legend(); l != "" {
		fmt.Fprintln(e.stdout, l)
	}
	cols := []string{"RANGE", "SPAN", "GEN", "REPLICAS"}
	if leaders != nil {
		cols = append(cols, "LEADER")
	}
	if loads != nil {
		cols = append(cols, "SIZE", "REQ/S")
	}
	t := output.NewTable(e.stdout, cols...)
	for _, r := range ranges {
		var reps []string
		for _, d := range r.Replicas {
			s := fmt.Sprintf("%s/r%d", names.name(d.NodeID), d.ReplicaID)
			if d.Type == "learner" {
				s += "(l)"
			}
			reps = append(reps, s)
		}
		row := []string{strconv.FormatUint(r.RangeID, 10), spanString(r.start, r.end), strconv.FormatUint(r.Generation, 10), dash(strings.Join(reps, ","))}
		if leaders != nil {
			row = append(row, dash(leaders[r.RangeID]))
		}
		if loads != nil {
			if l, ok := loads[r.RangeID]; ok {
				row = append(row, humanBytes(l.size), strconv.FormatFloat(l.rate, 'f', 1, 64))
			} else {
				row = append(row, "-", "-")
			}
		}
		t.Row(row...)
	}
	return t.Flush()
}

// allRangesView is what `ranges --all` prints: every range of the cluster
// as the meta range lists it.
type allRangesView struct {
	Ranges []allRangeView `json:"ranges"`
}

type allRangeView struct {
	rangeDescView
	// LeaderAddr is the raftd address of the range's leader, as the
	// answering node knows it ("" unknown).
	LeaderAddr string `json:"leader_addr,omitempty"`
	// Size is the leader's estimate of the range's bytes on disk
	// (absent when no leader answered).
	Size *uint64 `json:"size,omitempty"`
	// RequestsPerSec is the key requests the leader served per second
	// over the last 10 seconds (absent when no leader answered).
	RequestsPerSec *float64 `json:"requests_per_sec,omitempty"`
}

// leaderLoad is what a range's leader reports of its size and load.
type leaderLoad struct {
	size uint64
	rate float64
}

func printAllRanges(e *env, s *kvSession) error {
	resp, err := s.cl.Descriptors(s.ctx, nil, nil)
	if err != nil {
		return s.explain(err)
	}
	// Each range's size and load come from its leader: one Ranges call
	// per leader address; a leader that does not answer leaves its
	// ranges' out.
	loads := map[uint64]leaderLoad{}
	asked := map[string]bool{}
	for _, addr := range resp.GetLeaders() {
		if addr == "" || asked[addr] {
			continue
		}
		asked[addr] = true
		rr, err := s.cl.Ranges(s.ctx, addr)
		if err != nil {
			continue
		}
		for _, r := range rr.GetReplicas() {
			if r.GetRaftState() == "leader" {
				loads[r.GetDescriptor_().GetRangeId()] = leaderLoad{size: r.GetApproximateBytes(), rate: r.GetRequestsPerSec()}
			}
		}
	}
	v := allRangesView{Ranges: []allRangeView{}}
	var descs []rangeDescView
	for _, d := range resp.GetDescriptors() {
		dv := descView(d)
		descs = append(descs, dv)
		rv := allRangeView{rangeDescView: dv, LeaderAddr: resp.GetLeaders()[d.GetRangeId()]}
		if l, ok := loads[d.GetRangeId()]; ok {
			rv.Size, rv.RequestsPerSec = &l.size, &l.rate
		}
		v.Ranges = append(v.Ranges, rv)
	}
	if s.format == "json" {
		return output.PrintJSON(e.stdout, v)
	}
	fmt.Fprintf(e.stdout, "%d ranges\n", len(descs))
	return printDescs(e, descs, resp.GetLeaders(), loads)
}
