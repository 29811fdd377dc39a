package cli

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/output"
)

func initCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "bootstrap a new cluster's ranges (idempotent)",
		Description: "Asks a raftd at --addr to create the meta range and the user ranges over the live\n" +
			"nodes (the members gossip lists, and the raftd's --peers), each range on up to --replicas\n" +
			"of them; with --min-nodes it waits (within --timeout) until that many are live. The user\n" +
			"keyspace is split at --split-points (comma separated keys) or into --initial-ranges evenly\n" +
			"spaced one-byte boundaries; by default it is one range.\n" +
			"On an initialized cluster nothing changes and the existing ranges are listed.",
		Flags: append(kvFlags(),
			&cli.StringFlag{Name: "split-points", Usage: "comma separated user `KEYS` where ranges begin"},
			&cli.IntFlag{Name: "initial-ranges", Usage: "split the keyspace into `N` ranges (instead of --split-points)"},
			&cli.IntFlag{Name: "replicas", Value: 3, Usage: "replicas per range (fewer when fewer nodes exist); the server's default when unset"},
			&cli.IntFlag{Name: "min-nodes", Usage: "wait (within --timeout) until at least `N` nodes are live before laying out a new cluster"},
		),
		Action: func(c *cli.Context) error {
			if _, err := posArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			o, err := initOptions(c)
			if err != nil {
				return err
			}
			s, err := openKV(e, c)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := s.cl.Init(s.ctx, o)
			if err != nil {
				return s.explain(err)
			}
			view := initView{AlreadyInitialized: res.AlreadyInitialized, LayoutDiffers: res.LayoutDiffers, Ranges: []rangeDescView{}}
			for _, d := range res.Descriptors {
				r := rangeDescView{RangeID: d.GetRangeId(), start: d.GetStartKey(), end: d.GetEndKey(), Generation: d.GetGeneration(), Replicas: replicaDescs(d)}
				r.StartKey, r.StartEncoding = encText.forJSON(r.start)
				r.EndKey, r.EndEncoding = encText.forJSON(r.end)
				view.Ranges = append(view.Ranges, r)
			}
			if s.format == "json" {
				if err := output.PrintJSON(e.stdout, view); err != nil {
					return err
				}
				return layoutErr(view.LayoutDiffers)
			}
			if view.AlreadyInitialized {
				fmt.Fprintf(e.stdout, "cluster already initialized: %d ranges\n", len(view.Ranges))
			} else {
				fmt.Fprintf(e.stdout, "cluster initialized: %d ranges\n", len(view.Ranges))
			}
			var ids []uint64
			for _, r := range view.Ranges {
				for _, d := range r.Replicas {
					ids = append(ids, d.NodeID)
				}
			}
			names := newNodeNames(ids...)
			if l := names.legend(); l != "" {
				fmt.Fprintln(e.stdout, l)
			}
			t := output.NewTable(e.stdout, "RANGE", "SPAN", "GEN", "REPLICAS")
			for _, r := range view.Ranges {
				var reps []string
				for _, d := range r.Replicas {
					reps = append(reps, fmt.Sprintf("%s/r%d", names.name(d.NodeID), d.ReplicaID))
				}
				t.Row(strconv.FormatUint(r.RangeID, 10), spanString(r.start, r.end), strconv.FormatUint(r.Generation, 10), dash(strings.Join(reps, ",")))
			}
			if err := t.Flush(); err != nil {
				return err
			}
			return layoutErr(view.LayoutDiffers)
		},
	}
}

// layoutErr fails an init whose flags asked for a layout the initialized
// cluster lacks (diff says how).
func layoutErr(diff string) error {
	if diff == "" {
		return nil
	}
	return fmt.Errorf("cluster already initialized with another layout (%s); nothing changed. "+
		"Init cannot change an existing layout: omit --split-points, --initial-ranges and --replicas to accept it", diff)
}

// initView is what `init` prints.
type initView struct {
	AlreadyInitialized bool `json:"already_initialized"`
	// LayoutDiffers says how an existing layout lacks the one asked for.
	LayoutDiffers string          `json:"layout_differs,omitempty"`
	Ranges        []rangeDescView `json:"ranges"`
}

// rangeDescView is one range descriptor.
type rangeDescView struct {
	RangeID       uint64            `json:"range_id,string"`
	StartKey      string            `json:"start_key"`
	StartEncoding string            `json:"start_key_encoding,omitempty"`
	EndKey        string            `json:"end_key"`
	EndEncoding   string            `json:"end_key_encoding,omitempty"`
	Generation    uint64            `json:"generation"`
	Replicas      []replicaDescView `json:"replicas"`
	// start and end are the span's bounds as stored, for tables.
	start, end []byte
}

// initOptions reads and checks init's flags.
func initOptions(c *cli.Context) (kvclient.InitOptions, error) {
	var o kvclient.InitOptions
	if c.IsSet("split-points") && c.IsSet("initial-ranges") {
		return o, config.Usagef("give --split-points or --initial-ranges, not both")
	}
	o.InitialRanges, o.ReplicationFactor = c.Int("initial-ranges"), c.Int("replicas")
	if o.InitialRanges < 0 || o.InitialRanges > 256 {
		return o, config.Usagef("invalid value %d for flag --initial-ranges: want 1 to 256 (one-byte boundaries)", o.InitialRanges)
	}
	if o.ReplicationFactor < 1 {
		return o, config.Usagef("invalid value %d for flag --replicas: want 1 or more", o.ReplicationFactor)
	}
	if o.MinNodes = c.Int("min-nodes"); o.MinNodes < 0 {
		return o, config.Usagef("invalid value %d for flag --min-nodes: want 0 or more", o.MinNodes)
	}
	if raw := c.String("split-points"); raw != "" {
		seen := map[string]bool{}
		for _, p := range strings.Split(raw, ",") {
			if err := checkKeyArg("a split point", p); err != nil {
				return o, config.Usagef("invalid value %q for flag --split-points: %v", raw, err)
			}
			if seen[p] {
				return o, config.Usagef("invalid value %q for flag --split-points: %q given twice", raw, p)
			}
			seen[p] = true
			o.SplitPoints = append(o.SplitPoints, []byte(p))
		}
	}
	// raftd wants split points in increasing order.
	slices.SortFunc(o.SplitPoints, bytes.Compare)
	if !c.IsSet("replicas") {
		// The server's default (3) applies, and a cluster laid out with
		// another factor is not reported as differing.
		o.ReplicationFactor = 0
	}
	return o, nil
}
