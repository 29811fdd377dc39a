package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

func nodeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "the cluster's nodes as the lifecycle workflows see them; decommission a node (admin)",
		Description: "Calls the workflowd at --addr over the bus (admin or node certificates). A node dead in gossip for\n" +
			"workflowd's --dead-node-timeout has its replicas replaced without an operator; `node decommission`\n" +
			"moves every replica off a live node before it is taken away.",
		Subcommands: []*cli.Command{nodeList(e), nodeDecommission(e)},
	}
}

func nodeList(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the nodes: gossip state, replicas the range descriptors name, decommission state",
		Flags: daemonFlags("workflowd"),
		Action: func(c *cli.Context) error {
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				nodes, err := wc.Nodes(dc.ctx)
				if err != nil {
					return err
				}
				if dc.format == "json" {
					views := make([]nodeView, 0, len(nodes))
					for _, n := range nodes {
						views = append(views, nodeView{NodeID: n.GetNodeId(), Membership: n.GetMembership(), Replicas: n.GetReplicas(),
							Lifecycle: n.GetLifecycle(), Workflow: n.GetInstanceId()})
					}
					return output.PrintJSON(e.stdout, views)
				}
				ids := make([]uint64, len(nodes))
				for i, n := range nodes {
					ids[i] = n.GetNodeId()
				}
				names := newNodeNames(ids...)
				t := output.NewTable(e.stdout, "NODE", "MEMBERSHIP", "REPLICAS", "LIFECYCLE", "WORKFLOW")
				for _, n := range nodes {
					t.Row(names.name(n.GetNodeId()), n.GetMembership(), strconv.Itoa(int(n.GetReplicas())), dash(n.GetLifecycle()), dash(n.GetInstanceId()))
				}
				if err := t.Flush(); err != nil {
					return err
				}
				if l := names.legend(); l != "" {
					fmt.Fprintln(e.stdout, l)
				}
				return nil
			})
		},
	}
}

// nodeView is one node of `node list --output json`.
type nodeView struct {
	NodeID     uint64 `json:"node_id,string"`
	Membership string `json:"membership"`
	Replicas   uint32 `json:"replicas"`
	Lifecycle  string `json:"lifecycle"`
	Workflow   string `json:"workflow,omitempty"`
}

// resolveNode finds the node an argument names: its whole id, or the last
// digits of exactly one node's id (as tables show them, "n4821" or "4821").
func resolveNode(arg string, nodes []*workflowpb.NodeLifecycle) (uint64, error) {
	s := strings.TrimPrefix(arg, "n")
	if _, err := strconv.ParseUint(s, 10, 64); err != nil || s == "" {
		return 0, config.Usagef("node %q: want a node id (or its last digits, as `pleiades node list` shows)", arg)
	}
	var match []uint64
	for _, n := range nodes {
		id := strconv.FormatUint(n.GetNodeId(), 10)
		if id == s {
			return n.GetNodeId(), nil
		}
		if strings.HasSuffix(id, s) {
			match = append(match, n.GetNodeId())
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		// Let workflowd say it is unknown (with the members it knows).
		id, err := strconv.ParseUint(s, 10, 64)
		return id, err
	}
	return 0, config.Usagef("node %q: the ids of %d nodes end so; give more digits", arg, len(match))
}

func nodeDecommission(e *env) *cli.Command {
	return &cli.Command{
		Name:      "decommission",
		Usage:     "move every replica off a node, then mark it decommissioned (a workflow: see `workflows show`); --cancel stops it, or puts a decommissioned node back in service",
		ArgsUsage: "NODE-ID",
		Flags: daemonFlags("workflowd",
			&cli.BoolFlag{Name: "wait", Usage: "wait until the node holds no replica (bounded by --timeout)"},
			&cli.BoolFlag{Name: "cancel", Usage: "stop the node's decommission under way instead (the replicas moved off it stay moved), or clear a finished one's mark so the node takes replicas again"}),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("node decommission: want one NODE-ID")
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				nodes, err := wc.Nodes(dc.ctx)
				if err != nil {
					return err
				}
				node, err := resolveNode(c.Args().First(), nodes)
				if err != nil {
					return err
				}
				if c.Bool("cancel") {
					id, err := wc.CancelDecommission(dc.ctx, node)
					if err != nil {
						return err
					}
					if dc.format == "json" {
						return output.PrintJSON(e.stdout, map[string]any{"node_id": strconv.FormatUint(node, 10), "instance_id": id, "cancelled": true})
					}
					fmt.Fprintf(e.stdout, "decommission of node %d cancelled (workflow %s): the node takes replicas again\n", node, id)
					return nil
				}
				r, err := wc.Decommission(dc.ctx, node)
				if err != nil {
					return err
				}
				in, err := wc.Get(dc.ctx, r.GetInstanceId())
				for c.Bool("wait") && err == nil && in.GetStatus() == workflowpb.Status_STATUS_RUNNING {
					select {
					case <-dc.ctx.Done():
						return fmt.Errorf("node %d: decommission %s still running: %w", node, r.GetInstanceId(), dc.ctx.Err())
					case <-time.After(200 * time.Millisecond):
					}
					in, err = wc.Get(dc.ctx, r.GetInstanceId())
				}
				if err != nil {
					return err
				}
				if c.Bool("wait") && in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
					return errors.New("node decommission: instance " + r.GetInstanceId() + " ended " + statusText(in.GetStatus()) + ": " + in.GetError())
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, map[string]any{"node_id": strconv.FormatUint(node, 10), "instance_id": r.GetInstanceId(),
						"existing": r.GetExisting(), "status": statusText(in.GetStatus())})
				}
				what := "decommission of node %d started: workflow %s (%s)\n"
				if r.GetExisting() {
					what = "decommission of node %d already under way or done: workflow %s (%s)\n"
				}
				fmt.Fprintf(e.stdout, what, node, r.GetInstanceId(), statusText(in.GetStatus()))
				return nil
			})
		},
	}
}
